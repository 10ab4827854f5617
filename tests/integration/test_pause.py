"""
Maintenance and pauses against a real daemon, with Kamal's exact command
lines: C{stop} shows the maintenance page (kept across a restart) while
the health-check path answers, C{pause} holds HTTP/1.1 and HTTP/2 requests
while the app restarts and C{resume} lets them all through, C{--max-pause}
expires, and C{stop} releases held requests with 503.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.trial.unittest import TestCase

from kamalproxy.control.commands import List
from tests.integration.harness import (
    Daemon,
    deployArgs,
    fetch,
    kamalProxy,
    startBackend,
    startDaemon,
)
from tests.integration.test_http2 import H2Client, inThread

HTTP1_REQUESTS = 160
HTTP2_REQUESTS = 40


async def describe(daemon: Daemon, service: str) -> dict[str, Any]:
    """
    The daemon's C{List} entry for C{service}.
    """
    client = await connectProtocol(UNIXClientEndpoint(reactor, daemon.socket), amp.AMP())
    try:
        answer = await client.callRemote(List)
    finally:
        client.transport.loseConnection()
    [entry] = [e for e in json.loads(answer["services"]) if e["service"] == service]
    return entry  # type: ignore[no-any-return]


async def waitHeld(daemon: Daemon, service: str, count: int, timeout: float = 10.0) -> None:
    """
    Wait until C{count} requests are held for C{service} (polling the
    daemon's C{List}).
    """
    deadline = reactor.seconds() + timeout
    while True:
        held = (await describe(daemon, service))["held"]
        if held >= count:
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"{held} requests held, not {count}\n{daemon.output.describe()}")
        await deferLater(reactor, 0.05, lambda: None)


def kamal(daemon: Daemon, *args: str) -> Deferred:
    """
    C{kamal-proxy ARGS} as Kamal runs it (the socket from the environment).
    """
    return kamalProxy(*args, env={"KAMAL_PROXY_SOCKET": daemon.socket})


def h2Many(port: int, path: bytes, count: int, reset: int = 0) -> Deferred:
    """
    C{count} GETs of C{path} as concurrent streams of one HTTP/2 (h2c)
    connection, from a client in a thread, the first C{reset} of them
    reset at once; fires with C{(status, X-Version)} of each other one, in
    order.
    """

    def scenario() -> list[tuple[int, Any]]:
        client = H2Client(port, timeout=40)
        try:
            streams = [client.request(b"GET", b"%s?h2=%d" % (path, n)) for n in range(count)]
            for stream in streams[:reset]:
                client.reset(stream)
            streams = streams[reset:]
            client.pump(client.finished(*streams))
            return [(client.responses[s].status, client.responses[s].header(b"x-version")) for s in streams]
        finally:
            client.close()

    return inThread(scenario)


class MaintenanceTests(TestCase):
    """
    C{kamal-proxy stop} and C{resume}: Kamal's C{app maintenance} and
    C{app live}.
    """

    timeout = 60

    async def test_stopRestartResume(self) -> None:
        """
        After C{stop --message "Back soon"} requests get the 503 page with
        the message and never reach the app, the health-check path answers
        200 (empty), C{list} says C{stopped}; a restarted daemon keeps all
        that; C{resume} serves the app again. An unknown service is one
        error line and exit 1.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        deployed = await kamal(daemon, *deployArgs("app-web", app.address))
        self.assertEqual(deployed.code, 0, deployed.err)

        stopped = await kamal(daemon, "stop", "app-web", '--drain-timeout=10s', "--message=Back soon")
        self.assertEqual(tuple(stopped), (0, "", ""))
        await self.assertMaintenance(daemon, app)
        listing = await kamal(daemon, "list")
        self.assertIn("stopped", listing.out)

        self.assertEqual(await daemon.stop(), 0)
        again = await startDaemon(self, port=daemon.port, stateDir=daemon.stateDir, socketPath=daemon.socket)
        await self.assertMaintenance(again, app)
        self.assertIn("stopped", (await kamal(again, "list")).out)

        resumed = await kamal(again, "resume", "app-web")
        self.assertEqual(tuple(resumed), (0, "", ""))
        status, headers, _ = await fetch(again.url("/after"))
        self.assertEqual((status, headers.get("x-version")), (200, "app"))
        self.assertIn("running", (await kamal(again, "list")).out)

        unknown = await kamal(again, "stop", "nope")
        self.assertEqual((unknown.code, unknown.out, unknown.err), (1, "", "Error: service not found\n"))

    async def assertMaintenance(self, daemon: Daemon, app: Any) -> None:
        seen = len(app.requests)
        status, headers, body = await fetch(daemon.url("/page"))
        self.assertEqual(status, 503)
        self.assertIn(b"Back soon", body)
        self.assertEqual(headers.get("content-type"), "text/html; charset=utf-8")
        status, _, body = await fetch(daemon.url("/up"))
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(len(app.requests), seen)


class PauseTests(TestCase):
    """
    C{kamal-proxy pause} holds requests; C{resume} or C{stop} lets them go.
    """

    timeout = 60

    async def startProxy(self) -> tuple[Daemon, Any]:
        daemon = await startDaemon(self, extraArgs=["--h2c"])
        app = startBackend(self, "v1")
        deployed = await kamal(daemon, *deployArgs("app-web", app.address))
        self.assertEqual(deployed.code, 0, deployed.err)
        return daemon, app

    async def test_pauseRestartResume(self) -> None:
        """
        C{pause} waits for the request in flight; then HTTP/1.1 and HTTP/2
        requests are held while the app restarts on the same port, and
        after C{resume} every one of them is answered 200 by the new app.
        """
        daemon, v1 = await self.startProxy()
        slow = Deferred.fromCoroutine(fetch(daemon.url("/slow?s=0.5"), timeout=10))
        await v1.waitForRequest(lambda r: r.uri.startswith("/slow"))
        paused = await kamal(daemon, "pause", "app-web", "--drain-timeout=30s", "--max-pause=30s")
        self.assertEqual(tuple(paused), (0, "", ""))
        self.assertEqual((await slow)[0], 200)
        [(answered, _)] = v1.answeredLater
        self.assertGreaterEqual(paused.ended, answered)
        self.assertEqual((await describe(daemon, "app-web"))["state"], "paused")

        http1 = [
            Deferred.fromCoroutine(fetch(daemon.url(f"/held/{n}"), timeout=30)) for n in range(HTTP1_REQUESTS)
        ]
        http2 = h2Many(daemon.port, b"/held2", HTTP2_REQUESTS)
        await waitHeld(daemon, "app-web", HTTP1_REQUESTS + HTTP2_REQUESTS)

        port = v1.port
        await v1.stop()
        await daemon.waitForMessage("is unhealthy")
        v2 = startBackend(self, "v2", port=port)
        await daemon.waitForMessage("is healthy (was unhealthy)")
        self.assertEqual(v1.requests[1:], [])

        resumed = await kamal(daemon, "resume", "app-web")
        self.assertEqual(tuple(resumed), (0, "", ""))
        results = await gatherResults(http1)
        self.assertEqual([(s, h.get("x-version")) for s, h, _ in results], [(200, "v2")] * HTTP1_REQUESTS)
        self.assertEqual(await http2, [(200, b"v2")] * HTTP2_REQUESTS)
        self.assertEqual(len(v2.requests), HTTP1_REQUESTS + HTTP2_REQUESTS)

    async def test_maxPauseExpires(self) -> None:
        """
        A request held longer than C{--max-pause} gets 504, and the
        original's warning is logged.
        """
        daemon, app = await self.startProxy()
        paused = await kamal(daemon, "pause", "app-web", "--max-pause=300ms")
        self.assertEqual(paused.code, 0, paused.err)
        started = reactor.seconds()
        status, _, _ = await fetch(daemon.url("/late"))
        self.assertEqual(status, 504)
        self.assertGreaterEqual(reactor.seconds() - started, 0.3)
        await daemon.waitForMessage("Rejecting request due to expired pause")
        self.assertEqual(app.requests, [])

    async def test_stopReleasesHeld(self) -> None:
        """
        C{stop} answers the held HTTP/1.1 and HTTP/2 requests with the 503
        maintenance page at once; a held HTTP/2 stream the client resets
        is forgotten (logged 499) and not counted as held.
        """
        daemon, app = await self.startProxy()
        self.assertEqual((await kamal(daemon, "pause", "app-web")).code, 0)
        http1 = [Deferred.fromCoroutine(fetch(daemon.url(f"/held/{n}"), timeout=20)) for n in range(5)]
        http2 = h2Many(daemon.port, b"/held2", 6, reset=1)
        await daemon.waitForRequestLogs(lambda e: e["status"] == 499, 1)
        await waitHeld(daemon, "app-web", 10)
        self.assertEqual((await describe(daemon, "app-web"))["held"], 10)
        stopped = await kamal(daemon, "stop", "app-web", '--drain-timeout=10s', "--message=Bye")
        self.assertEqual(stopped.code, 0, stopped.err)
        for status, _, body in await gatherResults(http1):
            self.assertEqual(status, 503)
            self.assertIn(b"Bye", body)
        self.assertEqual(await http2, [(503, None)] * 5)
        self.assertEqual(app.requests, [])
