"""
X-Sendfile end to end: a real daemon, a real app on 127.0.0.1 answering
C{X-Sendfile: /path}, and curl.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from urllib.parse import quote

from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.harness import (
    Daemon,
    Backend,
    ctl,
    curl,
    deployArgs,
    hasCurl,
    runCommand,
    startBackend,
    startDaemon,
    tempDir,
)

GIB = 1 << 30
MARK_OFFSET = 700 * (1 << 20) + 12345
MARK = b"kamal-proxy sendfile mark"


def _rssKiB(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class SendfileTests(TestCase):
    timeout = 90

    async def setUpProxy(self, *daemonArgs: str) -> tuple[Daemon, Backend, str]:
        if not hasCurl():
            raise SkipTest("curl is not installed")
        work = tempDir(self)
        root = os.path.join(work, "public")
        os.makedirs(root)
        daemon = await startDaemon(self, extraArgs=daemonArgs)
        backend = startBackend(self, "v1")
        code, out, err = await ctl(daemon.socket, *deployArgs("app", backend.address, f"--sendfile-root={root}"))
        self.assertEqual(code, 0, out + err)
        return daemon, backend, root

    def url(self, daemon: Daemon, path: str) -> str:
        return daemon.url("/sendfile?path=" + quote(path, safe=""))

    async def test_gibibyteWithFlatMemoryAndRangeInTheMiddle(self) -> None:
        """
        A 1 GiB file is streamed with the proxy's memory flat, a range in
        its middle is correct byte for byte, and the app is told the proxy
        serves files.
        """
        daemon, backend, root = await self.setUpProxy()
        path = os.path.join(root, "big.bin")
        subprocess.run(["truncate", "-s", str(GIB), path], check=True)
        self.addCleanup(os.remove, path)
        with open(path, "r+b") as f:
            f.seek(MARK_OFFSET)
            f.write(MARK)
        url = self.url(daemon, path)
        status, _ = await curl(url, "-o", "/dev/null", "-r", "0-0")  # warm up the paths taken
        self.assertEqual(status, 206)
        before = _rssKiB(daemon.pid)
        result = await runCommand(
            [shutil.which("curl") or "curl", "-sS", "--noproxy", "*", "--max-time", "40",
             "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
            timeout=45,
        )
        after = _rssKiB(daemon.pid)
        self.assertEqual(result.out.split(), ["200", str(GIB)], result.err)
        self.assertLess(after - before, 20 * 1024, f"RSS grew from {before} to {after} KiB")
        self.assertLess(result.duration, 20.0)
        seen = await backend.waitForRequest(lambda r: r.uri.startswith("/sendfile"))
        self.assertEqual(seen.headers.get("x-sendfile-type"), "X-Sendfile")

        first, last = MARK_OFFSET - 3, MARK_OFFSET + len(MARK) + 2
        result = await runCommand(
            [shutil.which("curl") or "curl", "-sS", "--noproxy", "*", "-r", f"{first}-{last}",
             "-D", "-", url],
        )
        head, _, body = result.out.partition("\r\n\r\n")
        self.assertIn("206", head.splitlines()[0])
        self.assertIn(f"content-range: bytes {first}-{last}/{GIB}", head.lower())
        self.assertEqual(body.encode("latin-1"), b"\0\0\0" + MARK + b"\0\0\0")

    async def test_http2(self) -> None:
        """
        Over HTTP/2 (h2c) a file arrives whole, and several ranges come as
        C{multipart/byteranges}.
        """
        daemon, _, root = await self.setUpProxy("--h2c")
        path = os.path.join(root, "data.bin")
        data = os.urandom(32 << 20)
        with open(path, "wb") as f:
            f.write(data)
        program = shutil.which("curl") or "curl"
        out = os.path.join(root, "received")
        result = await runCommand(
            [program, "-sS", "--noproxy", "*", "--http2-prior-knowledge", "-o", out,
             "-w", "%{http_version} %{http_code}", self.url(daemon, path)]
        )
        self.assertEqual(result.out, "2 200", result.err)
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        result = await runCommand(
            [program, "-sS", "--noproxy", "*", "--http2-prior-knowledge", "-r", "0-1,1000-1002",
             "-D", "-", "-o", out, self.url(daemon, path)]
        )
        self.assertIn("content-type: multipart/byteranges; boundary=", result.out.lower())
        with open(out, "rb") as f:
            body = f.read()
        self.assertIn(b"Content-Range: bytes 0-1/%d\r\n\r\n" % len(data) + data[:2], body)
        self.assertIn(b"Content-Range: bytes 1000-1002/%d\r\n\r\n" % len(data) + data[1000:1003], body)

    async def test_outsideRootsRefused(self) -> None:
        daemon, _, root = await self.setUpProxy()
        secret = os.path.join(os.path.dirname(root), "secret.txt")
        with open(secret, "w") as f:
            f.write("secret")
        os.symlink(secret, os.path.join(root, "link.txt"))
        for path in (secret, os.path.join(root, "..", "secret.txt"), os.path.join(root, "link.txt"), "/etc/passwd"):
            status, body = await curl(self.url(daemon, path))
            self.assertEqual(status, 403, path)
            self.assertNotIn("secret", body)
        await daemon.waitForMessage("X-Sendfile path refused")

    async def test_headersHeadConditionalsAndMissing(self) -> None:
        daemon, _, root = await self.setUpProxy()
        path = os.path.join(root, "report.txt")
        with open(path, "w") as f:
            f.write("hello sendfile\n")
        url = self.url(daemon, path)
        program = shutil.which("curl") or "curl"
        result = await runCommand([program, "-sS", "--noproxy", "*", "-D", "-", url])
        head, _, body = result.out.partition("\r\n\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head.splitlines()[1:])}
        self.assertEqual(body, "hello sendfile\n")
        self.assertNotIn("x-sendfile", headers)
        self.assertEqual(headers["content-length"], "15")
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(headers["cache-control"], "public, max-age=60")
        self.assertEqual(headers["accept-ranges"], "bytes")
        etag = headers["etag"]
        self.assertTrue(etag.startswith('"'))

        result = await runCommand([program, "-sS", "--noproxy", "*", "-I", url])
        self.assertIn("200", result.out.splitlines()[0])
        self.assertIn("content-length: 15", result.out.lower())
        self.assertNotIn("x-sendfile", result.out.lower())

        status, body = await curl(url, "-H", f"If-None-Match: {etag}")
        self.assertEqual((status, body), (304, ""))
        status, _ = await curl(url, "-H", f"If-Modified-Since: {headers['last-modified']}")
        self.assertEqual(status, 304)
        status, _ = await curl(url, "-H", 'If-Match: "other"')
        self.assertEqual(status, 412)
        status, _ = await curl(url, "-r", "100-200")
        self.assertEqual(status, 416)
        status, _ = await curl(self.url(daemon, os.path.join(root, "missing.txt")))
        self.assertEqual(status, 404)

    async def test_withoutRootHeaderStripped(self) -> None:
        """
        A service deployed without C{--sendfile-root}: the app's
        C{X-Sendfile} never reaches the client, and the app is not told
        (even by the client) that the proxy serves files.
        """
        if not hasCurl():
            raise SkipTest("curl is not installed")
        daemon = await startDaemon(self)
        backend = startBackend(self, "v1")
        code, out, err = await ctl(daemon.socket, *deployArgs("app", backend.address))
        self.assertEqual(code, 0, out + err)
        result = await runCommand(
            [shutil.which("curl") or "curl", "-sS", "--noproxy", "*", "-D", "-",
             "-H", "X-Sendfile-Type: X-Sendfile", self.url(daemon, "/etc/passwd")]
        )
        self.assertNotIn("x-sendfile", result.out.lower())
        self.assertNotIn("root:", result.out)
        seen = await backend.waitForRequest(lambda r: r.uri.startswith("/sendfile"))
        self.assertNotIn("x-sendfile-type", seen.headers)

    async def test_missingRootRefusedAtDeploy(self) -> None:
        daemon = await startDaemon(self)
        backend = startBackend(self, "v1")
        missing = os.path.join(tempDir(self), "nope")
        code, out, err = await ctl(daemon.socket, *deployArgs("app", backend.address, f"--sendfile-root={missing}"))
        self.assertEqual(code, 1)
        self.assertEqual((out + err).strip().splitlines(), [f"Error: --sendfile-root {missing}: no such directory"])
        code, out, _ = await ctl(daemon.socket, "list")
        self.assertNotIn("app", out)
