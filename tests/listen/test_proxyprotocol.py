"""
Tests for L{kamalproxy.listen.proxyprotocol}: the allowlist, PROXY v1 and v2
headers, and a connection through the connection limit and the PROXY layer
to the proxy site, whose client address is the header's (in
C{X-Forwarded-For} and the request log) over HTTP/1.1 and h2c.
"""

from __future__ import annotations

import json
import socket
import struct
from ipaddress import ip_network
from typing import Any

import h2.config
import h2.connection
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.http.site import ProxySite
from kamalproxy.listen.connlimit import ConnectionLimitFactory, ConnectionLimiter
from kamalproxy.listen.proxyprotocol import (
    DEFAULT_ALLOWED,
    ProxyAllowlist,
    ProxyProtocol,
    parseHeader,
    parseNetworks,
)
from kamalproxy.observe.requestlog import RequestLogger
from kamalproxy.routing.router import Router
from kamalproxy.twistedcompat import PROXY_V2_SIGNATURE, InvalidProxyHeader

from .._helpers import FakeTargets

BALANCER = IPv4Address("TCP", "10.0.0.5", 50000)
CLIENT = "203.0.113.7"
V1 = b"PROXY TCP4 203.0.113.7 10.0.0.5 41000 80\r\n"
GET = b"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n"


def v2(command: int = 1, family: int = 0x11, addresses: bytes = b"", tlvs: bytes = b"") -> bytes:
    """
    A PROXY v2 header: C{command} (0 LOCAL, 1 PROXY), C{family} (its
    address family and protocol byte), packed C{addresses} and C{tlvs}.
    """
    body = addresses + tlvs
    return PROXY_V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def v2inet(source: str, destination: str, sourcePort: int, destinationPort: int, **kwargs: Any) -> bytes:
    """
    A PROXY v2 header for TCP over IPv4.
    """
    packed = socket.inet_aton(source) + socket.inet_aton(destination)
    return v2(addresses=packed + struct.pack("!HH", sourcePort, destinationPort), **kwargs)


def v2inet6(source: str, destination: str, sourcePort: int, destinationPort: int) -> bytes:
    """
    A PROXY v2 header for TCP over IPv6.
    """
    packed = socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, destination)
    return v2(family=0x21, addresses=packed + struct.pack("!HH", sourcePort, destinationPort))


