"""
The daemon's life cycle: graceful shutdown with a request in flight, one
daemon per control socket, stale sockets replaced, and the twistd plugin.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any, Optional

import h2.errors
import h2.events

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.harness import (
    STARTUP_TIMEOUT,
    Daemon,
    ctl,
    curl,
    deployArgs,
    fetch,
    hasCurl,
    startBackend,
    startDaemon,
    tempDir,
)
from tests.integration.test_http2 import H2Client, Response, certificateFiles, inThread


class GracefulShutdownTests(TestCase):
    """
    SIGTERM lets requests in flight finish.
    """

    timeout = 30

    async def test_sigtermWaitsForRequestInFlight(self) -> None:
        """
        SIGTERM while a 2-second request is in flight: the request completes
        with a 200 from the backend, and only then does the daemon exit,
        with status 0.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        deployed = await ctl(daemon.socket, *deployArgs("app", app.address))
        self.assertEqual(deployed.code, 0, deployed.err)

        slowDone: list[float] = []
        slow = Deferred.fromCoroutine(fetch(daemon.url("/slow?s=2"), timeout=10))
        slow.addCallback(lambda result: slowDone.append(reactor.seconds()) or result)
        await app.waitForRequest(lambda r: r.uri.startswith("/slow"))

        daemon.signal("TERM")
        await daemon.waitForMessage("Waiting for 1 requests in flight")
        self.assertFalse(daemon.output.ended)
        status, headers, body = await slow
        code = await daemon.output.waitForExit(12)
        exitedAt = reactor.seconds()

        self.assertEqual((status, headers.get("x-version")), (200, "app"))
        self.assertEqual(json.loads(body)["uri"], "/slow?s=2")
        self.assertEqual(code, 0, daemon.output.describe())
        [(answeredAt, _)] = app.answeredLater
        self.assertGreater(exitedAt, answeredAt)
        self.assertLess(exitedAt - answeredAt, 5)
        line = await daemon.waitForLog(lambda e: e.get("msg") == "Request" and e.get("path") == "/slow")
        self.assertEqual(line["status"], 200)

    async def test_twistdPluginServesAndStops(self) -> None:
        """
        C{twistd -n kamal-proxy} with the same flags serves deploys and
        shuts down cleanly on SIGTERM (twistd then re-raises the signal, as
        it does for every plugin, so the exit status is "killed by
        SIGTERM").
        """
        daemon = await startDaemon(self, twistd=True)
        app = startBackend(self, "app")
        deployed = await ctl(daemon.socket, *deployArgs("app", app.address))
        self.assertEqual(deployed.code, 0, deployed.err)
        status, headers, _ = await fetch(daemon.url("/"))
        self.assertEqual((status, headers.get("x-version")), (200, "app"))
        self.assertEqual(await daemon.stop(), -signal.SIGTERM)
        await daemon.waitForMessage("Main loop terminated.")
        await daemon.waitForMessage("Server Shut Down.")
        self.assertFalse(os.path.exists(daemon.socket))


def _slowOverHTTP2(
    port: int, authority: bytes, path: bytes, cafile: Optional[str]
) -> tuple[Response, Optional[h2.events.ConnectionTerminated], bool]:
    """
    GET C{path} over HTTP/2 (TLS with C{cafile}, else h2c) and receive
    until the server closes the connection: the response, the server's
    GOAWAY, and whether the connection was closed (rather than timing out).
    """
    client = H2Client(port, authority=authority, cafile=cafile)
    try:
        response = client.fetch(b"GET", path)
        try:
            while True:
                client.receiveOnce()
        except ConnectionError:
            return response, client.terminated, True
    finally:
        client.close()


