# -*- test-case-name: tests.http.test_tunnel -*-
"""
Upgraded connections (WebSockets): once the target answers an upgrade
request with C{101 Switching Protocols}, the client's connection and the
target's carry opaque bytes both ways until either side closes.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["Tunnel"]


def _unregisterProducer(transport: Any) -> None:
    """
    Unregister C{transport}'s producer, if it has one (TCP transports keep
    it as C{producer}, TLS ones as C{_producer}).
    """
    if getattr(transport, "producer", None) is not None or getattr(transport, "_producer", None) is not None:
        transport.unregisterProducer()


class Tunnel:
    """
    Relays bytes between a client transport and a target transport, each
    the other's push producer (a side that cannot keep up stops the other
    side's reads), and closes one side when the other closes.

    @ivar open: whether bytes are still relayed.
    """

    def __init__(self, client: Any, target: Any, closed: Callable[[], None]) -> None:
        """
        @param closed: called once, when the tunnel ends for any reason.
        """
        self.client = client
        self.target = target
        self.open = True
        self._closed = closed
        _unregisterProducer(client)  # the HTTP channel's own registration
        _unregisterProducer(target)
        client.registerProducer(target, True)
        target.registerProducer(client, True)
        client.resumeProducing()  # the HTTP channel may have paused reading

    def fromClient(self, data: bytes) -> None:
        """
        Bytes the client sent.
        """
        if self.open:
            self.target.write(data)

    def fromTarget(self, data: bytes) -> None:
        """
        Bytes the target sent.
        """
        if self.open:
            self.client.write(data)

    def clientLost(self) -> None:
        """
        The client's connection closed: close the target's after what was
        already written to it.
        """
        self._end(lambda: self.target.loseConnection())

    def targetLost(self) -> None:
        """
        The target's connection closed: close the client's after what was
        already written to it.
        """
        self._end(lambda: self.client.loseConnection())

    def abort(self) -> None:
        """
        Drop both connections at once (a drain deadline, a shutdown).
        """

        def both() -> None:
            self.client.abortConnection()
            self.target.abortConnection()

        self._end(both)

    def _end(self, close: Callable[[], None]) -> None:
        if not self.open:
            return
        self.open = False
        _unregisterProducer(self.client)
        _unregisterProducer(self.target)
        close()
        self._closed()
