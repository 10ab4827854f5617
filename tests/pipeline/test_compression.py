"""
Tests for L{kamalproxy.pipeline.compression}: the compression stage and its
sink, alone over a recording sink and through the whole proxy.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, Optional

import brotli
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kamalproxy.compress.stats import CompressionStats
from kamalproxy.interfaces import IEncodedVariants, IResponseSink
from kamalproxy.pipeline.compression import CompressingSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.router import Router
from kamalproxy.upstream.client import RawHeaders

from .._helpers import DummyChannel, FakeTargets, proxyConnection

BODY = b"".join(b"<p>paragraph %d of the page</p>\n" % i for i in range(200))
HTML = (b"Content-Type", b"text/html")


@implementer(IResponseSink)
class Recorder:
    """
    The sink a L{CompressingSink} passes to: records what it is given.
    """

    def __init__(self) -> None:
        self.heads: list[tuple[int, RawHeaders]] = []
        self.chunks: list[bytes] = []
        self.ended = False
        self.failed: Optional[int] = None
        self.producer: Any = None

    def interim(self, status: int, headers: RawHeaders) -> None:
        self.heads.append((status, headers))

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.heads.append((status, headers))

    def body(self, data: bytes) -> None:
        self.chunks.append(data)

    def end(self) -> None:
        self.ended = True

    def fail(self, status: int) -> None:
        self.failed = status

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def started(self) -> bool:
        return bool(self.heads)

    @property
    def headers(self) -> dict[bytes, bytes]:
        [(status, headers)] = [head for head in self.heads if head[0] >= 200]
        return {name.lower(): value for name, value in headers}

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def sinkFor(
    accept: Optional[bytes] = b"gzip, br",
    method: bytes = b"GET",
    jitter: int = 0,
    guard: bool = False,
    requestHeaders: RawHeaders = (),
    variants: Optional[IEncodedVariants] = None,
) -> tuple[CompressingSink, Recorder, Clock, CompressionStats]:
    request = Request(DummyChannel())
    request.method = method
    if accept is not None:
        request.requestHeaders.setRawHeaders(b"accept-encoding", [accept])
    for name, value in requestHeaders:
        request.requestHeaders.addRawHeader(name, value)
    clock = Clock()
    recorder = Recorder()
    stats = CompressionStats()
    exchange = Exchange(request, clock, encodedVariants=variants)
    sink = CompressingSink(recorder, exchange, stats, jitter, guard)
    return sink, recorder, clock, stats


@implementer(IEncodedVariants)
class Copies:
    """
    A stored response's encoded copies, in a dictionary.
    """

    def __init__(self, limit: int = 1 << 20, **copies: bytes) -> None:
        self.limit = limit
        self.copies = copies
        self.kept: list[tuple[str, bytes]] = []

    def encoded(self, coding: str) -> Optional[bytes]:
        return self.copies.get(coding)

    def keep(self, coding: str, body: bytes) -> None:
        self.kept.append((coding, body))


def respond(sink: CompressingSink, headers: RawHeaders, *chunks: bytes, status: int = 200) -> None:
    sink.head(status, b"OK", headers)
    for chunk in chunks:
        sink.body(chunk)
    sink.end()


class SinkTests(SynchronousTestCase):
    """
    L{CompressingSink} over a recording sink.
    """

    def test_interface(self) -> None:
        """
        It is an L{IResponseSink}.
        """
        verifyObject(IResponseSink, sinkFor()[0])

    def test_stepsAsideWhenLeftAlone(self) -> None:
        """
        A response it leaves as it is (too small, or a client that accepts
        no coding) goes on to the inner sink without passing through it;
        one it encodes still does.
        """
        for accept, headers in (
            (b"gzip", [(b"Content-Type", b"text/html"), (b"Content-Length", b"10")]),
            (None, [(b"Content-Type", b"text/html"), (b"Content-Length", b"5000")]),
        ):
            sink, recorder, _, _ = sinkFor(accept)
            respond(sink, headers, b"x")
            self.assertEqual(sink.body, recorder.body)
            self.assertEqual(recorder.data, b"x")
        sink, recorder, _, _ = sinkFor(b"gzip")
        respond(sink, [(b"Content-Type", b"text/html"), (b"Content-Length", b"5000")], b"x" * 5000)
        self.assertNotEqual(sink.body, recorder.body)
        self.assertEqual(gzip.decompress(recorder.data), b"x" * 5000)

    def test_compressedWithLength(self) -> None:
        """
        A response with a Content-Length of 1 KiB or more is encoded in the
        coding the client prefers; the whole encoded body came out at the
        end, so it has the encoded length; Vary, weak ETag, no
        Accept-Ranges; the counters count it.
        """
        sink, recorder, _, stats = sinkFor(b"gzip, br")
        headers = [HTML, (b"Content-Length", b"%d" % len(BODY)), (b"ETag", b'"v1"'), (b"Accept-Ranges", b"bytes")]
        respond(sink, headers, BODY[:100], BODY[100:])
        self.assertTrue(recorder.ended)
        self.assertEqual(brotli.decompress(recorder.data), BODY)
        self.assertEqual(
            recorder.headers,
            {
                b"content-type": b"text/html",
                b"etag": b'W/"v1"',
                b"content-encoding": b"br",
                b"vary": b"Accept-Encoding",
                b"content-length": b"%d" % len(recorder.data),
            },
        )
        self.assertEqual(
            (stats.responses, stats.bytesIn, stats.bytesOut),
            ({"zstd": 0, "br": 1, "gzip": 0}, len(BODY), len(recorder.data)),
        )

    def test_smallLengthAsItIs(self) -> None:
        """
        A Content-Length under 1 KiB: sent as it is, without Vary (no other
        Accept-Encoding would have changed it).
        """
        sink, recorder, _, stats = sinkFor()
        headers = [HTML, (b"Content-Length", b"1023")]
        respond(sink, headers, b"x" * 1023)
        self.assertEqual(recorder.heads, [(200, headers)])
        self.assertEqual(recorder.data, b"x" * 1023)
        self.assertEqual(stats.responses["br"], 0)

    def test_chunkedEndingSmallAsItIs(self) -> None:
        """
        Without a Content-Length, a body that ends under 1 KiB (in the read
        that brought it) is held and sent as it is.
        """
        sink, recorder, clock, _ = sinkFor()
        sink.head(200, b"OK", [HTML])
        sink.body(b"a" * 500)
        sink.body(b"b" * 500)
        self.assertEqual(recorder.heads, [])
        sink.end()
        clock.advance(0)
        self.assertEqual(recorder.heads, [(200, [HTML])])
        self.assertEqual(recorder.data, b"a" * 500 + b"b" * 500)
        self.assertTrue(recorder.ended)

    def test_chunkedLargeStreamed(self) -> None:
        """
        Without a Content-Length, once 1 KiB has arrived the body is
        encoded, and every read is flushed: what reached the client decodes
        to everything the app sent so far; no Content-Length.
        """
        sink, recorder, _, _ = sinkFor(b"gzip")
        sink.head(200, b"OK", [HTML])
        sink.body(BODY[:600])
        sink.body(BODY[600:2000])
        self.assertEqual(recorder.headers[b"content-encoding"], b"gzip")
        self.assertNotIn(b"content-length", recorder.headers)
        self.assertEqual(zlib.decompressobj(31).decompress(recorder.data), BODY[:2000])
        sink.body(BODY[2000:])
        sink.end()
        self.assertEqual(gzip.decompress(recorder.data), BODY)

    def test_streamingStartsAfterTheRead(self) -> None:
        """
        A small first piece that is not the end (the app is streaming) is
        encoded and flushed when the read that brought it is over.
        """
        sink, recorder, clock, _ = sinkFor(b"gzip")
        sink.head(200, b"OK", [HTML])
        sink.body(b"<p>first</p>")
        self.assertEqual(recorder.heads, [])
        clock.advance(0)
        self.assertEqual(recorder.headers[b"content-encoding"], b"gzip")
        self.assertEqual(zlib.decompressobj(31).decompress(recorder.data), b"<p>first</p>")
        sink.body(b"<p>second</p>")
        sink.end()
        self.assertEqual(gzip.decompress(recorder.data), b"<p>first</p><p>second</p>")

    def test_notCompressed(self) -> None:
        """
        HEAD, 206, 304, an image, an encoded response, no-transform, no
        Accept-Encoding or none the proxy has: the response goes as it is;
        Vary is added when only Accept-Encoding or the method kept it so.
        """
        length = (b"Content-Length", b"5000")
        cases = [
            (dict(method=b"HEAD"), 200, [HTML, length], True),
            (dict(accept=None), 200, [HTML, length], True),
            (dict(accept=b"deflate"), 200, [HTML, length], True),
            ({}, 206, [HTML, (b"Content-Range", b"bytes 0-4999/9000"), length], False),
            ({}, 304, [HTML], False),
            ({}, 200, [(b"Content-Type", b"image/png"), length], False),
            ({}, 200, [HTML, (b"Content-Encoding", b"gzip"), length], False),
            ({}, 200, [HTML, (b"Cache-Control", b"no-transform"), length], False),
        ]
        for kwargs, status, headers, vary in cases:
            sink, recorder, _, stats = sinkFor(**kwargs)  # type: ignore[arg-type]
            respond(sink, headers, b"" if status == 304 else b"x" * 5000, status=status)
            expected = headers + [(b"Vary", b"Accept-Encoding")] if vary else headers
            self.assertEqual(recorder.heads, [(status, expected)], (kwargs, status))
            self.assertEqual(sum(stats.responses.values()), 0)

    def test_interimPassesThrough(self) -> None:
        """
        A 1xx goes on untouched.
        """
        sink, recorder, _, _ = sinkFor()
        sink.interim(103, [(b"Link", b"</a.css>")])
        self.assertEqual(recorder.heads, [(103, [(b"Link", b"</a.css>")])])

    def test_guard(self) -> None:
        """
        With the guard, a request with a cookie or credentials, or a
        response setting a cookie, is not compressed (and has no Vary);
        without the guard it is.
        """
        headers = [HTML, (b"Content-Length", b"%d" % len(BODY))]
        for field in ((b"Cookie", b"a=b"), (b"Authorization", b"Bearer x"), (b"X-CSRF-Token", b"t")):
            sink, recorder, _, _ = sinkFor(guard=True, requestHeaders=[field])
            respond(sink, headers, BODY)
            self.assertEqual(recorder.heads, [(200, headers)], field)
            sink, recorder, _, _ = sinkFor(guard=False, requestHeaders=[field])
            respond(sink, headers, BODY)
            self.assertEqual(recorder.headers[b"content-encoding"], b"br")
        sink, recorder, _, _ = sinkFor(guard=True)
        respond(sink, headers + [(b"Set-Cookie", b"s=1")], BODY)
        self.assertNotIn(b"content-encoding", recorder.headers)
        sink, recorder, _, _ = sinkFor(guard=True)
        respond(sink, headers, BODY)
        self.assertEqual(recorder.headers[b"content-encoding"], b"br")

    def test_jitter(self) -> None:
        """
        With jitter the encoded body carries the padding (a gzip header
        comment here) and still decodes; without it there is none.
        """
        headers = [HTML, (b"Content-Length", b"%d" % len(BODY))]
        sink, padded, _, _ = sinkFor(b"gzip", jitter=32)
        respond(sink, headers, BODY)
        sink, plain, _, _ = sinkFor(b"gzip", jitter=0)
        respond(sink, headers, BODY)
        self.assertEqual(gzip.decompress(padded.data), BODY)
        self.assertEqual(gzip.decompress(plain.data), BODY)
        self.assertEqual(padded.data[3] & 0x10, 0x10)
        self.assertEqual(plain.data[3] & 0x10, 0)
        comment = padded.data[10 : padded.data.index(b"\0", 10)]
        self.assertTrue(1 <= len(comment) <= 32 and (b"Padding-" * 5).startswith(comment), comment)

    def test_sendsKeptCopy(self) -> None:
        """
        A stored response that has a copy in the chosen coding is answered
        with the copy, with its length: nothing is compressed, the identity
        body that follows is not sent; counted as a compressed response
        and as reused.
        """
        verifyObject(IEncodedVariants, Copies())
        copy = brotli.compress(BODY)
        sink, recorder, _, stats = sinkFor(b"gzip, br", variants=Copies(br=copy, gzip=b"not this one"))
        headers = [HTML, (b"Content-Length", b"%d" % len(BODY)), (b"ETag", b'"v1"')]
        respond(sink, headers, BODY)
        self.assertEqual(recorder.data, copy)
        self.assertEqual(recorder.headers[b"content-encoding"], b"br")
        self.assertEqual(recorder.headers[b"content-length"], b"%d" % len(copy))
        self.assertEqual(recorder.headers[b"etag"], b'W/"v1"')
        self.assertTrue(recorder.ended)
        self.assertEqual((stats.responses["br"], stats.reused), (1, 1))
        self.assertEqual((stats.bytesIn, stats.bytesOut), (len(BODY), len(copy)))

    def test_keepsWhatItEncoded(self) -> None:
        """
        Without a copy in the chosen coding, the body is encoded as usual
        and the whole encoded body is offered to be kept at the end.
        """
        copies = Copies(br=b"another coding")
        sink, recorder, _, stats = sinkFor(b"gzip", variants=copies)
        respond(sink, [HTML, (b"Content-Length", b"%d" % len(BODY))], BODY[:1000], BODY[1000:])
        self.assertEqual(copies.kept, [("gzip", recorder.data)])
        self.assertEqual(gzip.decompress(recorder.data), BODY)
        self.assertEqual(stats.reused, 0)

    def test_keepsStreamedBody(self) -> None:
        """
        A body encoded as it streamed (no Content-Length) is kept whole:
        everything sent, which decodes to the identity body.
        """
        copies = Copies()
        sink, recorder, _, _ = sinkFor(b"gzip", variants=copies)
        respond(sink, [HTML], BODY[:2000], BODY[2000:])
        [(coding, kept)] = copies.kept
        self.assertEqual((coding, kept), ("gzip", recorder.data))
        self.assertEqual(gzip.decompress(kept), BODY)

    def test_keepsNothingOverLimit(self) -> None:
        """
        An encoded body larger than the copies' limit is sent whole but
        not kept.
        """
        copies = Copies(limit=100)
        sink, recorder, _, _ = sinkFor(b"gzip", variants=copies)
        respond(sink, [HTML], BODY[:2000], BODY[2000:])
        self.assertEqual(copies.kept, [])
        self.assertEqual(gzip.decompress(recorder.data), BODY)

    def test_keepsUpToTheLimit(self) -> None:
        """
        An encoded body exactly as large as the copies' limit is kept; one
        byte over it is not, however the body was split.
        """
        encoded = sinkFor(b"gzip")
        respond(encoded[0], [HTML], BODY[:2000], BODY[2000:])
        size = len(encoded[1].data)
        for limit, kept in ((size, 1), (size - 1, 0)):
            copies = Copies(limit=limit)
            sink, recorder, _, _ = sinkFor(b"gzip", variants=copies)
            respond(sink, [HTML], BODY[:2000], BODY[2000:])
            self.assertEqual(copies.kept, [("gzip", recorder.data)] * kept, limit)
            self.assertEqual(gzip.decompress(recorder.data), BODY)

    def test_keepsNothingSentAsItIs(self) -> None:
        """
        A body held and then sent as it is (it ended under the minimum) is
        not encoded: nothing is kept.
        """
        copies = Copies()
        sink, recorder, _, _ = sinkFor(b"gzip", variants=copies)
        respond(sink, [HTML], b"small")
        self.assertEqual((recorder.data, copies.kept), (b"small", []))

    def test_keepsNothingFailed(self) -> None:
        """
        A response that fails midway keeps nothing.
        """
        copies = Copies()
        sink, recorder, _, _ = sinkFor(b"gzip", variants=copies)
        sink.head(200, b"OK", [HTML])
        sink.body(BODY[:2000])
        sink.fail(502)
        self.assertEqual((copies.kept, recorder.failed), ([], 502))

    def test_failBeforeOutputGivesPage(self) -> None:
        """
        A response that fails before any encoded byte went out: the inner
        sink is asked for the page (nothing has started); the timer of a
        held body is cancelled.
        """
        sink, recorder, clock, _ = sinkFor()
        sink.head(200, b"OK", [HTML])
        sink.body(b"abc")
        sink.fail(502)
        self.assertEqual((recorder.heads, recorder.failed), ([], 502))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_producerPassedOn(self) -> None:
        """
        The target's producer is registered with the inner sink, so the
        client's flow control reaches the target.
        """
        sink, recorder, _, _ = sinkFor()
        producer = object()
        sink.registerProducer(producer, True)
        self.assertIs(recorder.producer, producer)
        sink.unregisterProducer()
        self.assertIsNone(recorder.producer)


class ProxyTests(SynchronousTestCase):
    """
    The stage in the proxy, with a target in memory.
    """

    def proxy(self, **serviceOptions: Any) -> tuple[Any, Any, FakeTargets]:
        clock = Clock()
        targets = FakeTargets()
        router = Router(clock, targets.connectorFor)
        router.restore([{"name": "app", "targets": ["10.0.0.1:3000"], "options": {"service": serviceOptions}}])
        self.addCleanup(router.stop)
        protocol, client, _ = proxyConnection(router, clock)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n")
        return router, client, targets

    def test_pausedClientPausesTarget(self) -> None:
        """
        A client that stops reading pauses the target while its response
        is being compressed, and resumes it after; the body still decodes
        whole; the router's counters saw it.
        """
        router, client, targets = self.proxy()
        upstream = targets.connections[-1]
        length = len(BODY) * 20
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % length)
        upstream.dataReceived(BODY)
        client.producer.pauseProducing()
        self.assertEqual(upstream.transport.producerState, "paused")
        client.producer.resumeProducing()
        self.assertEqual(upstream.transport.producerState, "producing")
        for _ in range(19):
            upstream.dataReceived(BODY)
        response = client.value()
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Encoding: gzip", head)
        chunks = []
        while body:
            size, _, rest = body.partition(b"\r\n")
            n = int(size, 16)
            chunks.append(rest[:n])
            body = rest[n + 2 :]
        self.assertEqual(gzip.decompress(b"".join(chunks)), BODY * 20)
        self.assertEqual(router.compressionStats.responses["gzip"], 1)

    def test_serviceWithoutCompression(self) -> None:
        """
        C{compression=false}: responses go as the app wrote them, without
        Vary.
        """
        _, client, targets = self.proxy(compression=False)
        targets.connections[-1].dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
        )
        self.assertNotIn(b"Content-Encoding", client.value())
        self.assertNotIn(b"Vary", client.value())
        self.assertTrue(client.value().endswith(BODY))