class HTTP2GracefulShutdownTests(TestCase):
    """
    SIGTERM lets HTTP/2 requests in flight finish, as HTTP/1.1 ones do:
    each response arrives whole, then GOAWAY NO_ERROR naming its stream,
    then the connection closes.
    """

    timeout = 40

    async def startProxy(self) -> tuple[Daemon, Any, str]:
        """
        A daemon with C{--h2c}, one backend deployed as C{plain.test} and,
        with a custom certificate, as C{tls.test}; returns the daemon, the
        backend and the certificate's path.
        """
        if not hasCurl():
            raise SkipTest("curl is not installed")
        daemon = await startDaemon(self, extraArgs=["--h2c"])
        app = startBackend(self, "app")
        certificate, key = certificateFiles(self, "tls.test")
        for args in (
            deployArgs("plain", app.address, "--host=plain.test"),
            deployArgs("secure", app.address, "--host=tls.test", "--tls",
                       f"--tls-certificate-path={certificate}", f"--tls-private-key-path={key}"),
        ):
            deployed = await ctl(daemon.socket, *args)
            self.assertEqual(deployed.code, 0, deployed.err)
        return daemon, app, certificate

    async def sigtermWithRequestsInFlight(self, tls: bool) -> None:
        """
        An h2 client and curl each GET a 2-second page over HTTP/2 (TLS or
        h2c); SIGTERM once both reached the backend.  Both get the whole
        response; the h2 client then gets GOAWAY NO_ERROR with last stream
        ID 1 and sees the connection close; the daemon exits 0 after.
        """
        daemon, app, certificate = await self.startProxy()
        if tls:
            host, port, cafile = "tls.test", daemon.httpsPort, certificate
            curlArgs = ["--http2", "--resolve", f"{host}:{port}:127.0.0.1", "--cacert", certificate]
            base = f"https://{host}:{port}"
        else:
            host, port, cafile = "plain.test", daemon.port, None
            curlArgs = ["--http2-prior-knowledge", "-H", f"Host: {host}"]
            base = f"http://127.0.0.1:{port}"
        h2Done = inThread(_slowOverHTTP2, port, host.encode(), b"/slow?s=2&client=h2", cafile)
        curlDone = Deferred.fromCoroutine(curl(f"{base}/slow?s=2&client=curl", *curlArgs))
        for client in ("h2", "curl"):
            await app.waitForRequest(lambda r, c=client: r.uri == f"/slow?s=2&client={c}")

        daemon.signal("TERM")
        await daemon.waitForMessage("Waiting for 2 requests in flight")
        response, goAway, closed = await h2Done
        status, body = await curlDone
        code = await daemon.output.waitForExit(12)

        self.assertEqual((response.status, response.ended, response.reset), (200, True, None))
        self.assertEqual(json.loads(bytes(response.body))["uri"], "/slow?s=2&client=h2")
        self.assertEqual((status, json.loads(body)["uri"]), (200, "/slow?s=2&client=curl"))
        self.assertIsNotNone(goAway, daemon.output.describe())
        self.assertEqual(
            (goAway.error_code, goAway.last_stream_id), (h2.errors.ErrorCodes.NO_ERROR, response.streamID)
        )
        self.assertTrue(closed)
        self.assertEqual(code, 0, daemon.output.describe())

    async def test_sigtermH2c(self) -> None:
        """
        Over cleartext HTTP/2 (h2c).
        """
        await self.sigtermWithRequestsInFlight(tls=False)

    async def test_sigtermTLS(self) -> None:
        """
        Over HTTP/2 chosen by ALPN on the HTTPS port.
        """
        await self.sigtermWithRequestsInFlight(tls=True)


class ControlSocketTests(TestCase):
    """
    Who owns the control socket.
    """

    timeout = 30

    async def test_secondDaemonOnSameSocketRefused(self) -> None:
        """
        A second daemon given the socket of a running one exits 1 with a
        one-line message naming the socket, and the first keeps working.
        """
        first = await startDaemon(self)
        second = await startDaemon(self, socketPath=first.socket, waitReady=False)
        code = await second.output.waitForExit(STARTUP_TIMEOUT)

        self.assertEqual(code, 1)
        self.assertEqual(
            second.output.stderr.decode().splitlines(),
            [f"Error: another kamal-proxy is running with the control socket at {first.socket}"],
        )
        listing = await ctl(first.socket, "list")
        self.assertEqual(listing.code, 0, listing.err)
        self.assertTrue(os.path.exists(first.socket))

    async def test_secondDaemonOnSamePortRefused(self) -> None:
        """
        A second daemon asked for a port in use exits 1 with a one-line
        error, and does not take over its own control socket path.
        """
        first = await startDaemon(self)
        second = await startDaemon(self, port=first.port, waitReady=False)
        code = await second.output.waitForExit(STARTUP_TIMEOUT)

        self.assertEqual(code, 1)
        lines = second.output.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("Error: "), lines)
        self.assertIn(str(first.port), lines[0])
        listing = await ctl(first.socket, "list")
        self.assertEqual(listing.code, 0, listing.err)

    async def test_staleSocketReplaced(self) -> None:
        """
        A socket file left by a dead daemon (nothing listening) is replaced:
        the new daemon starts on that path and answers commands there.
        """
        path = os.path.join(tempDir(self), "kp.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(path)
        dead.close()
        self.assertTrue(os.path.exists(path))

        daemon = await startDaemon(self, socketPath=path)
        app = startBackend(self, "app")
        deployed = await ctl(path, *deployArgs("app", app.address))
        self.assertEqual(deployed.code, 0, deployed.err)
        listing = await ctl(path, "list")
        self.assertIn(app.address, listing.out)
        self.assertEqual(await daemon.stop(), 0)
