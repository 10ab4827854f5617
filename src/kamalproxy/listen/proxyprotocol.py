# -*- test-case-name: tests.listen.test_proxyprotocol -*-
"""
C{--proxy-protocol}: HAProxy's PROXY protocol (versions 1 and 2) on the HTTP
and HTTPS listeners, so that behind a load balancer the client's address is
the one the balancer saw, not the balancer's.

Each connection must open with a PROXY header, and only peers in the
allowlist (C{--proxy-protocol-from}, loopback by default) may send one:

  - a connection from any other address is closed at once, before anything
    is read from it (so nobody else can claim a client address);
  - a connection whose first bytes are not a valid v1 or v2 header, or
    whose header has not arrived within the timeout, is closed;
  - after the header, the connection is handed to what the listener serves
    (TLS, then HTTP), whose C{getPeer} is the header's source address: the
    client address of C{X-Forwarded-For}, of the request log's
    C{client_addr}/C{remote_addr}, for HTTP/1.1 and HTTP/2 alike;
  - a v1 C{PROXY UNKNOWN}, a v2 C{LOCAL} command (the balancer's own health
    check), an unspecified family and a UNIX-socket source keep the
    connection's own peer address, as the protocol's specification says;
  - the header's destination address is checked but not used: the local
    address stays the listener's (the request log's C{port}).

Refusals are logged as one summary line a second at most.

Whole headers are parsed by Twisted's parsers
(L{kamalproxy.twistedcompat.parseProxyV1}, C{parseProxyV2}); framing, the
allowlist, address checks and the timeout are here, since Twisted's
C{HAProxyProtocolWrapper} has none of them and closes a header that arrives
in reads shorter than 8 (v1) or 16 (v2) bytes.
"""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any, Iterable, Optional, Union

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from kamalproxy.listen.refusals import RefusalReport
from kamalproxy.twistedcompat import (
    PROXY_V2_SIGNATURE,
    InvalidProxyHeader,
    parseProxyV1,
    parseProxyV2,
)

Network = Union[IPv4Network, IPv6Network]

DEFAULT_ALLOWED = ("127.0.0.0/8", "::1/128")
"""Who may send PROXY headers unless C{--proxy-protocol-from} says."""

V1_SIGNATURE = b"PROXY "
V1_MAX_LINE = 107
"""The longest v1 header, its CRLF included (the specification's limit)."""

V2_FIXED = 16
"""Bytes of a v2 header before its addresses: signature, command, family, length."""

_V1_UNKNOWN = b"PROXY UNKNOWN"
_V1_LINE = re.compile(rb"PROXY TCP[46] [0-9A-Fa-f.:]+ [0-9A-Fa-f.:]+ [0-9]{1,5} [0-9]{1,5}\Z")
"""A v1 line as the specification spells it (single spaces, decimal ports)."""


def parseNetworks(values: Iterable[str]) -> tuple[Network, ...]:
    """
    The networks in C{values}: CIDR blocks (C{10.0.0.0/8}, C{fd00::/8}) or
    single addresses, several to a value when separated by commas; host
    bits are allowed (C{10.1.2.3/8} is C{10.0.0.0/8}).

    @raise ValueError: a value is none of these; the message names it.
    """
    networks = []
    for value in values:
        for item in value.split(","):
            text = item.strip()
            try:
                networks.append(ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"invalid CIDR: {text!r}") from None
    return tuple(networks)


def _ip(host: str) -> Any:
    """
    The address C{host} names, an IPv4-mapped IPv6 address (an IPv4 client
    of a dual-stack listener) as IPv4; L{None} if it names none.
    """
    try:
        address = ip_address(host)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


