# -*- test-case-name: tests.test_testing -*-
"""
Fakes for testing an application that embeds kamal-proxy, without sockets
or real time (as C{treq.testing} ships its own): targets in memory, an
observer that records requests, and a certificate store in memory.

    from kamalproxy.routing.router import Router
    from kamalproxy.testing import MemoryTargets

    targets = MemoryTargets()
    router = Router(MemoryReactorClock(), targets.connectorFor)
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import StringTransportWithDisconnection
from zope.interface import implementer

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.interfaces import IRequestObserver
from kamalproxy.tls.store import MemoryStore as MemoryCertificateStore
from kamalproxy.upstream.client import UpstreamConnection


class _TargetTransport(StringTransportWithDisconnection):
    """
    The transport of a connection to a fake target: a health probe (a
    request with C{User-Agent: kamal-proxy}) is answered at once as its
    L{MemoryTargets} says; any other request is left for the test to answer.
    """

    def __init__(self, targets: "MemoryTargets", address: str) -> None:
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


class MemoryTargets:
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



@implementer(IRequestObserver)
class RecordingObserver:
    """
    An L{IRequestObserver} that keeps the exchanges it is told about.

    @ivar started: exchanges whose request started, in order.
    @ivar ended: exchanges that ended, in order.
    """

    def __init__(self) -> None:
        self.started: list[Exchange] = []
        self.ended: list[Exchange] = []

    def requestStarted(self, exchange: Exchange) -> None:
        self.started.append(exchange)

    def requestEnded(self, exchange: Exchange) -> None:
        self.ended.append(exchange)


__all__ = ["MemoryCertificateStore", "MemoryTargets", "RecordingObserver"]
