"""
Tests for L{kamalproxy.pipeline.cache}: the cache stage in the real chain,
with the real forwarding to in-memory targets.
"""

from __future__ import annotations

import gzip
from typing import Any

import attr
import brotli
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.store import MemoryCache
from kamalproxy.cache.sinks import sameHostTarget
from kamalproxy.cache.variants import StoredVariants
from kamalproxy.pipeline.cache import mayBeWorthStoring
from kamalproxy.pipeline.responsebuffer import BufferingSink
from kamalproxy.routing.router import DeployError, Router
from kamalproxy.routing.options import InvalidOptions
from kamalproxy.testing import RecordingObserver
from kamalproxy.upstream.client import UpstreamConnection

from .._helpers import FakeTargets, proxyConnection

TARGET = "10.0.0.1:3000"
PUBLIC = b"Cache-Control: public, max-age=60\r\n"


def parse(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """
    The status, fields (lower-case names, last value) and body of the one
    response in C{raw}.
    """
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split(b" ")[1]), fields, body


class CacheProxy:
    """
    A router with one service on a fake target and an HTTP cache; each
    request comes on its own client connection.
    """

    def __init__(self, case: SynchronousTestCase, maxItemSize: int = 1 << 20, **options: Any) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1700000000)
        self.targets = FakeTargets()
        self.cache = MemoryCache(1 << 22, maxItemSize)
        self.router = Router(self.clock, self.targets.connectorFor, cache=self.cache)
        self.router.restore([{"name": "app", "targets": [TARGET], "options": options}])
        case.addCleanup(self.router.stop)
        self.protocol, _, self.site = proxyConnection(self.router, self.clock)
        self.recorder = RecordingObserver()
        self.site.observers += (self.recorder,)
        self.answered = 0

    def request(self, path: bytes = b"/page", method: bytes = b"GET", headers: bytes = b"", body: bytes = b"") -> StringTransport:
        protocol = self.site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        protocol.dataReceived(
            method + b" " + path + b" HTTP/1.1\r\nHost: example.com\r\n" + headers + length + b"\r\n" + body
        )
        return transport

    @property
    def sent(self) -> int:
        """
        How many requests reached the target.
        """
        return len(self.targets.connections)

    def upstream(self, index: int = -1) -> UpstreamConnection:
        return self.targets.connections[index]

    def upstreamRequest(self, index: int = -1) -> bytes:
        return self.upstream(index).transport.value()  # type: ignore[union-attr,no-any-return]

    def respond(self, headers: bytes, body: bytes = b"hello", status: bytes = b"200 OK", index: int = -1) -> None:
        """
        The target answers its request C{index} (and closes).
        """
        length = b"Content-Length: %d\r\n" % len(body) if not status.startswith(b"304") else b""
        self.upstream(index).dataReceived(
            b"HTTP/1.1 " + status + b"\r\n" + headers + length + b"Connection: close\r\n\r\n" + body
        )

    def fetch(self, headers: bytes, body: bytes = b"hello", path: bytes = b"/page", request: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
        """
        A request the target answers with C{headers} and C{body}.
        """
        client = self.request(path, headers=request)
        self.respond(headers, body)
        return parse(client.value())


def get(proxy: CacheProxy, path: bytes = b"/page", headers: bytes = b"", method: bytes = b"GET") -> tuple[int, dict[bytes, bytes], bytes]:
    return parse(proxy.request(path, method, headers).value())


class HitMissTests(SynchronousTestCase):
    """
    Storing a response and answering from it.
    """

    def test_missThenHit(self) -> None:
        """
        A public response is stored while it reaches the client (C{X-Cache:
        miss}); the next request is answered from the cache (C{hit}) with
        its C{Age}, without reaching the target; the log line says so.
        """
        proxy = CacheProxy(self)
        status, fields, body = proxy.fetch(PUBLIC)
        self.assertEqual((status, fields[b"x-cache"], body), (200, b"miss", b"hello"))
        proxy.clock.advance(7)
        status, fields, body = get(proxy)
        self.assertEqual((status, fields[b"x-cache"], fields[b"age"], body), (200, b"hit", b"7", b"hello"))
        self.assertEqual(fields[b"content-length"], b"5")
        self.assertEqual(proxy.sent, 1)
        self.assertEqual([e.cacheStatus for e in proxy.recorder.ended], ["miss", "hit"])
        self.assertEqual((proxy.cache.hits, proxy.cache.misses, proxy.cache.entries), (1, 1, 1))

    def test_ageIncludesTransit(self) -> None:
        """
        The C{Age} the target sent and the time the response took to come
        count in the age (RFC 9111 §4.2.3).
        """
        proxy = CacheProxy(self)
        client = proxy.request()
        proxy.clock.advance(2)
        proxy.respond(PUBLIC + b"Age: 10\r\n")
        self.assertEqual(parse(client.value())[1][b"x-cache"], b"miss")
        self.assertEqual(get(proxy)[1][b"age"], b"12")

    def test_expires(self) -> None:
        """
        Once fresh no more (C{max-age}), the next request goes to the target.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: max-age=5\r\n")
        proxy.clock.advance(6)
        client = proxy.request()
        self.assertEqual(proxy.sent, 2)
        proxy.respond(b"Cache-Control: max-age=5\r\n", b"new")
        self.assertEqual(parse(client.value())[2], b"new")

    def test_headFromGet(self) -> None:
        """
        A HEAD request is answered from the stored GET response, without a
        body.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC)
        raw = proxy.request(method=b"HEAD").value()
        status, fields, body = parse(raw)
        self.assertEqual((status, fields[b"x-cache"], fields[b"content-length"], body), (200, b"hit", b"5", b""))

    def test_cacheOff(self) -> None:
        """
        A service deployed with C{cache} off: nothing is stored, no
        C{X-Cache}.
        """
        proxy = CacheProxy(self, service={"cache": False})
        status, fields, _ = proxy.fetch(PUBLIC)
        self.assertNotIn(b"x-cache", fields)
        proxy.request()
        self.assertEqual(proxy.sent, 2)

    def test_queryIsKey(self) -> None:
        """
        The query is part of the key.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC, path=b"/p?a=1")
        proxy.request(b"/p?a=2")
        self.assertEqual(proxy.sent, 2)
        self.assertEqual(get(proxy, b"/p?a=1")[1][b"x-cache"], b"hit")


class NotStoredTests(SynchronousTestCase):
    """
    Responses a shared cache must not store, and requests it stands aside for.
    """

    def assertNotStored(self, headers: bytes, request: bytes = b"") -> CacheProxy:
        proxy = CacheProxy(self)
        proxy.fetch(headers, request=request)
        client = proxy.request()
        self.assertEqual(proxy.sent, 2, headers)
        proxy.respond(headers, b"other")
        self.assertEqual(parse(client.value())[2], b"other")
        return proxy

    def test_private(self) -> None:
        self.assertNotStored(b"Cache-Control: private, max-age=60\r\n")

    def test_privateQuotedAndCase(self) -> None:
        self.assertNotStored(b'Cache-Control: max-age=60, PRIVATE="set-cookie"\r\n')

    def test_noStore(self) -> None:
        self.assertNotStored(b"Cache-Control: public, no-store, max-age=60\r\n")

    def test_setCookie(self) -> None:
        self.assertNotStored(PUBLIC + b"Set-Cookie: session=alice\r\n")

    def test_authorization(self) -> None:
        self.assertNotStored(b"Cache-Control: max-age=60\r\n", request=b"Authorization: Basic YTpi\r\n")

    def test_varyStar(self) -> None:
        self.assertNotStored(PUBLIC + b"Vary: *\r\n")

    def test_noFreshnessNoValidator(self) -> None:
        self.assertNotStored(b"Content-Type: text/html\r\n")

    def test_eachFieldThatMakesAResponseWorthStoring(self) -> None:
        """
        L{mayBeWorthStoring}, the quick test made before parsing a
        response's caching fields, finds each field L{worthStoring} reads,
        whatever its case: a response with any of them that says it may be
        kept is stored, and one without is not.
        """
        for fields in (
            b"Cache-Control: max-age=60\r\n",
            b"CDN-Cache-Control: max-age=60\r\n",
            b"cache-control: s-maxage=60\r\n",
            b"Expires: Thu, 01 Jan 2099 00:00:00 GMT\r\n",
            b"ETag: \"v1\"\r\n",
            b"LAST-MODIFIED: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
        ):
            headers = [tuple(fields.rstrip(b"\r\n").split(b": ", 1))]
            self.assertTrue(mayBeWorthStoring(headers), fields)  # type: ignore[arg-type]
            proxy = CacheProxy(self)
            proxy.fetch(fields)
            self.assertEqual(proxy.cache.entries, 1, fields)
        self.assertFalse(mayBeWorthStoring([(b"Content-Type", b"text/html"), (b"Vary", b"Accept")]))

    def test_authorizationWithPublic(self) -> None:
        """
        A response to an C{Authorization} request that says C{public} is
        stored.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC, request=b"Authorization: Basic YTpi\r\n")
        self.assertEqual(get(proxy)[1][b"x-cache"], b"hit")

    def test_requestNoStore(self) -> None:
        """
        C{Cache-Control: no-store} in a request: bypass, nothing stored.
        """
        proxy = CacheProxy(self)
        status, fields, _ = proxy.fetch(PUBLIC, request=b"Cache-Control: no-store\r\n")
        self.assertEqual(fields[b"x-cache"], b"bypass")
        proxy.request()
        self.assertEqual(proxy.sent, 2)

    def test_itemLimitWhileStreaming(self) -> None:
        """
        A body over the item limit reaches the client whole but is not
        stored.
        """
        proxy = CacheProxy(self, maxItemSize=1000)
        client = proxy.request()
        proxy.upstream().dataReceived(b"HTTP/1.1 200 OK\r\n" + PUBLIC + b"Content-Length: 3000\r\nConnection: close\r\n\r\n")
        for _ in range(3):
            proxy.upstream().dataReceived(b"x" * 1000)
        self.assertEqual(parse(client.value())[2], b"x" * 3000)
        self.assertEqual(proxy.cache.entries, 0)
        proxy.request()
        self.assertEqual(proxy.sent, 2)