class NetworksTests(SynchronousTestCase):
    """
    L{parseNetworks} and L{ProxyAllowlist}: who may send PROXY headers.
    """

    def test_parsed(self) -> None:
        """
        CIDR blocks, single addresses and comma-separated lists are read;
        host bits are dropped.
        """
        self.assertEqual(
            parseNetworks(["10.0.0.0/8", "192.0.2.1", "fd00::/8, 10.1.2.3/16"]),
            tuple(map(ip_network, ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8", "10.1.0.0/16"])),
        )

    def test_invalid(self) -> None:
        """
        Anything else is a L{ValueError} naming the value.
        """
        for bad in ("10.0.0.0/33", "example.com", "", "10.0.0.0/8,", "::1/129"):
            with self.assertRaises(ValueError) as caught:
                parseNetworks([bad])
            self.assertIn("invalid CIDR", str(caught.exception))

    def test_allows(self) -> None:
        """
        A peer is allowed when its address is in one of the networks, an
        IPv4 client of a dual-stack listener (C{::ffff:a.b.c.d}) as IPv4;
        a UNIX socket peer never is.
        """
        allowlist = ProxyAllowlist(parseNetworks(["10.0.0.0/8", "2001:db8::/32"]))
        self.assertTrue(allowlist.allows(BALANCER))
        self.assertTrue(allowlist.allows(IPv6Address("TCP", "::ffff:10.1.1.1", 1)))
        self.assertTrue(allowlist.allows(IPv6Address("TCP", "2001:db8::9", 1)))
        self.assertFalse(allowlist.allows(IPv4Address("TCP", "11.0.0.1", 1)))
        self.assertFalse(allowlist.allows(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertFalse(allowlist.allows(UNIXAddress(b"/tmp/s")))
        self.assertFalse(allowlist.allows(None))

    def test_defaultLoopbackOnly(self) -> None:
        """
        By default only loopback may send headers.
        """
        allowlist = ProxyAllowlist(parseNetworks(DEFAULT_ALLOWED))
        self.assertTrue(allowlist.allows(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertTrue(allowlist.allows(IPv4Address("TCP", "127.1.2.3", 1)))
        self.assertTrue(allowlist.allows(IPv6Address("TCP", "::1", 1)))
        self.assertTrue(allowlist.allows(IPv6Address("TCP", "::ffff:127.0.0.1", 1)))
        self.assertFalse(allowlist.allows(BALANCER))
        self.assertEqual(str(allowlist), "127.0.0.0/8 ::1/128")


class HeaderTests(SynchronousTestCase):
    """
    L{parseHeader}: the client address in a v1 or v2 header and where the
    header ends.
    """

    def test_v1(self) -> None:
        """
        A v1 header over IPv4 or IPv6 gives its source address; what
        follows it is not part of it.
        """
        self.assertEqual(parseHeader(V1 + GET), (IPv4Address("TCP", CLIENT, 41000), len(V1)))
        line = b"PROXY TCP6 2001:db8:0:0::1 2001:db8::2 41000 443\r\n"
        self.assertEqual(parseHeader(line), (IPv6Address("TCP", "2001:db8::1", 41000), len(line)))

    def test_v2(self) -> None:
        """
        A v2 header over IPv4 or IPv6 gives its source address; its TLVs
        are part of it.
        """
        header = v2inet(CLIENT, "10.0.0.5", 41000, 443, tlvs=b"\x04\x00\x01x")
        self.assertEqual(parseHeader(header + GET), (IPv4Address("TCP", CLIENT, 41000), len(header)))
        header = v2inet6("2001:db8::1", "2001:db8::2", 41000, 443)
        self.assertEqual(parseHeader(header), (IPv6Address("TCP", "2001:db8::1", 41000), len(header)))

    def test_realPeerKept(self) -> None:
        """
        v1 C{UNKNOWN} (with or without addresses), v2 C{LOCAL}, v2 with an
        unspecified family and v2 from a UNIX socket give no address: the
        connection's own peer is kept.
        """
        unix = v2(family=0x31, addresses=b"/a".ljust(108, b"\0") + b"/b".ljust(108, b"\0"))
        for header in (
            b"PROXY UNKNOWN\r\n",
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
            v2(command=0, family=0),
            v2(command=0, family=0x11, addresses=b"\0" * 12),
            v2(family=0),
            unix,
        ):
            self.assertEqual(parseHeader(header + GET), (None, len(header)), header)

    def test_incomplete(self) -> None:
        """
        Every prefix of a header is incomplete, not invalid, so a header
        may arrive a byte at a time.
        """
        for header in (V1, v2inet(CLIENT, "10.0.0.5", 1, 2)):
            for end in range(len(header)):
                self.assertIsNone(parseHeader(header[:end]), header[:end])

    def test_invalid(self) -> None:
        """
        Anything but a whole valid header is refused: HTTP, a v1 line
        without its CRLF within 107 bytes, a v1 line with bad addresses or
        ports, an unknown v2 version, command or family, v2 addresses
        shorter than the family needs.
        """
        for bad in (
            GET,
            b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
            b"PROXY TCP4 203.0.113.7 10.0.0.5 41000 80" + b" " * 70,
            b"PROXY TCP4 203.0.113.7 10.0.0.5 41000 80\n\r\n",
            b"PROXY TCP4 client 10.0.0.5 41000 80\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.5 41000 80\r\n",
            b"PROXY TCP6 203.0.113.7 2001:db8::2 41000 80\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.5 port 80\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.5 41000 70000\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.5\r\n",
            b"PROXY UDP4 203.0.113.7 10.0.0.5 41000 80\r\n",
            b"PROXY  TCP4 203.0.113.7 10.0.0.5 41000 80\r\n",
            PROXY_V2_SIGNATURE + b"\x31\x11\x00\x00",
            PROXY_V2_SIGNATURE + b"\x22\x11\x00\x00",
            v2(family=0x41),
            v2(family=0x13),
            v2(family=0x11, addresses=b"\x01\x02\x03"),
        ):
            self.assertRaises(InvalidProxyHeader, parseHeader, bad)


class _Proxy:
    """
    The proxy's listener stack in memory: the connection limit, the PROXY
    layer (allowing 10.0.0.0/8, header due within 30 s), and a
    L{ProxySite} over a L{Router} with one service on a fake target,
    logging requests.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore([{"name": "app", "targets": ["10.9.9.9:3000"], "options": {}}])
        case.addCleanup(self.router.stop)
        self.requestLines: list[dict[str, Any]] = []
        logger = Logger(observer=lambda event: self.requestLines.append(json.loads(event["kamal_json"])))
        self.site = ProxySite(self.router, self.clock, requestLog=RequestLogger(self.clock, logger), h2c=True)
        self.policy = ProxyProtocol(self.clock, ProxyAllowlist(parseNetworks(["10.0.0.0/8"])), 30.0)
        self.factory = ConnectionLimitFactory(self.policy.wrap(self.site), ConnectionLimiter(self.clock, 0))
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def connect(self, peer: Any = BALANCER) -> tuple[Any, StringTransportWithDisconnection]:
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransportWithDisconnection(peerAddress=peer)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def upstreamRequests(self) -> list[bytes]:
        return [conn.transport.value() for conn in self.targets.connections]  # type: ignore[union-attr]

    def summaries(self, fragment: str) -> list[dict[str, Any]]:
        return [e for e in self.logged if fragment in e.get("log_format", "")]


class ConnectionTests(SynchronousTestCase):
    """
    A connection through the PROXY layer to the proxy site.
    """

    def setUp(self) -> None:
        self.proxy = _Proxy(self)

    def assertForwardedFor(self, client: str) -> None:
        """
        One request went upstream with C{X-Forwarded-For: client}; once
        answered, its log line names C{client}.
        """
        [sent] = self.proxy.upstreamRequests()
        self.assertIn(b"\r\nX-Forwarded-For: " + client.encode() + b"\r\n", sent)
        self.assertIn(b"\r\nX-Forwarded-Proto: http\r\n", sent)
        self.proxy.targets.connections[0].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        [line] = self.proxy.requestLines
        self.assertEqual((line["client_addr"], line["remote_addr"], line["status"]), (client, client, 200))

    def test_v1(self) -> None:
        """
        The v1 header's source address is the client's: forwarded in
        C{X-Forwarded-For} and logged as C{client_addr} and C{remote_addr},
        with its port as C{client_port}; the listener's port is still the
        connection's own.
        """
        protocol, transport = self.proxy.connect()
        protocol.dataReceived(V1 + GET)
        self.assertForwardedFor(CLIENT)
        [line] = self.proxy.requestLines
        self.assertEqual((line["client_port"], line["port"]), (41000, transport.getHost().port))
        self.assertTrue(transport.connected)

    def test_v2ByteByByte(self) -> None:
        """
        A v2 header (and the request after it) may arrive a byte at a time.
        """
        protocol, _ = self.proxy.connect()
        for byte in v2inet6("2001:db8::7", "2001:db8::1", 41000, 80) + GET:
            protocol.dataReceived(bytes([byte]))
        self.assertForwardedFor("2001:db8::7")

    def test_h2c(self) -> None:
        """
        An HTTP/2 connection (h2c) after the header sees the header's
        source as its peer too.
        """
        protocol, transport = self.proxy.connect()
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        client.send_headers(
            1,
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"app.test"), (b":path", b"/x")],
            end_stream=True,
        )
        protocol.dataReceived(v2inet(CLIENT, "10.0.0.5", 41000, 80) + client.data_to_send())
        self.assertForwardedFor(CLIENT)
        self.assertEqual(self.proxy.requestLines[0]["proto"], "HTTP/2")

    def test_unknownKeepsPeer(self) -> None:
        """
        After C{PROXY UNKNOWN} the connection's own peer is the client.
        """
        protocol, _ = self.proxy.connect()
        protocol.dataReceived(b"PROXY UNKNOWN\r\n" + GET)
        self.assertForwardedFor(BALANCER.host)

    def test_disallowedPeerClosed(self) -> None:
        """
        A connection from a peer outside the allowlist is closed at once,
        never reaching HTTP, even with a valid header; a summary is logged
        a second later naming the last peer and the allowlist.
        """
        stranger = IPv4Address("TCP", "198.51.100.1", 1234)
        built: list[Any] = []
        self.patch(self.proxy.site, "buildProtocol", lambda addr: built.append(addr))
        for _ in range(3):
            _, transport = self.proxy.connect(stranger)
            self.assertFalse(transport.connected)
        self.assertEqual((built, self.proxy.upstreamRequests()), ([], []))
        self.assertEqual(self.proxy.summaries("--proxy-protocol-from"), [])
        self.proxy.clock.advance(1)
        [summary] = self.proxy.summaries("--proxy-protocol-from")
        self.assertEqual(
            (summary["count"], summary["peer"], summary["allowed"]), (3, "198.51.100.1:1234", "10.0.0.0/8")
        )

    def test_invalidHeaderClosed(self) -> None:
        """
        A connection that does not open with a valid header (here, plain
        HTTP) is closed; nothing reaches HTTP or the target.
        """
        protocol, transport = self.proxy.connect()
        protocol.dataReceived(GET)
        self.assertFalse(transport.connected)
        self.assertEqual((transport.value(), self.proxy.upstreamRequests()), (b"", []))
        self.proxy.clock.advance(1)
        [summary] = self.proxy.summaries("valid PROXY header")
        self.assertEqual((summary["count"], summary["peer"]), (1, "10.0.0.5:50000"))

    def test_headerTimeout(self) -> None:
        """
        A header not complete within the timeout closes the connection; a
        complete one stops the timer.
        """
        slow, slowTransport = self.proxy.connect()
        slow.dataReceived(V1[:10])
        fast, fastTransport = self.proxy.connect()
        fast.dataReceived(V1)
        self.proxy.clock.advance(29.9)
        self.assertTrue(slowTransport.connected)
        self.proxy.clock.advance(0.1)
        self.assertFalse(slowTransport.connected)
        self.assertTrue(fastTransport.connected)
        fast.dataReceived(GET)
        self.assertEqual(len(self.proxy.upstreamRequests()), 1)

    def test_closedTransport(self) -> None:
        """
        Once closed, the layer (HTTP's transport) says it is not connected,
        as the site's shutdown reads it.
        """
        protocol, transport = self.proxy.connect()
        protocol.dataReceived(V1 + GET)
        channel = protocol.wrappedProtocol._channel
        self.assertTrue(channel.transport.connected)
        transport.loseConnection()
        self.assertFalse(channel.transport.connected)

    def test_lostBeforeHeader(self) -> None:
        """
        A connection lost before its header leaves no timer (HTTP's
        included: it never started) and no registered protocol behind.
        """
        before = self.proxy.clock.getDelayedCalls()
        protocol, transport = self.proxy.connect()
        protocol.dataReceived(V1[:5])
        transport.loseConnection()
        self.assertEqual(self.proxy.clock.getDelayedCalls(), before)
        self.assertEqual(self.proxy.factory.wrappedFactory.protocols, {})

    def test_limiterCountsThem(self) -> None:
        """
        The connection limit, outermost, counts connections the PROXY layer
        then refuses, until they close.
        """
        limiter = self.proxy.factory.limiter
        _, transport = self.proxy.connect(IPv4Address("TCP", "198.51.100.1", 1))
        self.assertEqual(limiter.open, 0)
        _, transport = self.proxy.connect()
        self.assertEqual(limiter.open, 1)
        transport.loseConnection()
        self.assertEqual(limiter.open, 0)
