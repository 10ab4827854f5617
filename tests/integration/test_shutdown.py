"""
The daemon's life cycle: graceful shutdown with a request in flight, one
daemon per control socket, stale sockets replaced, and the twistd plugin.
"""

from __future__ import annotations

import json
import os
import signal
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    STARTUP_TIMEOUT,
    ctl,
    deployArgs,
    fetch,
    startBackend,
    startDaemon,
    tempDir,
)


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
