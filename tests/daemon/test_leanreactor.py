"""
Tests for L{kamalproxy.daemon.leanreactor}: the daemon's epoll reactor.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.daemon.leanreactor import LeanEPollReactor


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class _Client(Protocol):
    received = b""
    closed = False

    def connectionMade(self) -> None:
        self.transport.write(b"ping")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received == b"ping":
            self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self.closed = True


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


class LeanReactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = LeanEPollReactor()
        self.addCleanup(self.reactor.disconnectAll)

    def iterateUntil(self, condition: Any, turns: int = 500) -> None:
        for _ in range(turns):
            if condition():
                return
            self.reactor.iterate(0.01)
        self.fail("the condition never held")

    def test_roundTrip(self) -> None:
        """
        Connections on it are served: a client's bytes reach a server on
        127.0.0.1 and come back.
        """
        port = self.reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = _Client()
        factory = ClientFactory.forProtocol(lambda: client)
        self.reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        self.iterateUntil(lambda: client.received == b"ping" and client.closed)

    def test_dispatchErrorLogged(self) -> None:
        """
        An error escaping the dispatch of one event is logged, and the
        other events of the same poll are still dispatched.
        """
        handled = []

        def handle(selectable: Any, fd: int, event: int) -> None:
            handled.append(fd)
            if fd == 1:
                raise RuntimeError("broken")

        class _Poller:
            def poll(self, timeout: float, most: int) -> list[tuple[int, int]]:
                return [(1, 0), (2, 0), (3, 0)]

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.reactor._dispatch = (_Poller(), {1: object(), 2: object()}, handle)
        self.reactor.doPoll(0)
        self.assertEqual(handled, [1, 2])  # 3 is no selectable
        [failure] = [e for e in events if e.get("log_level") == LogLevel.critical]
        self.assertIsInstance(failure["log_failure"].value, RuntimeError)
        self.flushLoggedErrors(RuntimeError)

    def test_importsInstallNoReactor(self) -> None:
        """
        Importing the proxy's modules installs no reactor (an embedding
        application may still choose its own), and the daemon's runners
        then install this one.
        """
        self.assertEqual(
            _python(
                "import sys\n"
                "import kamalproxy.daemon.runner, kamalproxy.thrust.runner, kamalproxy.routing.router\n"
                "import kamalproxy.http.site, kamalproxy.twistedcompat, kamalproxy.control.cli\n"
                "print('twisted.internet.reactor' in sys.modules)\n"
                "from kamalproxy.daemon.leanreactor import globalReactor\n"
                "print(type(globalReactor()).__name__)\n"
            ),
            "False\nLeanEPollReactor",
        )

    def test_twistdReactorPlugin(self) -> None:
        """
        C{twistd --reactor=kamal-epoll} can choose it.
        """
        self.assertEqual(
            _python(
                "from twisted.application.reactors import installReactor\n"
                "print(type(installReactor('kamal-epoll')).__name__)\n"
            ),
            "LeanEPollReactor",
        )
