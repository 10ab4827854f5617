"""
Response compression end to end: a real daemon, a real app on 127.0.0.1,
and curl C{--compressed} (built with zlib, brotli and zstd) decoding what
it gets, over HTTP/1.1 and HTTP/2.
"""

from __future__ import annotations

import os
import random
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.harness import (
    Daemon,
    ctl,
    deployArgs,
    hasCurl,
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

class _App(Resource):
    """
    C{/page}: PAGE with a Content-Length and an ETag; C{/chunked}: PAGE
    written in ten pieces (chunked).
    """

    isLeaf = True

    def render(self, request: Any) -> Any:
        if request.path == b"/up":
            return b"ok"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        if request.path == b"/page":
            request.setHeader(b"etag", b'"page-1"')
            return PAGE
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
