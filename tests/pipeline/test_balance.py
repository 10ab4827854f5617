"""
Tests for L{kamalproxy.pipeline.balance}: readers, writer affinity, the
C{X-Kamal-Target} header and the load balancing policies, through a
L{ProxySite} and a L{Router} with targets in memory.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString

from kamalproxy.pipeline.balance import affinityCookie, hasWriterCookie, isRead
from kamalproxy.routing.router import Router
from kamalproxy.upstream.client import UpstreamConnection
from kamalproxy.upstream.targets import Target

from .._helpers import DummyRequest, FakeTargets, proxyConnection, statusOf

WRITER = "10.0.0.1:3000"
READER_1 = "10.0.0.2:3000"
READER_2 = "10.0.0.3:3000"
NOW = 1_700_000_000.0


class _Proxy:
    """
    A L{Router} with one service on fake writers and readers (healthy), and
    a client connection to a site in front of it.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        targets: Sequence[str] = (WRITER,),
        readers: Sequence[str] = (READER_1, READER_2),
        targetOptions: Any = None,
        **serviceOptions: Any,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(NOW)
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore(
            [
                {
                    "name": "app",
                    "targets": list(targets),
                    "read_targets": list(readers),
                    "options": {"service": serviceOptions, "target": targetOptions or {}},
                }
            ]
        )
        self.protocol, self.client, _ = proxyConnection(self.router, self.clock)
        case.addCleanup(self.router.stop)

    def target(self, address: str) -> Target:
        [target] = [t for t in self.router.services["app"].group.targets if t.address == address]
        return target

    def send(self, method: bytes = b"GET", *headers: bytes) -> UpstreamConnection:
        """
        Send a request; return the target connection it went to.
        """
        sent = {conn: len(conn.transport.value()) for conn in self.targets.connections}  # type: ignore[union-attr]
        extra = b"".join(h + b"\r\n" for h in headers)
        body = b"Content-Length: 0\r\n" if method in (b"POST", b"PUT") else b""
        self.protocol.dataReceived(
            method + b" / HTTP/1.1\r\nHost: example.com\r\n" + body + extra + b"\r\n"
        )
        [conn] = [
            conn
            for conn in self.targets.connections
            if len(conn.transport.value()) != sent.get(conn, 0)  # type: ignore[union-attr]
        ]
        return conn

    def sentTo(self, method: bytes = b"GET", *headers: bytes) -> str:
        """
        Send a request, answer it with 204, and return the address of the
        target it went to.
        """
        conn = self.send(method, *headers)
        conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        return conn.transport.address  # type: ignore[union-attr,no-any-return]

    def responseHead(self) -> bytes:
        head = self.client.value().split(b"\r\n\r\n")[0]
        self.client.clear()
        return head  # type: ignore[no-any-return]


def _request(method: bytes, *headers: tuple[bytes, bytes]) -> DummyRequest:
    request = DummyRequest([b""])
    request.method = method
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
    return request