PAGE = b"".join(b"<p>paragraph %d of the page</p>\n" % i for i in range(300))
HTML_PUBLIC = PUBLIC + b"Content-Type: text/html\r\n"
BR = b"Accept-Encoding: br\r\n"


class EncodedCopyTests(SynchronousTestCase):
    """
    The cache keeps the encoded copies the compression stage makes, so a
    compressed hit costs no compression.
    """

    def test_hitSendsKeptCopy(self) -> None:
        """
        The miss is compressed on its way to the client and its encoded
        body kept with the entry; a hit in the same coding sends those
        bytes again without compressing.
        """
        proxy = CacheProxy(self)
        stats = proxy.router.compressionStats
        status, fields, first = proxy.fetch(HTML_PUBLIC, PAGE, request=BR)
        self.assertEqual((status, fields[b"x-cache"], fields[b"content-encoding"]), (200, b"miss", b"br"))
        self.assertEqual(brotli.decompress(first), PAGE)
        [entry] = list(proxy.cache)
        self.assertEqual((entry.body, entry.encoded), (PAGE, {"br": first}))
        self.assertEqual(proxy.cache.size, entry.size)
        bytesIn = stats.bytesIn
        status, fields, second = get(proxy, headers=BR)
        self.assertEqual((status, fields[b"x-cache"], fields[b"content-encoding"]), (200, b"hit", b"br"))
        self.assertEqual(fields[b"content-length"], b"%d" % len(first))
        self.assertEqual(second, first)
        self.assertEqual((stats.responses["br"], stats.reused, proxy.sent), (2, 1, 1))
        self.assertEqual(stats.bytesIn, 2 * bytesIn)

    def test_eachCodingKept(self) -> None:
        """
        A hit in a coding not kept yet is compressed once, then kept too;
        a client without C{Accept-Encoding} gets the identity body.
        """
        proxy = CacheProxy(self)
        proxy.fetch(HTML_PUBLIC, PAGE, request=BR)
        gzipped = get(proxy, headers=b"Accept-Encoding: gzip\r\n")[2]
        self.assertEqual(gzip.decompress(gzipped), PAGE)
        self.assertEqual(get(proxy, headers=b"Accept-Encoding: gzip\r\n")[2], gzipped)
        [entry] = list(proxy.cache)
        self.assertEqual(sorted(entry.encoded), ["br", "gzip"])
        self.assertEqual(proxy.router.compressionStats.reused, 1)
        status, fields, body = get(proxy)
        self.assertEqual((body, fields[b"vary"]), (PAGE, b"Accept-Encoding"))
        self.assertNotIn(b"content-encoding", fields)

    def test_notKeptOverItemLimit(self) -> None:
        """
        A copy that would take the entry over C{--max-cache-item-size} is
        not kept: hits are compressed each time, correctly.
        """
        proxy = CacheProxy(self, maxItemSize=len(PAGE) + 700)
        proxy.fetch(HTML_PUBLIC, PAGE, request=BR)
        [entry] = list(proxy.cache)
        self.assertEqual(entry.encoded, {})
        self.assertEqual(brotli.decompress(get(proxy, headers=BR)[2]), PAGE)
        self.assertEqual(proxy.router.compressionStats.reused, 0)

    def test_revalidatedKeepsCopies(self) -> None:
        """
        A 304 that revalidates the entry leaves its body, so its copies
        still serve; a changed response replaces them.
        """
        proxy = CacheProxy(self)
        headers = b'Cache-Control: max-age=1\r\nETag: "v1"\r\nContent-Type: text/html\r\n'
        first = proxy.fetch(headers, PAGE, request=BR)[2]
        proxy.clock.advance(5)
        client = proxy.request(headers=BR)
        proxy.respond(b'Cache-Control: max-age=1\r\nETag: "v1"\r\n', b"", b"304 Not Modified")
        status, fields, body = parse(client.value())
        self.assertEqual((fields[b"x-cache"], body), (b"revalidated", first))
        self.assertEqual(proxy.router.compressionStats.reused, 1)
        proxy.clock.advance(5)
        newer = PAGE.replace(b"paragraph", b"section")
        client = proxy.request(headers=BR)
        proxy.respond(b'Cache-Control: max-age=60\r\nETag: "v2"\r\nContent-Type: text/html\r\n', newer)
        self.assertEqual(brotli.decompress(parse(client.value())[2]), newer)
        self.assertEqual(brotli.decompress(get(proxy, headers=BR)[2]), newer)
        self.assertEqual(proxy.router.compressionStats.reused, 2)

    def test_copiesOfferedForWholeBodyOnly(self) -> None:
        """
        A hit offers the compression stage the entry's encoded copies only
        when it sends the whole stored body: not for a 304, a 206, a 416
        or a HEAD, which are never compressed.
        """
        proxy = CacheProxy(self)
        proxy.fetch(HTML_PUBLIC + b'ETag: "p"\r\n', PAGE, request=BR)
        [entry] = list(proxy.cache)
        offered: list[Any] = []

        class Offered(RecordingObserver):
            def requestEnded(self, exchange: Any) -> None:
                offered.append(exchange.encodedVariants)

        proxy.site.observers += (Offered(),)
        self.assertEqual(get(proxy, headers=BR)[0], 200)
        [variants] = offered
        self.assertIsInstance(variants, StoredVariants)
        self.assertIs(variants.entry, entry)
        del offered[:]
        for headers, method, status in (
            (b'If-None-Match: "p"\r\n', b"GET", 304),
            (b"Range: bytes=0-9\r\n", b"GET", 206),
            (b"Range: bytes=999999-\r\n", b"GET", 416),
            (b"", b"HEAD", 200),
        ):
            self.assertEqual(get(proxy, headers=BR + headers, method=method)[0], status)
        self.assertEqual(offered, [None] * 4)
        self.assertEqual(get(proxy, headers=BR)[2], entry.encoded["br"])

    def test_rangeFromIdentity(self) -> None:
        """
        A Range request is answered from the identity body (206 is never
        compressed), whatever copies are kept.
        """
        proxy = CacheProxy(self)
        proxy.fetch(HTML_PUBLIC, PAGE, request=BR)
        status, fields, body = get(proxy, headers=BR + b"Range: bytes=0-9\r\n")
        self.assertEqual((status, body), (206, PAGE[:10]))
        self.assertNotIn(b"content-encoding", fields)


