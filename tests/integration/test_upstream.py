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
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.harness import (
    Daemon,
    ctl,
    curl,
    deployArgs,
    hasCurl,
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
        if b"\r\n\r\n" not in self.buffer:
            return
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if self.idleCall is not None and self.idleCall.active():
            self.idleCall.cancel()
        app = self.factory
        if app.idleTimeout is not None and reactor.seconds() - self.idleSince >= app.idleTimeout - app.crossing:
            # Too close to the idle timeout: on a real network this request
            # and the close cross each other; the app never answers it.
            app.dropped += 1
            self.transport.abortConnection()
            return
        requestLine = head.split(b"\r\n", 1)[0]
        method, path = requestLine.split(b" ")[:2]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self.buffer = self.buffer[length:]  # the tests' bodies arrive with their head
        keepAlive = b"Keep-Alive: timeout=%g\r\n" % app.idleTimeout if app.announce else b""
        hints = b"HTTP/1.1 100 Continue\r\n\r\n" + EARLY_HINTS if path == b"/hints" else b""
        self.transport.write(
            hints + b"HTTP/1.1 200 OK\r\n" + keepAlive + b"Content-Length: %d\r\n\r\n%s" % (len(method), method)
        )
        app.answered += 1
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