class ReadRuleTests(SynchronousTestCase):
    """
    L{isRead}: what may go to a reader.
    """

    def test_getAndHeadAreReads(self) -> None:
        """
        C{GET} and C{HEAD} are reads; other methods are not.
        """
        for method in (b"GET", b"HEAD"):
            self.assertTrue(isRead(_request(method), False), method)
        for method in (b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"):
            self.assertFalse(isRead(_request(method), False), method)

    def test_webSocketIsNotRead(self) -> None:
        """
        A WebSocket upgrade is not a read, unless WebSockets may go to
        readers.
        """
        upgrade = _request(b"GET", (b"Upgrade", b"WebSocket"), (b"Connection", b"keep-alive, Upgrade"))
        self.assertFalse(isRead(upgrade, False))
        self.assertTrue(isRead(upgrade, True))
        other = _request(b"GET", (b"Upgrade", b"h2c"), (b"Connection", b"Upgrade"))
        self.assertTrue(isRead(other, False))

    def test_writerCookie(self) -> None:
        """
        Only a C{kamal-writer} cookie holding a unix time in milliseconds
        still ahead counts.
        """
        now = NOW
        ahead = b"%d" % (now * 1000 + 1)
        for cookie, expected in [
            (b"kamal-writer=" + ahead, True),
            (b"a=1; kamal-writer=" + ahead + b"; b=2", True),
            (b"kamal-writer=%d" % (now * 1000), False),
            (b"kamal-writer=soon", False),
            (b"kamal-writers=" + ahead, False),
        ]:
            self.assertEqual(hasWriterCookie(_request(b"GET", (b"Cookie", cookie)), now), expected, cookie)
        self.assertFalse(hasWriterCookie(_request(b"GET"), now))

    def test_affinityCookie(self) -> None:
        """
        The cookie holds now plus the timeout in unix milliseconds, for the
        whole site, not for scripts, and expires a second after that.
        """
        self.assertEqual(
            affinityCookie(NOW + 0.25, 1.5),
            b"kamal-writer=1700000001750; Path=/; Expires="
            + datetimeToString(1700000002)
            + b"; HttpOnly",
        )


class ReadersTests(SynchronousTestCase):
    """
    A service with readers sends reads to them and writes to the writers.
    """

    def test_readsToReadersInTurn(self) -> None:
        """
        C{GET} and C{HEAD} go to the readers in turn; other methods to the
        writer.
        """
        proxy = _Proxy(self)
        self.assertEqual(
            [proxy.sentTo(b"GET"), proxy.sentTo(b"HEAD"), proxy.sentTo(b"GET")],
            [READER_2, READER_1, READER_2],
        )
        for method in (b"POST", b"PUT", b"DELETE"):
            self.assertEqual(proxy.sentTo(method), WRITER)

    def test_webSocketToWriter(self) -> None:
        """
        A WebSocket upgrade goes to a writer, or to a reader with
        C{read_targets_accept_websockets}.
        """
        upgrade = (b"Upgrade: websocket", b"Connection: Upgrade")
        self.assertEqual(_Proxy(self).sentTo(b"GET", *upgrade), WRITER)
        proxy = _Proxy(self, read_targets_accept_websockets=True)
        self.assertIn(proxy.sentTo(b"GET", *upgrade), (READER_1, READER_2))

    def test_noHealthyReader(self) -> None:
        """
        With no healthy reader, reads go to the writers.
        """
        proxy = _Proxy(self)
        proxy.target(READER_1)._probed(False, "down")
        self.assertEqual(proxy.sentTo(), READER_2)
        proxy.target(READER_2)._probed(False, "down")
        self.assertEqual(proxy.sentTo(), WRITER)

    def test_noHealthyWriter(self) -> None:
        """
        With no healthy writer, a write gets the 503 page while reads still
        go to the readers.
        """
        proxy = _Proxy(self)
        proxy.target(WRITER)._probed(False, "down")
        proxy.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(statusOf(proxy.client.value()), 503)
        proxy.client.clear()
        self.assertIn(proxy.sentTo(), (READER_1, READER_2))

    def test_targetHeader(self) -> None:
        """
        The target gets C{X-Kamal-Target} with its address; the client's
        own values come first when forwarded headers are trusted, and are
        dropped otherwise.
        """
        proxy = _Proxy(self, targets=(WRITER,), readers=())
        conn = proxy.send(b"GET", b"X-Kamal-Target: 10.9.9.9:80")
        self.assertIn(b"\r\nX-Kamal-Target: 10.9.9.9:80, 10.0.0.1:3000\r\n", conn.transport.value())  # type: ignore[union-attr]
        proxy = _Proxy(self, targets=(WRITER,), readers=(), targetOptions={"forward_headers": False})
        sent = proxy.send(b"GET", b"X-Kamal-Target: spoofed").transport.value()  # type: ignore[union-attr]
        self.assertIn(b"\r\nX-Kamal-Target: 10.0.0.1:3000\r\n", sent)
        self.assertNotIn(b"spoofed", sent)


class WriterAffinityTests(SynchronousTestCase):
    """
    After a write, the writer affinity cookie sends the client's reads to
    the writers for C{writer_affinity_timeout}.
    """

    def test_cookieSetAfterWrite(self) -> None:
        """
        The response to a write sets the cookie; a read's does not.
        """
        proxy = _Proxy(self, writer_affinity_timeout=2.5)
        proxy.sentTo(b"POST")
        head = proxy.responseHead()
        self.assertIn(
            b"\r\nSet-Cookie: kamal-writer=1700000002500; Path=/; Expires="
            + datetimeToString(1700000003)
            + b"; HttpOnly",
            head,
        )
        proxy.sentTo(b"GET")
        self.assertNotIn(b"kamal-writer", proxy.responseHead())

    def test_cookieHonoured(self) -> None:
        """
        A read carrying the cookie goes to the writer until its time; then
        to a reader again.
        """
        proxy = _Proxy(self)
        cookie = b"Cookie: kamal-writer=%d" % ((NOW + 1) * 1000)
        self.assertEqual(proxy.sentTo(b"GET", cookie), WRITER)
        self.assertEqual(proxy.sentTo(b"HEAD", cookie), WRITER)
        proxy.clock.advance(1)
        self.assertIn(proxy.sentTo(b"GET", cookie), (READER_1, READER_2))

    def test_appOptsOut(self) -> None:
        """
        C{X-Writer-Affinity: false} from the app suppresses the cookie; the
        header never reaches the client, on writes and reads alike.
        """
        proxy = _Proxy(self)
        for method in (b"POST", b"GET"):
            proxy.send(method).dataReceived(
                b"HTTP/1.1 200 OK\r\nX-Writer-Affinity: false\r\nContent-Length: 0\r\n\r\n"
            )
            head = proxy.responseHead()
            self.assertNotIn(b"kamal-writer", head)
            self.assertNotIn(b"writer-affinity", head.lower())
        proxy.send(b"POST").dataReceived(
            b"HTTP/1.1 200 OK\r\nX-Writer-Affinity: true\r\nContent-Length: 0\r\n\r\n"
        )
        head = proxy.responseHead()
        self.assertIn(b"Set-Cookie: kamal-writer=", head)
        self.assertNotIn(b"writer-affinity", head.lower())

    def test_noCookieWithoutReaders(self) -> None:
        """
        A service without readers, or with a writer affinity timeout of 0,
        sets no cookie.
        """
        for proxy in (_Proxy(self, readers=()), _Proxy(self, writer_affinity_timeout=0)):
            proxy.sentTo(b"POST")
            self.assertNotIn(b"kamal-writer", proxy.responseHead())


class LeastRequestsTests(SynchronousTestCase):
    """
    With C{load_balancing: least-requests}, a request goes to the healthy
    target with the fewest requests in flight.
    """

    def test_fewestInFlight(self) -> None:
        """
        Requests still in flight steer the next ones away; ties go in turn.
        """
        a, b, c = "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000"
        proxy = _Proxy(self, targets=(a, b, c), readers=(), load_balancing="least-requests")
        held = []
        for _ in range(3):
            held.append(proxy.send())
            proxy.protocol = proxyConnection(proxy.router, proxy.clock)[0]
        self.assertEqual(sorted(c.transport.address for c in held), [a, b, c])  # type: ignore[union-attr]
        held[0].dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        freed = held[0].transport.address  # type: ignore[union-attr]
        # The only one with nothing in flight now, every time.
        client, _, _ = proxyConnection(proxy.router, proxy.clock)
        for _ in range(3):
            proxy.protocol = client
            self.assertEqual(proxy.sentTo(), freed)

    def test_roundRobinIgnoresLoad(self) -> None:
        """
        Round-robin (the default) takes no notice of requests in flight.
        """
        a, b = "10.0.0.1:3000", "10.0.0.2:3000"
        proxy = _Proxy(self, targets=(a, b), readers=())
        first = proxy.send()
        proxy.protocol = proxyConnection(proxy.router, proxy.clock)[0]
        second = proxy.send()
        proxy.protocol = proxyConnection(proxy.router, proxy.clock)[0]
        third = proxy.send()
        self.assertEqual(first.transport.address, third.transport.address)  # type: ignore[union-attr]
        self.assertNotEqual(first.transport.address, second.transport.address)  # type: ignore[union-attr]
