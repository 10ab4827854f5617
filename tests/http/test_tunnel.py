"""
Tests for upgraded connections (WebSockets): the upgrade passed to the
target, its C{101} relayed, then bytes both ways until either side closes
(L{kamalproxy.http.tunnel}, with L{kamalproxy.upstream.forwarding} and the channel).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.upstream.forwarding import requestHeaders, upgradeRequested
from kamalproxy.routing.options import TargetOptions
from kamalproxy.routing.router import Router
from kamalproxy.http.site import ProxySite

from .._helpers import FakeTargets, statusOf
from tests.upstream.test_forwarding import _request

TARGET = "10.0.0.1:3000"

UPGRADE = (
    b"GET /cable HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


class _Client:
    """
    A client connection to a proxy for one service on a fake target; the
    request log is kept in C{logged}.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore([{"name": "app", "targets": [TARGET], "options": {}}])
        case.addCleanup(self.router.stop)
        self.logged: list[Any] = []
        self.site = ProxySite(self.router, self.clock, requestLog=self.logged.append)
        self.protocol = self.site.buildProtocol(None)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    @property
    def upstream(self) -> Any:
        return self.targets.connections[-1]

    @property
    def target(self) -> Any:
        return self.router.services["app"].group.targets[0]

    def upgrade(self) -> None:
        """
        Send the upgrade request and let the target accept it.
        """
        self.protocol.dataReceived(UPGRADE)
        self.upstream.dataReceived(SWITCHING)


class HeaderTests(SynchronousTestCase):
    """
    Which requests ask for an upgrade, and what the target is sent.
    """

    def test_upgradeRequested(self) -> None:
        """
        C{Connection: upgrade} (any case, among other tokens) with an
        C{Upgrade} field asks for that protocol; either alone does not.
        """
        cases = [
            ([(b"Connection", b"keep-alive, Upgrade"), (b"Upgrade", b"websocket")], b"websocket"),
            ([(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")], b"websocket"),
            ([(b"Upgrade", b"websocket")], None),
            ([(b"Connection", b"upgrade")], None),
        ]
        for headers, expected in cases:
            request = _request(headers)
            request.clientproto = b"HTTP/1.1"
            self.assertEqual(upgradeRequested(request), expected, headers)

    def test_notOverOtherVersions(self) -> None:
        """
        HTTP/1.0 and HTTP/2 requests are never upgraded.
        """
        for version in (b"HTTP/1.0", b"HTTP/2"):
            request = _request([(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")])
            request.clientproto = version
            self.assertIsNone(upgradeRequested(request))

    def test_upgradeSentUpstream(self) -> None:
        """
        An upgrade is passed on as C{Connection: Upgrade} and the client's
        C{Upgrade}; without one, neither field reaches the target.
        """
        request = _request([(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
        out, _ = requestHeaders(request, TargetOptions(), 0, b"websocket")
        self.assertEqual(out[-2:], [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
        out, _ = requestHeaders(request, TargetOptions(), 0)
        self.assertNotIn(b"upgrade", [name.lower() for name, _ in out])
        self.assertNotIn(b"connection", [name.lower() for name, _ in out])


class TunnelTests(SynchronousTestCase):
    """
    The upgraded connection through a real L{ProxySite} and L{Router}.
    """

    def test_switchingAndRelay(self) -> None:
        """
        The target's 101 reaches the client with its upgrade fields; then
        bytes flow both ways untouched, including bytes the target sent
        right behind its 101.
        """
        client = _Client(self)
        client.protocol.dataReceived(UPGRADE)
        sent = client.upstream.transport.value()
        self.assertIn(b"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n", sent)
        self.assertIn(b"\r\nsec-websocket-key: ", sent.lower())
        self.assertIn(b": dGhlIHNhbXBsZSBub25jZQ==\r\n", sent)
        client.upstream.transport.clear()
        client.upstream.dataReceived(SWITCHING + b"\x81\x05hello")
        response = client.transport.value()
        self.assertEqual(statusOf(response), 101)
        head, _, rest = response.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nConnection: Upgrade", head)
        self.assertIn(b"\r\nUpgrade: websocket", head)
        self.assertIn(b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
        self.assertEqual(rest, b"\x81\x05hello")
        client.protocol.dataReceived(b"\x81\x85not-http\r\n\r\n")
        self.assertEqual(client.upstream.transport.value(), b"\x81\x85not-http\r\n\r\n")
        client.upstream.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(client.transport.value().endswith(b"GET / HTTP/1.1\r\n\r\n"))

    def test_inFlightUntilClosedThenLogged101(self) -> None:
        """
        The upgraded request stays in flight on its target (a deploy drains
        it) and is logged with status 101 when the tunnel closes.
        """
        client = _Client(self)
        client.upgrade()
        self.assertEqual(len(client.target.inflight), 1)
        self.assertEqual(client.logged, [])
        self.assertEqual(len(client.site.active), 1)
        client.clock.advance(3600)  # no HTTP timeout ends a tunnel
        self.assertTrue(client.transport.connected)
        client.upstream.transport.loseConnection()
        self.assertEqual(client.target.inflight, set())
        [request] = client.logged
        self.assertEqual(request.code, 101)
        self.assertEqual(client.site.active, set())
        self.assertFalse(client.transport.connected)

    def test_clientCloseClosesTarget(self) -> None:
        """
        The client leaving closes the target's connection, which is never
        reused.
        """
        client = _Client(self)
        client.upgrade()
        upstream = client.upstream
        client.transport.loseConnection()
        self.assertFalse(upstream.connected)
        self.assertEqual(client.target.pool.idle, [])
        self.assertEqual(len(client.logged), 1)

    def test_drainDropsTunnel(self) -> None:
        """
        A tunnel still open at the drain deadline is dropped on both sides.
        """
        client = _Client(self)
        client.upgrade()
        [forwarding] = client.target.inflight
        forwarding.cancelForDrain()
        self.assertFalse(client.transport.connected)
        self.assertFalse(client.upstream.connected)
        self.assertEqual(client.target.inflight, set())

    def test_flowControl(self) -> None:
        """
        Each side's transport is the other's producer: a client that stops
        reading pauses reads from the target.
        """
        client = _Client(self)
        client.upgrade()
        self.assertIs(client.transport.producer, client.upstream.transport)
        self.assertIs(client.upstream.transport.producer, client.transport)

    def test_refusedUpgradeIsAPlainResponse(self) -> None:
        """
        A target that does not switch answers as usual and the connection
        stays HTTP.
        """
        client = _Client(self)
        client.protocol.dataReceived(UPGRADE)
        client.upstream.dataReceived(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno")
        self.assertEqual(statusOf(client.transport.value()), 400)
        client.transport.clear()
        client.protocol.dataReceived(b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertIn(b"GET /next HTTP/1.1", client.upstream.transport.value())