class ProxyAllowlist:
    """
    The peers allowed to send PROXY headers.

    @ivar networks: the allowed networks.
    """

    KNOWN = 1024
    """Answers remembered (a few balancers connect again and again)."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._known: dict[str, bool] = {}

    def allows(self, addr: Optional[IAddress]) -> bool:
        """
        Whether C{addr} (a connection's peer) is in one of the networks;
        never for an address that is not an IP address.
        """
        host = getattr(addr, "host", None)
        if not isinstance(host, str):
            return False
        allowed = self._known.get(host)
        if allowed is None:
            address = _ip(host)
            allowed = address is not None and any(address in network for network in self.networks)
            if len(self._known) >= self.KNOWN:
                self._known.clear()
            self._known[host] = allowed
        return allowed

    def __str__(self) -> str:
        return " ".join(map(str, self.networks))


def _checked(addr: Any) -> IAddress:
    """
    C{addr} from a header, refused unless it is an address of its family
    with a port, and written as Python writes it (IPv6 compressed).
    """
    family = socket.AF_INET if isinstance(addr, IPv4Address) else socket.AF_INET6
    try:
        packed = socket.inet_pton(family, addr.host)
    except (OSError, ValueError):
        raise InvalidProxyHeader() from None
    if not 0 <= addr.port <= 0xFFFF:
        raise InvalidProxyHeader()
    return type(addr)("TCP", socket.inet_ntop(family, packed), addr.port)  # type: ignore[no-any-return]


def _clientAddress(info: Any) -> Optional[IAddress]:
    """
    The client address a parsed header gives, or L{None} to keep the
    connection's own (C{UNKNOWN}, C{LOCAL}, an unspecified family, a UNIX
    socket).
    """
    source = info.source
    if not isinstance(source, (IPv4Address, IPv6Address)):
        return None
    _checked(info.destination)
    return _checked(source)


def parseHeader(data: bytes) -> Optional[tuple[Optional[IAddress], int]]:
    """
    The PROXY header at the start of C{data}: C{(client address or None,
    header length)}, or L{None} while it is incomplete.

    @raise InvalidProxyHeader: C{data} does not start with a valid header.
    """
    if data.startswith(PROXY_V2_SIGNATURE):
        if len(data) < V2_FIXED:
            return None
        size = V2_FIXED + int.from_bytes(data[14:16], "big")
        if len(data) < size:
            return None
        return _clientAddress(parseProxyV2(data[:size])), size
    if data.startswith(V1_SIGNATURE):
        end = data.find(b"\r\n", 0, V1_MAX_LINE)
        if end < 0:
            if len(data) >= V1_MAX_LINE:
                raise InvalidProxyHeader()
            return None
        line = data[:end]
        if line == _V1_UNKNOWN or line.startswith(_V1_UNKNOWN + b" "):
            return None, end + 2  # Twisted's parser needs text after UNKNOWN
        if not _V1_LINE.match(line):
            raise InvalidProxyHeader()
        return _clientAddress(parseProxyV1(line)), end + 2
    if PROXY_V2_SIGNATURE.startswith(data) or V1_SIGNATURE.startswith(data):
        return None
    raise InvalidProxyHeader()


class ProxyHeaderProtocol(ProtocolWrapper):
    """
    One connection: its PROXY header is read before the wrapped protocol
    (TLS or HTTP) is connected, which then sees the header's source as
    the peer.
    """

    factory: "ProxyProtocolFactory"

    def __init__(self, factory: "ProxyProtocolFactory", wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self._header: Optional[bytes] = b""  # None once read
        self._client: Optional[IAddress] = None
        self._timer: Optional[IDelayedCall] = None

    def makeConnection(self, transport: Any) -> None:
        # ProtocolWrapper's, but the wrapped protocol is connected only
        # once the header is read.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        policy = self.factory.policy
        if policy.timeout:
            self._timer = policy.clock.callLater(policy.timeout, self._refuse)

    def dataReceived(self, data: bytes) -> None:
        if self._header is None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.disconnecting:
            return
        data = self._header + data
        try:
            parsed = parseHeader(data)
        except InvalidProxyHeader:
            self._refuse()
            return
        if parsed is None:
            self._header = data
            return
        self._client, size = parsed
        self._header = None
        self._cancelTimer()
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]
        if len(data) > size:
            self.wrappedProtocol.dataReceived(data[size:])

    def getPeer(self) -> IAddress:
        """
        The client's address as the header gives it, else the connection's.
        """
        return self._client or self.transport.getPeer()  # type: ignore[union-attr]

    def _refuse(self) -> None:
        """
        No valid header (or none in time): close the connection.
        """
        self.factory.policy.invalid.refuse(self.transport.getPeer())  # type: ignore[union-attr]
        self._cancelTimer()
        self.loseConnection()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False  # as a real transport says once closed (read at shutdown)
        self._cancelTimer()
        if self._header is None:
            super().connectionLost(reason)
            return
        self.factory.unregisterProtocol(self)  # the wrapped protocol never started


class _Refused(Protocol):
    """
    A connection from a peer not allowed to send PROXY headers: closed
    before anything is read.
    """

    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class ProxyProtocol:
    """
    The PROXY protocol policy shared by a daemon's listeners: who may send
    headers, how long one may take, and the refusals' log summaries.

    @ivar allowlist: the L{ProxyAllowlist}.
    @ivar timeout: seconds from a connection's start to the end of its
        header (0: no limit).
    """

    def __init__(self, clock: IReactorTime, allowlist: ProxyAllowlist, timeout: float) -> None:
        self.clock = clock
        self.allowlist = allowlist
        self.timeout = timeout
        self.disallowed = RefusalReport(
            clock,
            "Refused {count} connections from addresses not in --proxy-protocol-from"
            " {allowed} (last from {peer})",
            allowed=str(allowlist),
        )
        self.invalid = RefusalReport(
            clock,
            "Closed {count} connections without a valid PROXY header within {timeout}s"
            " (last from {peer})",
            timeout=f"{timeout:g}",
        )

    def wrap(self, factory: Any) -> "ProxyProtocolFactory":
        """
        C{factory} behind this policy's PROXY protocol layer.
        """
        return ProxyProtocolFactory(factory, self)


class ProxyProtocolFactory(WrappingFactory[ProxyHeaderProtocol]):
    """
    Wraps a listener's factory (inside the connection limit): connections
    from peers the policy's allowlist does not allow are closed at once;
    the others must open with a PROXY header.
    """

    protocol = ProxyHeaderProtocol
    noisy = False

    def __init__(self, wrappedFactory: Any, policy: ProxyProtocol) -> None:
        super().__init__(wrappedFactory)
        self.policy = policy

    def buildProtocol(self, addr: Any) -> Any:
        if not self.policy.allowlist.allows(addr):
            self.policy.disallowed.refuse(addr)
            return _Refused()
        return super().buildProtocol(addr)


__all__ = [
    "DEFAULT_ALLOWED",
    "ProxyAllowlist",
    "ProxyHeaderProtocol",
    "ProxyProtocol",
    "ProxyProtocolFactory",
    "parseHeader",
    "parseNetworks",
]
