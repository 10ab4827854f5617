"""
The proxy as a client of its targets, end to end: a real daemon, real
backends on 127.0.0.1 and real clients (curl, treq).
"""

from __future__ import annotations

import json
import shutil
from typing import Optional

from twisted.internet import reactor
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.harness import (
    Daemon,
    ctl,
    curl,
    deployArgs,
    fetch,
    hasCurl,
    httpPool,
    runCommand,
    startBackend,
    startDaemon,
)

EARLY_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


class _RawBackend(Protocol):
    """
    An HTTP/1.1 app written byte for byte: C{/hints} answers C{100
    Continue} and C{103 Early Hints} before its C{200}; every other path
    answers C{200} with the request's method as body.  See L{_RawApp} for
    when idle connections are closed.
    """

    factory: "_RawApp"

    def connectionMade(self) -> None:
        self.buffer = b""
        self.pending: Optional[tuple[bytes, bytes, int]] = None
        self.answered = 0
        self.idleSince = reactor.seconds()
        self.idleCall: Optional[IDelayedCall] = None
        self.factory.connections += 1
        self._startIdle()

    def _startIdle(self) -> None:
        self.idleSince = reactor.seconds()
        if self.factory.idleTimeout is not None:
            self.idleCall = reactor.callLater(self.factory.idleTimeout, self.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while self.connected:
            if self.pending is None:
                if b"\r\n\r\n" not in self.buffer:
                    return
                head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
                self._headReceived(head)
                continue
            method, path, length = self.pending
            if len(self.buffer) < length:
                return
            self.buffer = self.buffer[length:]
            self.pending = None
            self._answer(method, path)

    def _headReceived(self, head: bytes) -> None:
        if self.idleCall is not None and self.idleCall.active():
            self.idleCall.cancel()
        app = self.factory
        if app.idleTimeout is not None and reactor.seconds() - self.idleSince >= app.idleTimeout - app.crossing:
            # Too close to the idle timeout: on a real network this request
            # and the close cross each other; the app never answers it.
            app.dropped += 1
            self.transport.abortConnection()
            self.connected = False
            return
        lines = head.split(b"\r\n")
        method, path = lines[0].split(b" ")[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self.pending = (method, path, length)

    def _answer(self, method: bytes, path: bytes) -> None:
        app = self.factory
        keepAlive = b"Keep-Alive: timeout=%g\r\n" % app.idleTimeout if app.announce else b""
        hints = b"HTTP/1.1 100 Continue\r\n\r\n" + EARLY_HINTS if path == b"/hints" else b""
        self.transport.write(
            hints + b"HTTP/1.1 200 OK\r\n" + keepAlive + b"Content-Length: %d\r\n\r\n%s" % (len(method), method)
        )
        app.answered += 1
        if self.answered:
            app.reused += 1
        self.answered += 1
        self._startIdle()

    def connectionLost(self, reason: object) -> None:
        if self.idleCall is not None and self.idleCall.active():
            self.idleCall.cancel()


class _RawApp(Factory):
    """
    L{_RawBackend}'s factory and what it saw.

    @ivar idleTimeout: seconds after which an idle connection is closed
        (L{None}: never); a request arriving less than C{crossing} seconds
        before that is treated as crossing the close (dropped unanswered).
    @ivar announce: whether responses say C{Keep-Alive: timeout=...}.
    """

    protocol = _RawBackend
    noisy = False

    def __init__(self, idleTimeout: Optional[float] = None, announce: bool = False, crossing: float = 0) -> None:
        self.idleTimeout = idleTimeout
        self.announce = announce
        self.crossing = crossing
        self.connections = 0
        self.answered = 0
        self.reused = 0
        self.dropped = 0


def startRawApp(testCase: TestCase, app: _RawApp) -> str:
    """
    Listen with C{app} on 127.0.0.1; return its address.
    """
    listening = reactor.listenTCP(0, app, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    return f"127.0.0.1:{listening.getHost().port}"


async def _deploy(testCase: TestCase, daemon: Daemon, service: str, address: str, *extra: str) -> None:
    result = await ctl(daemon.socket, *deployArgs(service, address, *extra))
    testCase.assertEqual((result.code, result.err), (0, ""), f"deploy {service}")


class HostTests(TestCase):
    """
    The C{Host} the target gets.
    """

    timeout = 30

    async def test_missingOrEmptyHost(self) -> None:
        """
        An HTTP/1.0 request without C{Host}, and an HTTP/1.1 request with
        an empty one, reach the app with the target's C{host:port} as
        C{Host} (the proxy speaks HTTP/1.1 to it); a request with a C{Host}
        keeps its own.
        """
        if not hasCurl():
            raise SkipTest("curl is not installed")
        daemon = await startDaemon(self)
        backend = startBackend(self, "app")
        await _deploy(self, daemon, "app", backend.address)

        for args in (["--http1.0", "-H", "Host:"], ["-H", "Host;"]):
            status, body = await curl(daemon.url("/"), *args)
            self.assertEqual(status, 200, (args, body))
            self.assertEqual(json.loads(body)["host"], backend.address, args)
        status, body = await curl(daemon.url("/"), "-H", "Host: app.test")
        self.assertEqual((status, json.loads(body)["host"]), (200, "app.test"))


class InterimResponseTests(TestCase):
    """
    Interim (1xx) responses from the app.
    """

    timeout = 30

    async def test_earlyHintsOverHTTP11(self) -> None:
        """
        curl over HTTP/1.1 gets the app's C{103 Early Hints}, with its
        C{Link}, before the final response, and not the app's C{100
        Continue} (it sent no C{Expect}).
        """
        program = shutil.which("curl")
        if program is None:
            raise SkipTest("curl is not installed")
        daemon = await startDaemon(self)
        await _deploy(self, daemon, "app", startRawApp(self, _RawApp()))
        result = await runCommand(
            [program, "-sS", "-v", "--noproxy", "*", "--max-time", "10", daemon.url("/hints")], timeout=15
        )
        self.assertEqual((result.code, result.out), (0, "GET"), result.err)
        received = [line[2:].strip() for line in result.err.splitlines() if line.startswith("< ")]
        self.assertEqual(
            [line for line in received if line][:3],
            ["HTTP/1.1 103 Early Hints", "Link: </style.css>; rel=preload; as=style", "HTTP/1.1 200 OK"],
            result.err,
        )
        self.assertNotIn("HTTP/1.1 100 Continue", received)
        self.assertFalse([line for line in received if line.lower().startswith("connection: keep")])


IDLE_TIMEOUT = 0.8
"""Seconds the test apps keep an idle connection."""

CROSSING = 0.3
"""The last seconds before it in which a request is taken as crossing the close."""

SPACINGS = (0.05, 0.55, 0.65) * 3
"""Seconds between a client's requests: well within the idle time, and in the crossing window."""


class KeepAliveTests(TestCase):
    """
    Apps that close idle keep-alive connections.
    """

    timeout = 60

    async def _spaced(self, daemon: Daemon, host: str, method: str) -> list[tuple[float, int, bytes]]:
        """
        Requests one after another from one client, each L{SPACINGS} after
        the previous answer; returns C{(spacing, status, body)} of each.
        """
        pool = httpPool(self)
        results = []
        for spacing in SPACINGS:
            await deferLater(reactor, spacing, lambda: None)
            data = b"x" if method == "POST" else None
            status, _, body = await fetch(daemon.url("/"), method, host=host, data=data, pool=pool)
            results.append((spacing, status, body))
        return results

    async def test_idleConnectionsClosedByTheApp(self) -> None:
        """
        An app closes connections idle for L{IDLE_TIMEOUT}, and one request
        reaching it in the last L{CROSSING} seconds before that is lost
        unanswered (on a real network: the request and the close cross).
        Requests spaced around that time all succeed:

          - the app announces its timeout (as Node does): the proxy stops
            using a connection before it, so even C{POST}s (which cannot be
            retried) never meet a closing connection, while connections are
            still reused for requests in quick succession;
          - the app does not announce it: the C{GET}s that meet a closing
            connection are retried on a new one.
        """
        daemon = await startDaemon(self)
        announcing = _RawApp(IDLE_TIMEOUT, announce=True, crossing=CROSSING)
        silent = _RawApp(IDLE_TIMEOUT, announce=False, crossing=CROSSING)
        await _deploy(self, daemon, "announcing", startRawApp(self, announcing), "--host=announcing.test")
        await _deploy(self, daemon, "silent", startRawApp(self, silent), "--host=silent.test")

        for spacing, status, body in await self._spaced(daemon, "announcing.test", "POST"):
            self.assertEqual((status, body), (200, b"POST"), f"POST {spacing}s after the previous answer")
        self.assertEqual(announcing.dropped, 0)
        self.assertGreater(announcing.reused, 0)

        for spacing, status, body in await self._spaced(daemon, "silent.test", "GET"):
            self.assertEqual((status, body), (200, b"GET"), f"GET {spacing}s after the previous answer")
        self.assertGreater(silent.dropped, 0)  # the retry was needed, and worked