class VaryTests(SynchronousTestCase):
    """
    Variants by C{Vary}.
    """

    def test_variants(self) -> None:
        """
        Each variant is stored under the request's values of the fields
        C{Vary} names (normalised); another value is a miss.
        """
        proxy = CacheProxy(self)
        vary = PUBLIC + b"Vary: accept-language\r\n"
        proxy.fetch(vary, b"english", request=b"Accept-Language: en, fr\r\n")
        proxy.fetch(vary, b"german", request=b"Accept-Language: de\r\n")
        self.assertEqual(get(proxy, headers=b"Accept-Language: en ,  fr\r\n")[2], b"english")
        self.assertEqual(get(proxy, headers=b"accept-language: de\r\n")[2], b"german")
        proxy.request(headers=b"Accept-Language: it\r\n")
        self.assertEqual(proxy.sent, 3)


class ValidationTests(SynchronousTestCase):
    """
    Stale entries revalidated; the client's own conditions.
    """

    def test_revalidated(self) -> None:
        """
        A stale entry with an C{ETag} is revalidated with C{If-None-Match};
        a 304 refreshes its fields and the client gets the stored body
        (C{X-Cache: revalidated}).
        """
        proxy = CacheProxy(self)
        proxy.fetch(b'Cache-Control: max-age=1\r\nETag: "v1"\r\nX-Version: 1\r\n')
        proxy.clock.advance(5)
        client = proxy.request()
        self.assertIn(b'\r\nIf-None-Match: "v1"\r\n', proxy.upstreamRequest())
        proxy.respond(b'Cache-Control: max-age=100\r\nETag: "v1"\r\nX-Version: 2\r\n', b"", b"304 Not Modified")
        status, fields, body = parse(client.value())
        self.assertEqual((status, fields[b"x-cache"], fields[b"x-version"], body), (200, b"revalidated", b"2", b"hello"))
        self.assertEqual(get(proxy)[1][b"x-cache"], b"hit")  # fresh for 100 s now
        self.assertEqual(proxy.cache.revalidated, 1)

    def test_lastModifiedValidator(self) -> None:
        """
        With only C{Last-Modified}, revalidation sends C{If-Modified-Since}.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: no-cache\r\nLast-Modified: Tue, 14 Nov 2023 00:00:00 GMT\r\n")
        proxy.request()
        self.assertIn(b"\r\nIf-Modified-Since: Tue, 14 Nov 2023 00:00:00 GMT\r\n", proxy.upstreamRequest())

    def test_changedOnRevalidation(self) -> None:
        """
        A full response to the revalidation replaces the entry.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b'Cache-Control: max-age=1\r\nETag: "v1"\r\n')
        proxy.clock.advance(5)
        client = proxy.request()
        proxy.respond(b'Cache-Control: max-age=60\r\nETag: "v2"\r\n', b"newer")
        self.assertEqual(parse(client.value())[2], b"newer")
        self.assertEqual(get(proxy)[2], b"newer")

    def test_clientConditionalFromFresh(self) -> None:
        """
        A client's C{If-None-Match} (weak comparison) or
        C{If-Modified-Since} on a fresh entry is answered 304 by the cache.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC + b'ETag: "abc"\r\nLast-Modified: Tue, 14 Nov 2023 00:00:00 GMT\r\n')
        status, fields, body = get(proxy, headers=b'If-None-Match: "x", W/"abc"\r\n')
        self.assertEqual((status, fields[b"etag"], body), (304, b'"abc"', b""))
        self.assertEqual(get(proxy, headers=b'If-None-Match: "zzz"\r\n')[0], 200)
        self.assertEqual(get(proxy, headers=b"If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT\r\n")[0], 304)
        self.assertEqual(get(proxy, headers=b"If-Modified-Since: Mon, 13 Nov 2023 00:00:00 GMT\r\n")[0], 200)
        self.assertEqual(proxy.sent, 1)

    def test_clientConditionalAfterRevalidation(self) -> None:
        """
        The client's own C{If-None-Match} is answered after the cache's
        revalidation with the stored validator.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b'Cache-Control: no-cache\r\nETag: "v1"\r\n')
        client = proxy.request(headers=b'If-None-Match: "v1"\r\n')
        proxy.respond(b'ETag: "v1"\r\n', b"", b"304 Not Modified")
        self.assertEqual(parse(client.value())[0], 304)

    def test_clientConditionsAfterChangedLastModified(self) -> None:
        """
        A revalidation whose 304 brings another C{Last-Modified} changes
        what the client's C{If-Modified-Since} and C{If-Range} dates are
        compared with.
        """
        proxy = CacheProxy(self)
        old, between, new = (
            b"Tue, 14 Nov 2023 00:00:00 GMT",
            b"Wed, 15 Nov 2023 00:00:00 GMT",
            b"Thu, 16 Nov 2023 00:00:00 GMT",
        )
        proxy.fetch(b"Cache-Control: max-age=1\r\nLast-Modified: " + old + b"\r\n")
        self.assertEqual(get(proxy, headers=b"If-Modified-Since: " + between + b"\r\n")[0], 304)
        self.assertEqual(get(proxy, headers=b"Range: bytes=0-0\r\nIf-Range: " + old + b"\r\n")[0], 206)
        proxy.clock.advance(5)
        client = proxy.request()
        proxy.respond(b"Cache-Control: max-age=100\r\nLast-Modified: " + new + b"\r\n", b"", b"304 Not Modified")
        self.assertEqual(parse(client.value())[1][b"x-cache"], b"revalidated")
        self.assertEqual(get(proxy, headers=b"If-Modified-Since: " + between + b"\r\n")[0], 200)
        self.assertEqual(get(proxy, headers=b"If-Modified-Since: " + new + b"\r\n")[0], 304)
        self.assertEqual(get(proxy, headers=b"Range: bytes=0-0\r\nIf-Range: " + old + b"\r\n")[0], 200)
        self.assertEqual(get(proxy, headers=b"Range: bytes=0-0\r\nIf-Range: " + new + b"\r\n")[0], 206)
        self.assertEqual(proxy.sent, 2)

    def test_requestNoCache(self) -> None:
        """
        C{Cache-Control: no-cache} or C{Pragma: no-cache} in the request
        makes the cache revalidate a fresh entry.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC + b'ETag: "v1"\r\n')
        for header in (b"Cache-Control: no-cache\r\n", b"Pragma: no-cache\r\n"):
            client = proxy.request(headers=header)
            self.assertIn(b'If-None-Match: "v1"', proxy.upstreamRequest())
            proxy.respond(b'ETag: "v1"\r\n', b"", b"304 Not Modified")
            self.assertEqual(parse(client.value())[1][b"x-cache"], b"revalidated")

    def test_clientConditionalTagWithComma(self) -> None:
        """
        A stored C{ETag} holding a comma (a legal entity tag) answers a
        client's C{If-None-Match} naming it with 304: the list is read tag
        by tag, not split at every comma.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC + b'ETag: "a,b"\r\n')
        status, fields, body = get(proxy, headers=b'If-None-Match: "a,b"\r\n')
        self.assertEqual((status, fields[b"etag"], fields[b"x-cache"], body), (304, b'"a,b"', b"hit", b""))
        self.assertEqual(get(proxy, headers=b'If-None-Match: "x", W/"a,b"\r\n')[0], 304)
        self.assertEqual(get(proxy, headers=b'If-None-Match: "a"\r\n')[0], 200)
        self.assertEqual(proxy.sent, 1)

    def test_pragmaOtherTokens(self) -> None:
        """
        C{Pragma} is read as a list of directives: C{x-no-cache} (or any
        other directive merely containing C{no-cache}) is not C{no-cache},
        so the fresh entry is served without revalidation; C{no-cache}
        among other directives still revalidates.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC + b'ETag: "v1"\r\n')
        for header in (b"Pragma: x-no-cache\r\n", b"Pragma: no-cache-ish\r\n"):
            self.assertEqual(get(proxy, headers=header)[1][b"x-cache"], b"hit", header)
        self.assertEqual(proxy.sent, 1)
        client = proxy.request(headers=b"Pragma: x-other=1, No-Cache\r\n")
        self.assertIn(b'If-None-Match: "v1"', proxy.upstreamRequest())
        proxy.respond(b'ETag: "v1"\r\n', b"", b"304 Not Modified")
        self.assertEqual(parse(client.value())[1][b"x-cache"], b"revalidated")

    def test_requestMaxAgeMinFresh(self) -> None:
        """
        A request's C{max-age} and C{min-fresh} refuse entries too old or
        not fresh enough.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC)
        proxy.clock.advance(30)
        self.assertEqual(get(proxy, headers=b"Cache-Control: max-age=40\r\n")[1][b"x-cache"], b"hit")
        proxy.request(headers=b"Cache-Control: max-age=20\r\n")
        self.assertEqual(proxy.sent, 2)
        proxy.respond(PUBLIC)
        proxy.clock.advance(50)
        proxy.request(headers=b"Cache-Control: min-fresh=20\r\n")
        self.assertEqual(proxy.sent, 3)

    def test_maxStale(self) -> None:
        """
        C{max-stale} accepts a stale entry (C{X-Cache: stale}), unless the
        response says C{must-revalidate}.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: max-age=10\r\n")
        proxy.fetch(b"Cache-Control: max-age=10, must-revalidate\r\n", path=b"/strict")
        proxy.clock.advance(15)
        self.assertEqual(get(proxy, headers=b"Cache-Control: max-stale=10\r\n")[1][b"x-cache"], b"stale")
        self.assertEqual(get(proxy, headers=b"Cache-Control: max-stale\r\n")[1][b"x-cache"], b"stale")
        proxy.request(headers=b"Cache-Control: max-stale=2\r\n")
        self.assertEqual(proxy.sent, 3)
        proxy.respond(b"")
        proxy.request(b"/strict", headers=b"Cache-Control: max-stale\r\n")
        self.assertEqual(proxy.sent, 4)

    def test_onlyIfCached(self) -> None:
        """
        C{only-if-cached} with nothing usable stored: 504, nothing sent.
        """
        proxy = CacheProxy(self)
        self.assertEqual(get(proxy, headers=b"Cache-Control: only-if-cached\r\n")[0], 504)
        self.assertEqual(proxy.sent, 0)
        proxy.fetch(PUBLIC)
        self.assertEqual(get(proxy, headers=b"Cache-Control: only-if-cached\r\n")[0], 200)


class InvalidationTests(SynchronousTestCase):
    """
    Unsafe requests drop what they change (RFC 9111 §4.4).
    """

    def test_postInvalidates(self) -> None:
        """
        A successful POST drops its URI and its C{Location} and
        C{Content-Location} on the same host, not those on other hosts.
        """
        proxy = CacheProxy(self)
        for path in (b"/page", b"/other", b"/third", b"/kept"):
            proxy.fetch(PUBLIC, path=path)
        client = proxy.request(b"/page", b"POST", body=b"x=1")
        proxy.respond(
            b"Location: http://example.com/other\r\nContent-Location: /third\r\n", b"", b"303 See Other"
        )
        self.assertEqual(parse(client.value())[1][b"x-cache"], b"bypass")
        self.assertEqual(proxy.cache.entries, 1)
        self.assertEqual(get(proxy, b"/kept")[1][b"x-cache"], b"hit")

    def test_failedPostKeeps(self) -> None:
        """
        A failed unsafe request invalidates nothing.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC)
        proxy.request(b"/page", b"DELETE")
        proxy.respond(b"", b"", b"500 Oops")
        self.assertEqual(proxy.cache.entries, 1)

    def test_sameHostTarget(self) -> None:
        self.assertEqual(sameHostTarget(b"https://Example.com/a?b", b"example.com"), b"example.com/a?b")
        self.assertIsNone(sameHostTarget(b"http://evil.example/a", b"example.com"))
        self.assertIsNone(sameHostTarget(b"//evil.example/a", b"example.com"))
        self.assertEqual(sameHostTarget(b"/x#frag", b"example.com"), b"example.com/x")


