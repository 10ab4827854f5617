"""
Tests for L{kamalproxy.pipeline.sendfile}: the X-Sendfile stage and its sink.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.internet.interfaces import IProducer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from kamalproxy.interfaces import IResponseSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sendfile import sendfile
from kamalproxy.routing.options import ServiceOptions


@implementer(IResponseSink)
class RecordingSink:
    """
    The sink inside the X-Sendfile one, recording what reaches it; with
    C{pauseAfter}, it pauses its producer after that many body writes.
    """

    def __init__(self, pauseAfter: Optional[int] = None) -> None:
        self.status: Optional[int] = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.ended = False
        self.failed: Optional[int] = None
        self.producer: Optional[IProducer] = None
        self.pauseAfter = pauseAfter

    def interim(self, status: int, headers: Any) -> None:
        pass

    def head(self, status: int, reason: bytes, headers: Any) -> None:
        self.status, self.headers = status, list(headers)

    def body(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.pauseAfter is not None and len(self.chunks) >= self.pauseAfter:
            assert self.producer is not None
            self.producer.pauseProducing()

    def end(self) -> None:
        self.ended = True

    def fail(self, status: int) -> None:
        self.failed = status

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def started(self) -> bool:
        return self.status is not None

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class _Service:
    def __init__(self, roots: tuple[str, ...]) -> None:
        self.name = "app"
        self.options = type("Options", (), {"service": ServiceOptions(sendfile_roots=roots)})()


class _Upstream:
    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


class SendfileStageTests(SynchronousTestCase):
    def setUp(self) -> None:
        base = os.path.realpath(self.mktemp())
        self.root = os.path.join(base, "public")
        os.makedirs(self.root)
        self.file = os.path.join(self.root, "big.bin")
        self.data = os.urandom(5 * 64 * 1024 + 7)
        with open(self.file, "wb") as f:
            f.write(self.data)
        self.secret = os.path.join(base, "secret.txt")
        with open(self.secret, "wb") as f:
            f.write(b"secret")
        self.clock = Clock()

    def exchange(
        self, roots: tuple[str, ...] = (), method: bytes = b"GET", headers: Optional[dict[bytes, bytes]] = None, inner: Optional[RecordingSink] = None
    ) -> tuple[Exchange, RecordingSink, list[Exchange]]:
        request = DummyRequest([b""])
        request.method = method
        request.requestHeaders = Headers({k: [v] for k, v in (headers or {}).items()})
        inner = inner or RecordingSink()
        exchange = Exchange(request, clock=self.clock, service=_Service(roots), sink=inner)
        proceeded: list[Exchange] = []
        sendfile(exchange, proceeded.append)
        return exchange, inner, proceeded

    def respond(self, exchange: Exchange, headers: list[tuple[bytes, bytes]], status: int = 200, body: bytes = b"") -> None:
        sink = exchange.sink
        sink.head(status, b"OK", headers)
        sink.registerProducer(_Upstream(), True)
        if body:
            sink.body(body)
        sink.end()
        self.clock.advance(0)

    def test_requestTypeSetWhenEnabled(self) -> None:
        exchange, _, proceeded = self.exchange((self.root,), headers={b"X-Sendfile-Type": b"X-Accel-Redirect"})
        self.assertEqual(proceeded, [exchange])
        self.assertEqual(exchange.request.requestHeaders.getRawHeaders(b"x-sendfile-type"), [b"X-Sendfile"])

    def test_requestTypeRemovedWhenDisabled(self) -> None:
        exchange, _, _ = self.exchange(headers={b"X-Sendfile-Type": b"X-Sendfile"})
        self.assertFalse(exchange.request.requestHeaders.hasHeader(b"x-sendfile-type"))

    def test_ordinaryResponsePassesThrough(self) -> None:
        exchange, inner, _ = self.exchange((self.root,))
        upstream = _Upstream()
        exchange.sink.head(200, b"OK", [(b"Content-Length", b"2")])
        exchange.sink.registerProducer(upstream, True)
        exchange.sink.body(b"hi")
        exchange.sink.end()
        self.assertEqual((inner.status, inner.chunks, inner.ended), (200, [b"hi"], True))
        self.assertIs(inner.producer, upstream)
        self.assertEqual(exchange.sink.body, inner.body)  # stepped aside at the head

    def test_fileResponseDoesNotStepAside(self) -> None:
        """
        A response naming a file keeps the sink in the way: the app's body
        is dropped and the file is sent instead.
        """
        exchange, inner, _ = self.exchange((self.root,))
        exchange.sink.head(200, b"OK", [(b"X-Sendfile", self.file.encode())])
        self.assertNotEqual(exchange.sink.body, inner.body)

    def test_fileServed(self) -> None:
        exchange, inner, _ = self.exchange((self.root,))
        self.respond(exchange, [(b"X-Sendfile", self.file.encode()), (b"Cache-Control", b"public")], body=b"app body")
        self.assertEqual(inner.status, 200)
        self.assertTrue(inner.ended)
        self.assertEqual(b"".join(inner.chunks), self.data)
        self.assertEqual(inner.header(b"x-sendfile"), [])
        self.assertEqual(inner.header(b"cache-control"), [b"public"])
        self.assertEqual(inner.header(b"content-length"), [b"%d" % len(self.data)])
        self.assertIsNone(exchange.onClientGone)

    def test_headerStrippedWhenDisabled(self) -> None:
        exchange, inner, _ = self.exchange()
        self.respond(exchange, [(b"X-Sendfile", self.file.encode()), (b"Content-Length", b"0")])
        self.assertEqual(inner.status, 200)
        self.assertEqual(inner.headers, [(b"Content-Length", b"0")])
        self.assertEqual(inner.chunks, [])

    def test_notModifiedPassedOnWithoutHeader(self) -> None:
        exchange, inner, _ = self.exchange((self.root,))
        self.respond(exchange, [(b"x-sendfile", self.file.encode())], status=304)
        self.assertEqual((inner.status, inner.headers, inner.ended), (304, [], True))

    def test_outsideRootsForbiddenAndLogged(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        exchange, inner, _ = self.exchange((self.root,))
        traversal = os.path.join(self.root, "..", "secret.txt")
        self.respond(exchange, [(b"X-Sendfile", traversal.encode())])
        self.assertEqual(inner.status, 403)
        self.assertNotIn(b"secret", b"".join(inner.chunks))
        self.assertTrue(any(e.get("path") == traversal for e in events))

    def test_symlinkOutForbidden(self) -> None:
        link = os.path.join(self.root, "link")
        os.symlink(self.secret, link)
        exchange, inner, _ = self.exchange((self.root,))
        self.respond(exchange, [(b"X-Sendfile", link.encode())])
        self.assertEqual(inner.status, 403)

    def test_missingIs404(self) -> None:
        exchange, inner, _ = self.exchange((self.root,))
        self.respond(exchange, [(b"X-Sendfile", os.path.join(self.root, "gone").encode())])
        self.assertEqual((inner.status, inner.failed), (None, 404))

    def test_upstreamFailureBeforeEndPassedOn(self) -> None:
        exchange, inner, _ = self.exchange((self.root,))
        exchange.sink.head(200, b"OK", [(b"X-Sendfile", self.file.encode())])
        exchange.sink.fail(502)
        self.clock.advance(0)
        self.assertEqual((inner.status, inner.failed), (None, 502))

    def test_headHasNoBody(self) -> None:
        exchange, inner, _ = self.exchange((self.root,), method=b"HEAD")
        self.respond(exchange, [(b"X-Sendfile", self.file.encode())])
        self.assertEqual((inner.status, inner.chunks, inner.ended), (200, [], True))
        self.assertEqual(inner.header(b"content-length"), [b"%d" % len(self.data)])

    def test_range(self) -> None:
        exchange, inner, _ = self.exchange((self.root,), headers={b"Range": b"bytes=100000-100009"})
        self.respond(exchange, [(b"X-Sendfile", self.file.encode())])
        self.assertEqual(inner.status, 206)
        self.assertEqual(b"".join(inner.chunks), self.data[100000:100010])

    def test_slowClientPausesReading(self) -> None:
        """
        A consumer that pauses the file producer gets nothing more until it
        resumes it.
        """
        exchange, inner, _ = self.exchange((self.root,), inner=RecordingSink(pauseAfter=1))
        self.respond(exchange, [(b"X-Sendfile", self.file.encode())])
        self.clock.advance(1)
        self.assertEqual(len(inner.chunks), 1)
        self.assertFalse(inner.ended)
        inner.pauseAfter = None
        assert inner.producer is not None
        inner.producer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(b"".join(inner.chunks), self.data)
        self.assertTrue(inner.ended)

    def test_clientGoneStopsReading(self) -> None:
        exchange, inner, _ = self.exchange((self.root,), inner=RecordingSink(pauseAfter=1))
        self.respond(exchange, [(b"X-Sendfile", self.file.encode())])
        assert exchange.onClientGone is not None
        exchange.onClientGone()
        assert inner.producer is not None
        inner.producer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(len(inner.chunks), 1)
        self.assertFalse(inner.ended)
        self.assertIsNone(inner.failed)
