"""
Response compression end to end: a real daemon, a real app on 127.0.0.1,
and curl C{--compressed} (built with zlib, brotli and zstd) decoding what
it gets, over HTTP/1.1 and HTTP/2.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import socket
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.harness import (
    Daemon,
    ctl,
    deployArgs,
    fetch,
    freePort,
    hasCurl,
    pollUntil,
    runCommand,
    startDaemon,
    tempDir,
)

_random = random.Random(9)
_WORDS = ["".join(_random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_random.randint(2, 9))) for _ in range(2000)]
PAGE = (
    b"<!DOCTYPE html><html><body>\n"
    + b"".join(
        b'<div class="c%d"><a href="/p/%d">%s</a></div>\n'
        % (_random.randint(1, 40), _random.randint(1, 99999), " ".join(_random.choices(_WORDS, k=12)).encode())
        for _ in range(1500)
    )
)[: 100 * 1024]

BIG_BLOCK = base64.b64encode(random.Random(3).randbytes(768 * 1024))  # compresses to ~75 %
BIG_TOTAL = 96 * len(BIG_BLOCK)


def _rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class _App(Resource):
    """
    C{/page}: PAGE with a Content-Length and an ETag; C{/cached}: PAGE,
    cacheable, counted in C{cachedAsked}; C{/chunked}: PAGE
    written in ten pieces (chunked); C{/big}: C{BIG_TOTAL} bytes of text,
    read from a file by Twisted's own flow-controlled producer, counted in
    C{sent} as they are written.
    """

    isLeaf = True
    sent = 0
    cachedAsked = 0
    bigPath = ""

    def render(self, request: Any) -> Any:
        if request.path == b"/up":
            return b"ok"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if request.path == b"/page":
            request.setHeader(b"etag", b'"page-1"')
            return PAGE
        if request.path == b"/cached":
            self.cachedAsked += 1
            request.setHeader(b"cache-control", b"public, max-age=600")
            return PAGE
        if request.path == b"/big":
            from twisted.web.static import File

            counted = request.write

            def write(data: bytes) -> None:
                self.sent += len(data)
                counted(data)

            request.write = write
            return File(self.bigPath, defaultType="text/plain").render_GET(request)
        if request.path == b"/chunked":
            step = len(PAGE) // 10 + 1
            for i in range(0, len(PAGE), step):
                request.write(PAGE[i : i + step])
            request.finish()
            return 1  # NOT_DONE_YET
        request.setResponseCode(404)
        return b"no"


class CompressionTests(TestCase):
    timeout = 90

    async def setUpProxy(self, *daemonArgs: str) -> tuple[Daemon, _App]:
        if not hasCurl():
            raise SkipTest("curl is not installed")
        app = _App()
        site = Site(app, timeout=None)
        site.log = lambda request: None  # type: ignore[method-assign]
        listener = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        daemon = await startDaemon(self, extraArgs=daemonArgs)
        target = f"127.0.0.1:{listener.getHost().port}"
        code, out, err = await ctl(daemon.socket, *deployArgs("app", target, "--health-check-path=/up"))
        self.assertEqual(code, 0, out + err)
        return daemon, app

    async def curlGet(self, url: str, *args: str) -> tuple[dict[str, str], bytes]:
        """
        GET C{url} with curl; the response's headers (lower-cased names)
        and the body curl decoded.
        """
        work = tempDir(self)
        out, head = os.path.join(work, "body"), os.path.join(work, "head")
        result = await runCommand(
            [shutil.which("curl") or "curl", "-sS", "--noproxy", "*", "--max-time", "20", "-o", out, "-D", head,
             *args, url],
            timeout=25,
        )
        self.assertEqual(result.code, 0, result.err)
        with open(head, "rb") as f:
            lines = f.read().decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        headers[":status"] = lines[0].split()[1]
        headers[":version"] = lines[0].split()[0]
        with open(out, "rb") as f:
            return headers, f.read()

    async def test_compressedHits(self) -> None:
        """
        A cacheable page reaches the app once; every coding's hits, over
        HTTP/1.1 and HTTP/2, carry the very bytes of that coding's first
        response (the encoded copy the cache kept), which curl decodes to
        the page.
        """
        metricsPort = freePort()
        daemon, app = await self.setUpProxy("--h2c", "--metrics-port", str(metricsPort))
        for coding in ("gzip", "br", "zstd"):
            raw = []
            for version in ("--http1.1", "--http2-prior-knowledge", "--http1.1"):
                headers, body = await self.curlGet(daemon.url("/cached"), version, "-H", f"Accept-Encoding: {coding}")
                self.assertEqual(headers.get("content-encoding"), coding)
                if headers["x-cache"] == "hit":  # a miss may have gone out as it was encoded, chunked
                    self.assertEqual(headers.get("content-length"), str(len(body)))
                raw.append((headers["x-cache"], body))
            self.assertEqual([status for status, _ in raw], ["miss" if coding == "gzip" else "hit", "hit", "hit"])
            self.assertEqual({body for _, body in raw}, {raw[0][1]}, coding)
            headers, body = await self.curlGet(daemon.url("/cached"), "--compressed", "-H", f"Accept-Encoding: {coding}")
            self.assertEqual((headers["x-cache"], body), ("hit", PAGE))
        self.assertEqual(app.cachedAsked, 1)
        status, _, metrics = await fetch(f"http://127.0.0.1:{metricsPort}/metrics")
        # Each coding compressed once; its other three responses sent the kept copy.
        self.assertIn(b"\nkamal_proxy_compressed_responses_reused_total 9.0\n", metrics)

    async def test_decodedByCurl(self) -> None:
        """
        gzip, brotli and zstd bodies, over HTTP/1.1 and HTTP/2, with a
        Content-Length from the app or chunked, decode to the app's body
        byte for byte; the head says what was done (Content-Encoding, Vary,
        a weak ETag, no Accept-Ranges). Asked for all three, zstd wins.
        """
        daemon, _ = await self.setUpProxy("--h2c")
        for version in ("--http1.1", "--http2-prior-knowledge"):
            for accept, coding in (("gzip", "gzip"), ("br", "br"), ("zstd", "zstd"), ("gzip, br, zstd", "zstd")):
                for path in ("/page", "/chunked"):
                    what = (version, accept, path)
                    headers, body = await self.curlGet(
                        daemon.url(path), version, "--compressed", "-H", f"Accept-Encoding: {accept}"
                    )
                    self.assertEqual(headers[":status"], "200", what)
                    self.assertEqual(headers.get("content-encoding"), coding, what)
                    self.assertEqual(headers.get("vary"), "Accept-Encoding", what)
                    self.assertEqual(body, PAGE, what)
                    if path == "/page":
                        self.assertEqual(headers.get("etag"), 'W/"page-1"', what)
            headers, body = await self.curlGet(daemon.url("/page"), version)
            self.assertNotIn("content-encoding", headers)
            self.assertEqual((headers.get("etag"), headers.get("vary"), body), ('"page-1"', "Accept-Encoding", PAGE))

    async def test_slowClientPausesTheApp(self) -> None:
        """
        A client that asks for a large compressed response and stops
        reading makes the proxy stop reading the app: the app's writes stall
        long before the end, and the daemon's memory does not grow with the
        response.
        """
        daemon, app = await self.setUpProxy()
        app.bigPath = os.path.join(tempDir(self), "big.txt")
        with open(app.bigPath, "wb") as f:
            for _ in range(BIG_TOTAL // len(BIG_BLOCK)):
                f.write(BIG_BLOCK)
        before = _rssKiB(daemon.pid)
        client = socket.create_connection(("127.0.0.1", daemon.port))
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: zstd\r\n\r\n")
        seen = [-1]

        def stalled() -> bool:
            last, seen[0] = seen[0], app.sent
            return app.sent > 0 and app.sent == last

        await pollUntil(stalled, 60.0, "the app's writes to stall", interval=0.5)
        self.assertLess(app.sent, BIG_TOTAL // 2, "the proxy read on while its client did not")
        self.assertLess(_rssKiB(daemon.pid) - before, 20 * 1024)
        head = client.recv(4096)
        self.assertIn(b"\r\nContent-Encoding: zstd\r\n", head)
