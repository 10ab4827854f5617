"""
Test helpers shared by the unit tests.

Twisted's own test helpers (C{twisted.test.iosim},
C{twisted.web.test.requesthelper}) are private API (Twisted's
compatibility policy, "Test Changes"), so every test imports them from here:
if they move, only this module changes.

Also here: L{FakeTargets}, in-memory targets for a L{Router} whose health
checks the test controls, and L{proxyConnection}, an HTTP connection to a
L{ProxySite} over a L{StringTransport}.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.test.iosim import FakeTransport, IOPump, connect, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from kamalproxy.site import ProxySite
from kamalproxy.upstream import UpstreamConnection


def tempDir(case: SynchronousTestCase) -> str:
    """
    A new, short temporary directory removed when C{case} ends (short so a
    UNIX socket path inside it fits; outside the source tree, unlike trial's
    C{mktemp} under pytest).
    """
    path = tempfile.mkdtemp(prefix="kp-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def connectedUpstream() -> UpstreamConnection:
    """
    An L{UpstreamConnection} connected to a
    L{StringTransportWithDisconnection}: closing or aborting the transport
    calls the connection's C{connectionLost}.
    """
    conn = UpstreamConnection()
    transport = StringTransportWithDisconnection()
    transport.protocol = conn
    conn.makeConnection(transport)
    return conn


class _TargetTransport(StringTransportWithDisconnection):
    """
    The transport of a connection to a fake target: a health probe (a
    request with C{User-Agent: kamal-proxy}) is answered at once as its
    L{FakeTargets} says; any other request is left for the test to answer.
    """

    def __init__(self, targets: "FakeTargets", address: str) -> None:
        super().__init__()
        self._targets = targets
        self.address = address
        self.isProbe: Optional[bool] = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.isProbe is not None:
            return
        self.isProbe = b"\r\nUser-Agent: kamal-proxy\r\n" in self.value()
        if not self.isProbe:
            self._targets.connections.append(self.protocol)  # type: ignore[arg-type]
            return
        self._targets.probes.append(self.address)
        status = self._targets.health.get(self.address, self._targets.defaultHealth)
        if status is not None:
            self.protocol.dataReceived(
                b"HTTP/1.1 %d Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status
            )


class FakeTargets:
    """
    Targets in memory, for a L{Router}'s C{connectorFor}.

    @ivar health: the status each target (C{"host:port"}) answers its health
        probes with; L{None} never answers. Targets not in it answer
        L{defaultHealth}.
    @ivar refused: targets whose connections are refused.
    @ivar connections: every connection that carried a request other than a
        health probe, in order.
    @ivar probes: the address of every health probe sent, in order.
    @ivar attempts: how many connections were asked for.
    """

    def __init__(self, defaultHealth: Optional[int] = 200) -> None:
        self.defaultHealth = defaultHealth
        self.health: dict[str, Optional[int]] = {}
        self.refused: set[str] = set()
        self.connections: list[UpstreamConnection] = []
        self.probes: list[str] = []
        self.attempts = 0

    def connectorFor(self, host: str, port: int) -> Callable[[], Deferred]:
        address = f"{host}:{port}"

        def connect() -> Deferred:
            self.attempts += 1
            if address in self.refused:
                return fail(ConnectionRefusedError(address))
            conn = UpstreamConnection()
            transport = _TargetTransport(self, address)
            transport.protocol = conn
            conn.makeConnection(transport)
            return succeed(conn)

        return connect


def proxyConnection(
    resource: Any, clock: IReactorTime, **kwargs: Any
) -> tuple[Any, StringTransport, ProxySite]:
    """
    A client connection to a L{ProxySite} for C{resource}: write request
    bytes with the protocol's C{dataReceived}, read the response from the
    transport.
    """
    site = ProxySite(resource, clock, **kwargs)
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, site


def statusOf(response: bytes) -> int:
    """
    The status code of the first HTTP response in C{response}.
    """
    return int(response.split(b" ", 2)[1])


__all__ = [
    "DummyChannel",
    "DummyRequest",
    "FakeTargets",
    "FakeTransport",
    "IOPump",
    "connect",
    "connectedServerAndClient",
    "connectedUpstream",
    "proxyConnection",
    "statusOf",
    "tempDir",
]


def healthyGroup(clock: Any, options: Any) -> Any:
    """
    A L{kamalproxy.targets.TargetGroup} of one healthy target that is never
    connected to (for tests whose last pipeline stage answers itself).
    """
    from kamalproxy.targets import Target, TargetGroup

    target = Target(clock, "10.0.0.1:3000", options, lambda host, port: lambda: None)  # type: ignore[arg-type,return-value]
    target.markHealthy()
    return TargetGroup([target])
