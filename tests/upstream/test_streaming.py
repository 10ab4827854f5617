"""
Tests for L{kamalproxy.upstream.streaming}: request bodies sent on to the target as
they arrive when request buffering is off.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.routing.router import Router
from kamalproxy.http.site import ProxySite
from kamalproxy.upstream.client import UpstreamConnection


class _Upstream:
    """
    Connections to a target, each on a L{StringTransport} the test reads.
    """

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.attempts = 0
        self.connections: list[UpstreamConnection] = []

    def connectorFor(self, host: str, port: int):  # type: ignore[no-untyped-def]
        def connect() -> Deferred:
            self.attempts += 1
            if self.refuse and self.attempts > 1:  # the first is the health check
                return fail(ConnectionRefusedError())
            conn = UpstreamConnection()
            conn.makeConnection(StringTransport())
            self.connections.append(conn)
            return succeed(conn)

        return connect


def _proxy(upstream: _Upstream, **options: object) -> tuple[object, StringTransport]:
    clock = MemoryReactorClock()
    router = Router(clock, upstream.connectorFor)
    router.restore(
        [
            {
                "name": "app",
                "targets": ["127.0.0.1:3000"],
                "options": {"target": {"buffer_requests": False, **options}},
            }
        ]
    )
    upstream.connections.clear()  # ignore the health check's connection
    site = ProxySite(router, clock)
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class StreamingTests(SynchronousTestCase):
    """
    The body reaches the target while the client is still sending it.
    """

    def test_sizedBodyStreamed(self) -> None:
        """
        With a C{Content-Length}, the head and each piece of the body are
        written upstream as they arrive, before the body is complete.
        """
        upstream = _Upstream()
        protocol, _ = _proxy(upstream)
        protocol.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        [conn] = upstream.connections
        sent = conn.transport.value()
        self.assertTrue(sent.startswith(b"POST /u HTTP/1.1\r\n"))
        self.assertIn(b"Content-Length: 10\r\n", sent)
        protocol.dataReceived(b"01234")
        self.assertTrue(conn.transport.value().endswith(b"\r\n\r\n01234"))
        protocol.dataReceived(b"56789")
        self.assertTrue(conn.transport.value().endswith(b"0123456789"))

    def test_chunkedBodyStreamed(self) -> None:
        """
        A chunked request body is re-chunked upstream piece by piece and
        ended with the last chunk when the client's body ends.
        """
        upstream = _Upstream()
        protocol, _ = _proxy(upstream)
        protocol.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        [conn] = upstream.connections
        self.assertIn(b"Transfer-Encoding: chunked\r\n", conn.transport.value())
        self.assertNotIn(b"Content-Length", conn.transport.value())
        protocol.dataReceived(b"3\r\nabc\r\n")
        self.assertTrue(conn.transport.value().endswith(b"3\r\nabc\r\n"))
        protocol.dataReceived(b"0\r\n\r\n")
        self.assertTrue(conn.transport.value().endswith(b"3\r\nabc\r\n0\r\n\r\n"))

    def test_earlyResponseHeldUntilRequestComplete(self) -> None:
        """
        A response that arrives before the request body is complete is sent
        to the client only once the request is complete.
        """
        upstream = _Upstream()
        protocol, client = _proxy(upstream)
        protocol.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        [conn] = upstream.connections
        conn.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(client.value(), b"")
        protocol.dataReceived(b"cd")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 201 Created\r\n"))
        self.assertTrue(client.value().endswith(b"\r\n\r\nok"))

    def test_refusedTargetBeforeBodyComplete(self) -> None:
        """
        A target refusing the connection while the body is still arriving
        gets the client a 502 page and a closed connection; nothing is
        forwarded.
        """
        upstream = _Upstream(refuse=True)
        protocol, client = _proxy(upstream)
        protocol.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "))
        self.assertTrue(client.disconnecting)
        protocol.dataReceived(b"cd")
        self.assertEqual(client.value().count(b"HTTP/1.1"), 1)

    def test_targetGoneMidUploadAnswered502(self) -> None:
        """
        A target that closes while the body is still being streamed to it
        (its transport stopping the client as its producer, then the
        connection lost) leaves the client a 502 page, not a bare close.
        """
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        upstream = _Upstream()
        protocol, client = _proxy(upstream)
        protocol.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
        [conn] = upstream.connections
        conn.transport.producer.stopProducing()
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(client.value().startswith(b"HTTP/1.1 502 "), client.value())
