"""
Hostile requests against the real daemon: oversized bodies, smuggling
attempts, header floods, garbage and abrupt disconnects mid-body.  None of
them may reach the target in part or hide a second request from it.
"""

from __future__ import annotations

import random
from typing import Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tests.integration.harness import fetch, pollUntil
from tests.protection.harness import (
    Protected,
    RawClient,
    connectRaw,
    protectedProxy,
    sendPaced,
)

HEAD = b"Host: example.com\r\nConnection: close\r\n"


async def exchange(proxy: Protected, data: bytes, piece: Optional[int] = None, timeout: float = 5.0) -> RawClient:
    """
    Send C{data} on a new connection (all at once, or C{piece} bytes per
    reactor turn until the proxy answers) and wait until the proxy closes it.
    """
    client = await connectRaw(proxy.testCase, proxy.port)
    if piece is None:
        client.send(data)
    else:
        await sendPaced(client, data, piece, 0.005, stop=lambda: bool(client.received))
    await client.waitClosed(timeout)
    return client


def each(coroutines: list) -> Deferred:
    return gatherResults([Deferred.fromCoroutine(c) for c in coroutines])


class OversizedBodyTests(TestCase):
    timeout = 30

    async def test_bodiesOverTheLimitGet413AndNeverReachTheTarget(self) -> None:
        """
        With C{--max-request-body 65536}: a declared C{Content-Length} over
        it gets 413 before any body byte is sent (the client sees the answer
        first), a chunked body crossing it is cut off with 413; the target
        sees neither, while a body just under the limit goes through whole.
        """
        proxy = await protectedProxy(self, deployArgs=("--max-request-body=65536",))
        proxy.good.start()

        declared = await connectRaw(self, proxy.port)
        declared.send(b"POST /declared HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10000000\r\n\r\n")
        await pollUntil(lambda: declared.status is not None, 5.0, "the 413 before the body")
        self.assertEqual(declared.status, 413)
        await declared.waitClosed(5.0)

        chunk = b"2000\r\n" + b"c" * 0x2000 + b"\r\n"
        chunked = await connectRaw(self, proxy.port)
        chunked.send(b"POST /chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = await sendPaced(chunked, chunk * 40, len(chunk), 0.01, stop=lambda: bool(chunked.received))
        await chunked.waitClosed(5.0)
        self.assertEqual(chunked.status, 413)
        self.assertLess(sent, 12 * len(chunk), "cut off soon after crossing the limit")

        status, _, body = await _post(proxy, "/within", 65536)
        self.assertEqual((status, body), (200, b"ok POST /within 65536"))

        self.assertEqual(proxy.backend.paths(), ["/within"])
        proxy.backend.assertNoPartialRequest(self)
        await proxy.good.check(self)
        await proxy.assertResourcesBack(self, "oversized body")


async def _post(proxy: Protected, path: str, size: int) -> tuple[int, object, bytes]:
    return await fetch(proxy.daemon.url(path), "POST", data=b"b" * size, timeout=5.0)


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"

SMUGGLING = {
    "CL then TE": b"POST /s1 HTTP/1.1\r\n" + HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE then CL": b"POST /s2 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "double CL": b"POST /s3 HTTP/1.1\r\n" + HEAD + b"Content-Length: 0\r\nContent-Length: 47\r\n\r\n" + SMUGGLED,
    "same CL twice": b"POST /s4 HTTP/1.1\r\n" + HEAD + b"Content-Length: 47\r\nContent-Length: 47\r\n\r\n" + SMUGGLED,
    "CL list": b"POST /s5 HTTP/1.1\r\n" + HEAD + b"Content-Length: 0, 47\r\n\r\n" + SMUGGLED,
    "obs-fold TE": b"POST /s6 HTTP/1.1\r\n" + HEAD + b"Content-Length: 47\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED,
    "TE space before colon": b"POST /s7 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE chunked, identity": b"POST /s8 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE identity, chunked": b"POST /s9 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE tab-prefixed value": b"POST /s10 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two TE headers": b"POST /s11 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "chunk size 0x": b"POST /s12 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x2f\r\n" + SMUGGLED[:47] + b"\r\n0\r\n\r\n",
    "chunk size overflow": b"POST /s13 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n1000000000000000000002f\r\n" + SMUGGLED,
    "chunk without CRLF": b"POST /s14 HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n1\r\nAB\r\n0\r\n\r\n" + SMUGGLED,
    "TE in HTTP/1.0": b"POST /s15 HTTP/1.0\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two Host headers": b"GET /s16 HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    "LF in header value": b"GET /s17 HTTP/1.1\r\n" + HEAD + b"X-A: b\nGET /smuggled HTTP/1.1\r\n\r\n",
}


class SmugglingTests(TestCase):
    timeout = 30

    async def test_smugglingAttemptsAreRefusedWith400(self) -> None:
        """
        Ambiguous framing (CL with TE, two CLs, a CL list, obs-fold, a
        malformed or unsupported TE, bad chunk sizes, TE in HTTP/1.0, two
        Hosts, a bare LF in a value) is answered with one 400 and a closed
        connection; the target sees none of it, least of all C{/smuggled}.
        """
        proxy = await protectedProxy(self)
        proxy.good.start()
        names = list(SMUGGLING)
        clients = await each([exchange(proxy, SMUGGLING[name]) for name in names])
        outcomes = {name: (c.status, c.responses) for name, c in zip(names, clients)}
        self.assertEqual(outcomes, {name: (400, 1) for name in names})
        self.assertEqual(proxy.backend.paths(), [])
        await proxy.good.check(self)
        await proxy.assertResourcesBack(self, "smuggling")

    async def test_requestHiddenInABodyStaysBody(self) -> None:
        """
        A request inside a body framed by C{Content-Length} (or chunked) is
        the body of one request: the target gets one POST carrying those
        bytes, and never a C{GET /smuggled}.
        """
        proxy = await protectedProxy(self)
        proxy.good.start()
        byLength = b"POST /hidden-cl HTTP/1.1\r\n" + HEAD + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
        byChunks = (
            b"POST /hidden-te HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
        )
        clients = await each([exchange(proxy, byLength), exchange(proxy, byChunks)])
        self.assertEqual([(c.status, c.responses) for c in clients], [(200, 1), (200, 1)])
        seen = sorted(proxy.backend.attack(), key=lambda r: r.path)
        self.assertEqual([(r.method, r.path, bytes(r.body)) for r in seen],
                         [("POST", "/hidden-cl", SMUGGLED), ("POST", "/hidden-te", SMUGGLED)])
        proxy.backend.assertNoPartialRequest(self)
        await proxy.good.check(self)
        await proxy.assertResourcesBack(self, "hidden request")


class HeaderFloodTests(TestCase):
    timeout = 30

    async def test_headerFloodsGet431(self) -> None:
        """
        10,000 headers, a 1 MB header line and 128 KB of 2 KB headers are
        each answered 431 and closed while the client is still sending; the
        target sees nothing and the daemon's memory stays bounded.
        """
        proxy = await protectedProxy(self)
        proxy.good.start()
        many = b"GET /many HTTP/1.1\r\nHost: example.com\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10000)) + b"\r\n"
        huge = b"GET /huge HTTP/1.1\r\nHost: example.com\r\nX-Huge: " + b"h" * (1024 * 1024) + b"\r\n\r\n"
        wide = b"GET /wide HTTP/1.1\r\nHost: example.com\r\n" + b"".join(b"X-W%d: %s\r\n" % (i, b"w" * 2000) for i in range(64)) + b"\r\n"
        clients = await each([exchange(proxy, data, piece=4096) for data in (many, huge, wide)])
        self.assertEqual([c.status for c in clients], [431, 431, 431])
        self.assertEqual([c.responses for c in clients], [1, 1, 1])
        self.assertEqual(proxy.backend.paths(), [])
        await proxy.good.check(self)
        await proxy.assertResourcesBack(self, "header flood")


class GarbageTests(TestCase):
    timeout = 30

    async def test_garbageGets400(self) -> None:
        """
        Random binary and a TLS ClientHello on the HTTP port are answered
        400 and closed at once; the target sees nothing.
        """
        proxy = await protectedProxy(self)
        proxy.good.start()
        rng = random.Random(20261126)
        garbage = [bytes(rng.randrange(256) for _ in range(4096)) for _ in range(3)]
        clientHello = (
            b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + bytes(rng.randrange(256) for _ in range(32))
            + b"\x00\x00\x02\x13\x01\x01\x00\x00\x99\x00\x00\x00\x10\x00\x0e\x00\x00\x0bexample.com"
        )
        started = reactor.seconds()
        clients = await each([exchange(proxy, data) for data in (*garbage, clientHello)])
        self.assertEqual([c.status for c in clients], [400] * 4)
        self.assertLess(max(c.closedAt for c in clients) - started, 1.0, "refused at once")  # type: ignore[type-var]
        self.assertEqual(proxy.backend.paths(), [])
        await proxy.good.check(self, minimum=2)
        await proxy.assertResourcesBack(self, "garbage")


class AbruptDisconnectTests(TestCase):
    timeout = 30

    async def test_resetMidBodyLeavesNothingBehind(self) -> None:
        """
        Clients that send half of a 4 MB body (spilled to a temporary file,
        C{--buffer-memory} being 1 MB) or of a small one and then reset the
        connection: the target sees no request, the temporary file is
        closed, and the proxy keeps serving.
        """
        proxy = await protectedProxy(self, deployArgs=("--buffer-memory=1048576",))
        proxy.good.start()
        big = await connectRaw(self, proxy.port)
        big.send(b"POST /half-big HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % (4 * 1048576))
        await sendPaced(big, b"B" * (2 * 1048576), 65536, 0.002)
        await pollUntil(lambda: len(proxy.probe.tempFiles()) > proxy.tempBefore, 5.0, "the body to spill to a file")
        small = await connectRaw(self, proxy.port)
        small.send(b"POST /half-small HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1000\r\n\r\n" + b"s" * 500)
        chunked = await connectRaw(self, proxy.port)
        chunked.send(b"POST /half-chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n" + b"c" * 100)
        for client in (big, small, chunked):
            self.assertIsNone(client.status)
            client.reset()
        await pollUntil(lambda: len(proxy.probe.tempFiles()) <= proxy.tempBefore, 5.0, "the spill to be removed")
        await proxy.assertStillServes(self)
        self.assertEqual(proxy.backend.paths(), ["/after"])
        proxy.backend.assertNoPartialRequest(self)
        await proxy.good.check(self)
        await proxy.assertResourcesBack(self, "abrupt disconnect")
