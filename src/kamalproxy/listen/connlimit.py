# -*- test-case-name: tests.http.test_channel -*-
"""
C{--max-connections}: the outermost factory of every listener counts the
connections open across all of them and closes new ones beyond the limit at
once, before TLS or HTTP sees them. Whatever it wraps (the site, TLS around
the site, the PROXY protocol layer) needs no special case.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from kamalproxy.listen.refusals import RefusalReport
from kamalproxy.turnwrites import sendOncePerTurn


class ConnectionLimiter:
    """
    Counts open connections and refuses new ones beyond C{maximum} (0: no
    limit), logging refusals at most once a second.
    """

    def __init__(self, clock: IReactorTime, maximum: int) -> None:
        self.clock = clock
        self.maximum = maximum
        self.open = 0
        self.report = RefusalReport(
            clock,
            "Refused {count} connections over the limit of {maximum} (last from {peer})",
            maximum=maximum,
        )

    def admit(self, addr: Optional[IAddress]) -> bool:
        """
        Whether a new connection from C{addr} may be served.
        """
        if not self.maximum or self.open < self.maximum:
            return True
        self.report.refuse(addr)
        return False

    @property
    def refused(self) -> int:
        """
        Connections refused over the limit since the start.
        """
        return self.report.refused

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1


class _CountedConnection(ProtocolWrapper):
    """
    A connection counted in its factory's limiter while it is open: the
    wrapper for a protocol that cannot be counted in place (see
    L{_countInPlace}).
    """

    def makeConnection(self, transport: Any) -> None:
        self.factory.limiter.opened()
        sendOncePerTurn(transport)
        super().makeConnection(transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False  # as a real transport says once it is closed
        self.factory.limiter.closed()
        super().connectionLost(reason)


def _countInPlace(protocol: Any, limiter: ConnectionLimiter) -> bool:
    """
    Count C{protocol}'s connection in C{limiter} while it is open, by
    hooking its own C{makeConnection} and C{connectionLost}: no wrapper
    sits between the port's transport and the protocol on every read and
    write (that hop showed in profiles).

    @return: whether it could be hooked (not when it has no C{__dict__},
        nor when its class's descriptors take precedence over it).
    """
    makeConnection = protocol.makeConnection
    connectionLost = protocol.connectionLost

    def countedMakeConnection(transport: Any) -> None:
        limiter.opened()
        sendOncePerTurn(transport)
        makeConnection(transport)

    def countedConnectionLost(reason: Failure = connectionDone) -> None:
        limiter.closed()
        connectionLost(reason)

    fields = getattr(protocol, "__dict__", None)
    if fields is None:
        return False
    fields["makeConnection"] = countedMakeConnection
    fields["connectionLost"] = countedConnectionLost
    if protocol.makeConnection is countedMakeConnection and protocol.connectionLost is countedConnectionLost:
        return True
    # A data descriptor on the class (proxyForInterface's, as on Twisted's
    # own HTTP channel protocol) wins over the instance: wrap it instead.
    del fields["makeConnection"], fields["connectionLost"]
    return False


class ConnectionLimitFactory(WrappingFactory[_CountedConnection]):
    """
    Wraps a listener's factory: connections beyond C{limiter}'s maximum
    get no protocol (the port closes them at once); the others are counted
    until they close. The wrapped factory's protocol is given to the port
    as it is, counted in place (L{_countInPlace}).
    """

    protocol = _CountedConnection
    noisy = False

    def __init__(self, wrappedFactory: Any, limiter: ConnectionLimiter) -> None:
        super().__init__(wrappedFactory)
        self.limiter = limiter

    def buildProtocol(self, addr: Any) -> Any:
        if not self.limiter.admit(addr):
            return None
        protocol = self.wrappedFactory.buildProtocol(addr)
        if protocol is None or _countInPlace(protocol, self.limiter):
            return protocol
        return self.protocol(self, protocol)


__all__ = ["ConnectionLimitFactory", "ConnectionLimiter"]
