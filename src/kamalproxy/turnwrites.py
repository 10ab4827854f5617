# -*- test-case-name: tests.test_turnwrites -*-
"""
Sending what a TCP connection was given once per reactor turn, without
asking the reactor to watch the socket for writability.

Twisted's TCP transport buffers each C{write} and asks the reactor to watch
the socket for writability (C{epoll_ctl}); the reactor sends the buffer in
its next iteration and stops watching (C{epoll_ctl} again). A proxied
request makes that round trip twice (the request to the target, the
response to the client): four system calls that were about 9 % of the
proxy's CPU per request under load.

L{sendOncePerTurn} changes that for one connection: its writes are still
buffered by the transport, but at the end of the current reactor turn
(after every event of this poll has been handled, so a response head and
its body written separately still go out together) the transport is asked
to send its buffer at once, as the reactor would have, and only what the
socket does not take makes the transport watch it for writability, as
before. A connection that is closing, or whose send fails, takes the
transport's own path, so closes and errors are handled by Twisted as
usual.
"""

from __future__ import annotations

from typing import Any, Callable, Optional
from weakref import WeakKeyDictionary

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from kamalproxy.twistedcompat import keepsWriteBuffer, writeBuffered, writeClosing

_log = Logger()

_TRANSPORTS = (tcp.Server, tcp.Client)


class _Queued:
    """
    One connection's state here: whether it waits for the end of the turn.
    """

    __slots__ = ("transport", "startWriting", "queued")

    def __init__(self, transport: Any, startWriting: Callable[[], None]) -> None:
        self.transport = transport
        self.startWriting = startWriting
        self.queued = False


class TurnWriter:
    """
    Sends the buffers of the connections written to during a reactor turn,
    once, at its end (see the module docstring).
    """

    def __init__(self, reactor: Any, transportTypes: tuple[type, ...] = _TRANSPORTS) -> None:
        """
        @param reactor: the turns are this reactor's.
        @param transportTypes: the transport classes to adopt (exactly
            these, not subclasses: Twisted's own TCP transports).
        """
        self._reactor = reactor
        self._types = transportTypes
        self._pending: list[_Queued] = []
        self._call: Optional[IDelayedCall] = None

    def adopt(self, transport: Any) -> bool:
        """
        Send C{transport}'s writes at the end of each turn.

        @return: whether it is sent this way (only Twisted's own TCP
            transports are).
        """
        if (
            type(transport) not in self._types
            or getattr(transport, "TLS", False)
            or not keepsWriteBuffer(transport)
        ):
            return False
        entry = _Queued(transport, transport.startWriting)

        def startWriting() -> None:
            if not entry.queued:
                entry.queued = True
                self._pending.append(entry)
                if self._call is None:
                    self._call = self._reactor.callLater(0, self.flush)

        transport.startWriting = startWriting
        return True

    def flush(self) -> None:
        """
        Send what the connections written to since the last flush hold.
        """
        self._call = None
        pending, self._pending = self._pending, []
        for entry in pending:
            entry.queued = False
            transport = entry.transport
            if not transport.connected:
                continue  # closed meanwhile: nothing to send
            if writeClosing(transport) or getattr(transport, "TLS", False):
                entry.startWriting()  # closing: as Twisted does it
                continue
            if not _sendNow(transport) and not entry.queued:
                entry.startWriting()  # the rest when the socket takes it


def _sendNow(transport: Any) -> bool:
    """
    Ask C{transport} to send its buffer, as the reactor would when the
    socket is writable.

    @return: whether everything was sent.
    """
    try:
        why = transport.doWrite()
    except Exception:
        _log.failure("Sending on {transport}", transport=transport)
        return False
    return why is None and not writeBuffered(transport)


_writers: "WeakKeyDictionary[Any, TurnWriter]" = WeakKeyDictionary()


def sendOncePerTurn(transport: Any) -> bool:
    """
    Send C{transport}'s writes once per turn of its reactor, without
    watching for writability when the socket takes them at once.

    @return: whether it is sent this way (only Twisted's own TCP transports
        are; others are left as they are).
    """
    reactor = getattr(transport, "reactor", None)
    if reactor is None:
        return False
    writer = _writers.get(reactor)
    if writer is None:
        writer = _writers[reactor] = TurnWriter(reactor)
    return writer.adopt(transport)


__all__ = ["TurnWriter", "sendOncePerTurn"]