class StaleTests(SynchronousTestCase):
    """
    C{stale-while-revalidate} and C{stale-if-error} (RFC 5861).
    """

    def test_staleWhileRevalidate(self) -> None:
        """
        Within the window the stale entry is served at once and one
        background request refreshes it.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b'Cache-Control: max-age=10, stale-while-revalidate=30\r\nETag: "v1"\r\n')
        proxy.clock.advance(15)
        status, fields, body = get(proxy)
        self.assertEqual((fields[b"x-cache"], body), (b"stale", b"hello"))
        self.assertEqual(proxy.sent, 2)
        self.assertIn(b'If-None-Match: "v1"', proxy.upstreamRequest())
        self.assertEqual(get(proxy)[1][b"x-cache"], b"stale")  # one refresh at a time
        self.assertEqual(proxy.sent, 2)
        proxy.respond(b'Cache-Control: max-age=10, stale-while-revalidate=30\r\nETag: "v2"\r\n', b"fresh")
        status, fields, body = get(proxy)
        self.assertEqual((fields[b"x-cache"], body), (b"hit", b"fresh"))

    def test_beyondWindow(self) -> None:
        """
        Past the window the request waits for the target.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: max-age=10, stale-while-revalidate=30\r\n")
        proxy.clock.advance(50)
        client = proxy.request()
        self.assertEqual(client.value(), b"")
        proxy.respond(b"", b"new")
        self.assertEqual(parse(client.value())[2], b"new")

    def test_staleIfErrorOn5xx(self) -> None:
        """
        A 5xx from the target is replaced by the stale entry within the
        C{stale-if-error} window.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: max-age=10, stale-if-error=60\r\n")
        proxy.clock.advance(20)
        client = proxy.request()
        proxy.respond(b"", b"broken", b"503 Unavailable")
        status, fields, body = parse(client.value())
        self.assertEqual((status, fields[b"x-cache"], body), (200, b"stale", b"hello"))

    def test_staleIfErrorTargetDown(self) -> None:
        """
        A target that cannot be reached: the stale entry is served.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: max-age=10, stale-if-error=60\r\n")
        proxy.clock.advance(20)
        proxy.targets.refused.add(TARGET)
        status, fields, body = get(proxy)
        self.assertEqual((status, fields[b"x-cache"]), (200, b"stale"))

    def test_staleIfErrorExpired(self) -> None:
        """
        Past the window, the error reaches the client.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: max-age=10, stale-if-error=5\r\n")
        proxy.clock.advance(20)
        proxy.targets.refused.add(TARGET)
        self.assertEqual(get(proxy)[0], 502)


class CollapsingTests(SynchronousTestCase):
    """
    Concurrent misses for one key make one request to the target.
    """

    def test_oneRequest(self) -> None:
        """
        Ten clients asking at once: one request reaches the target, every
        client gets the response.
        """
        proxy = CacheProxy(self)
        clients = [proxy.request() for _ in range(10)]
        self.assertEqual(proxy.sent, 1)
        proxy.respond(PUBLIC, b"shared")
        self.assertEqual([parse(c.value())[2] for c in clients], [b"shared"] * 10)
        self.assertEqual(proxy.sent, 1)

    def test_notStorableReleasesWaiters(self) -> None:
        """
        When the response may not be stored (private), the waiting requests
        go to the target themselves: nobody gets another's private page.
        """
        proxy = CacheProxy(self)
        clients = [proxy.request() for _ in range(3)]
        proxy.respond(b"Cache-Control: private\r\n", b"alice")
        self.assertEqual(proxy.sent, 3)
        proxy.respond(b"Cache-Control: private\r\n", b"bob", index=1)
        proxy.respond(b"Cache-Control: private\r\n", b"carol", index=2)
        self.assertEqual([parse(c.value())[2] for c in clients], [b"alice", b"bob", b"carol"])

    def test_leaderFails(self) -> None:
        """
        A failed request releases the waiters, which go to the target.
        """
        proxy = CacheProxy(self)
        first = proxy.request()
        second = proxy.request()
        proxy.upstream().transport.loseConnection()  # type: ignore[union-attr]
        self.assertEqual(parse(first.value())[0], 502)
        self.assertEqual(proxy.sent, 2)
        proxy.respond(PUBLIC, b"ok")
        self.assertEqual(parse(second.value())[2], b"ok")

    def test_lockTimeout(self) -> None:
        """
        A waiter gives up waiting after the lock timeout and goes to the
        target itself.
        """
        proxy = CacheProxy(self)
        proxy.request()
        proxy.request()
        proxy.clock.advance(11)
        self.assertEqual(proxy.sent, 2)


class RangeTests(SynchronousTestCase):
    """
    C{Range} requests answered from a fresh whole entry.
    """

    def setUp(self) -> None:
        self.proxy = CacheProxy(self)
        self.proxy.fetch(PUBLIC + b'ETag: "r"\r\nContent-Type: text/plain\r\n', b"0123456789")

    def test_single(self) -> None:
        status, fields, body = get(self.proxy, headers=b"Range: bytes=2-4\r\n")
        self.assertEqual((status, fields[b"content-range"], body), (206, b"bytes 2-4/10", b"234"))

    def test_multiple(self) -> None:
        status, fields, body = get(self.proxy, headers=b"Range: bytes=0-1, -2\r\n")
        self.assertEqual(status, 206)
        self.assertTrue(fields[b"content-type"].startswith(b"multipart/byteranges; boundary="))
        self.assertIn(b"Content-Range: bytes 0-1/10\r\n\r\n01\r\n", body)
        self.assertIn(b"Content-Range: bytes 8-9/10\r\n\r\n89\r\n", body)

    def test_unsatisfiable(self) -> None:
        status, fields, _ = get(self.proxy, headers=b"Range: bytes=20-\r\n")
        self.assertEqual((status, fields[b"content-range"]), (416, b"bytes */10"))

    def test_ifRange(self) -> None:
        self.assertEqual(get(self.proxy, headers=b'Range: bytes=0-0\r\nIf-Range: "r"\r\n')[0], 206)
        self.assertEqual(get(self.proxy, headers=b'Range: bytes=0-0\r\nIf-Range: "old"\r\n')[0], 200)

    def test_amplifyingRangesIgnored(self) -> None:
        """
        Ranges asking for more bytes in all than the stored body holds
        (overlapping ones), or more than C{MAX_RANGES} of them, are
        ignored: the whole body is sent, as X-Sendfile does.
        """
        for value in (b"bytes=0-9, 0-9", b"bytes=0-, -10", b"bytes=" + b",".join([b"0-0"] * 101)):
            status, fields, body = get(self.proxy, headers=b"Range: " + value + b"\r\n")
            self.assertEqual((status, fields[b"content-length"], body), (200, b"10", b"0123456789"), value)

    def test_rangeMissBypasses(self) -> None:
        """
        A range of something not stored goes to the target; the 206 is
        not stored.
        """
        client = self.proxy.request(b"/other", headers=b"Range: bytes=0-1\r\n")
        self.proxy.respond(PUBLIC + b"Content-Range: bytes 0-1/10\r\n", b"01", b"206 Partial Content")
        self.assertEqual(parse(client.value())[1][b"x-cache"], b"bypass")
        self.assertEqual(self.proxy.cache.entries, 1)


class ServiceChangeTests(SynchronousTestCase):
    """
    Entries dropped when the service changes, and on demand.
    """

    def test_removeAndPurge(self) -> None:
        """
        C{purgeCache} drops a service's entries (by path prefix when given);
        C{remove} drops them all.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC, path=b"/assets/a")
        proxy.fetch(PUBLIC, path=b"/page")
        self.assertEqual(proxy.router.purgeCache("app", "/assets"), 1)
        self.assertEqual(get(proxy, b"/page")[1][b"x-cache"], b"hit")
        self.assertRaises(DeployError, proxy.router.purgeCache, "nope")
        self.assertRaises(InvalidOptions, proxy.router.purgeCache, "app", "assets")
        proxy.router.remove("app")
        self.assertEqual(proxy.cache.entries, 0)

    def test_deployDrops(self) -> None:
        """
        A deploy to new targets drops the old version's entries; a response
        from the old version arriving after it is not stored.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC, b"v1")
        late = proxy.request(b"/late")
        options = attr.evolve(proxy.router.services["app"].options, force=True)
        deployed = Deferred.fromCoroutine(proxy.router.deploy("app", ["10.0.0.2:3000"], options))
        self.assertEqual(proxy.cache.entries, 0)
        proxy.respond(PUBLIC, b"old", index=1)
        self.successResultOf(deployed)
        self.assertEqual(parse(late.value())[2], b"old")
        self.assertEqual(proxy.cache.entries, 0)

    def test_rolloutGroupKeptApart(self) -> None:
        """
        Requests the rollout split sends to the rollout group never get the
        main group's entries.
        """
        proxy = CacheProxy(self)
        proxy.fetch(PUBLIC, b"main")
        self.successResultOf(Deferred.fromCoroutine(proxy.router.rolloutDeploy("app", ["10.0.0.3:3000"])))
        proxy.router.rolloutSet("app", 0, ["beta"])
        proxy.request(headers=b"Cookie: kamal-rollout=beta\r\n")
        self.assertEqual(proxy.sent, 2)
        self.assertEqual(get(proxy)[2], b"main")



class HitForMissTests(SynchronousTestCase):
    """
    A key whose response could not be stored is not collapsed for a while.
    """

    def test_passedStraight(self) -> None:
        """
        After a private response, concurrent requests for the same URL go
        to the target at once instead of waiting for one another; once a
        response is stored again, misses collapse again.
        """
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: private\r\n")
        proxy.request()
        proxy.request()
        self.assertEqual(proxy.sent, 3)
        proxy.respond(PUBLIC, index=1)
        proxy.respond(PUBLIC, index=2)
        proxy.cache.purge("app")
        proxy.request()
        proxy.request()
        self.assertEqual(proxy.sent, 4)

    def test_passExpires(self) -> None:
        proxy = CacheProxy(self)
        proxy.fetch(b"Cache-Control: private\r\n")
        proxy.clock.advance(61)
        proxy.request()
        proxy.request()
        self.assertEqual(proxy.sent, 2)


class WaitingTests(SynchronousTestCase):
    """
    What requests waiting for another's response do when it comes.
    """

    def test_nothingToStoreReleasesAtHead(self) -> None:
        """
        A response with neither freshness nor validator is not stored: the
        waiting requests go to the target as soon as its head arrives.
        """
        proxy = CacheProxy(self)
        first = proxy.request()
        second = proxy.request()
        proxy.upstream().dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
        self.assertEqual(proxy.sent, 2)
        proxy.respond(b"", b"other")
        self.assertEqual(parse(second.value())[2], b"other")
        proxy.upstream(0).dataReceived(b"world")
        self.assertEqual(parse(first.value())[2], b"helloworld")
        self.assertEqual(proxy.cache.entries, 0)

    def test_deployWhileWaiting(self) -> None:
        """
        A request that waited while a deploy switched the service's targets
        goes to the new targets, not to the draining old ones (503).
        """
        proxy = CacheProxy(self)
        proxy.request()
        waiting = proxy.request()
        options = attr.evolve(proxy.router.services["app"].options, force=True)
        Deferred.fromCoroutine(proxy.router.deploy("app", ["10.0.0.2:3000"], options))
        proxy.respond(b"Cache-Control: private\r\n", b"old", index=0)
        self.assertEqual(proxy.sent, 2)
        self.assertIn(b"10.0.0.2", proxy.upstream().transport.address.encode())  # type: ignore[union-attr]
        proxy.respond(b"Cache-Control: private\r\n", b"new")
        self.assertEqual(parse(waiting.value())[2], b"new")


class OuterSinkTests(SynchronousTestCase):
    def test_hitThroughOuterWrapper(self) -> None:
        """
        A hit is answered through C{exchange.sink}: a sink wrapper put on
        before the cache stage (response buffering here; compression and
        X-Sendfile later) sees it as any response.
        """
        proxy = CacheProxy(self, target={"buffer_responses": True})
        proxy.fetch(PUBLIC)
        sinks: list[Any] = []

        class SinkAtEnd(RecordingObserver):
            def requestEnded(self, exchange: Any) -> None:
                sinks.append(exchange.sink)

        proxy.site.observers += (SinkAtEnd(),)
        status, fields, body = get(proxy)
        self.assertEqual((status, fields[b"x-cache"], fields[b"content-length"], body), (200, b"hit", b"5", b"hello"))
        self.assertIsInstance(sinks[-1], BufferingSink)
