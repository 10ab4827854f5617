"""
Test helpers shared by the unit tests.

Twisted's own test helpers (C{twisted.test.iosim},
C{twisted.web.test.requesthelper}) are private API (Twisted's
compatibility policy, "Test Changes"), so every test imports them from here:
if they move, only this module changes.

Also here: L{FakeTargets} (the public L{kamalproxy.testing.MemoryTargets}),
in-memory targets for a L{Router} whose health checks the test controls,
and L{proxyConnection}, an HTTP connection to a L{ProxySite} over a
L{StringTransport}.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.test.iosim import FakeTransport, IOPump, connect, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from kamalproxy.http.site import ProxySite
from kamalproxy.testing import MemoryTargets as FakeTargets
from kamalproxy.upstream.client import UpstreamConnection


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
    A L{kamalproxy.upstream.targets.TargetGroup} of one healthy target that is never
    connected to (for tests whose last pipeline stage answers itself).
    """
    from kamalproxy.upstream.targets import Target, TargetGroup

    target = Target(clock, "10.0.0.1:3000", options, lambda host, port: lambda: None)  # type: ignore[arg-type,return-value]
    target.markHealthy()
    return TargetGroup([target])
