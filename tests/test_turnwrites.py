"""
Tests for L{kamalproxy.turnwrites}: a connection's writes are sent once per
reactor turn without watching the socket for writability when the socket
takes them, and as Twisted does otherwise.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kamalproxy.turnwrites import TurnWriter, sendOncePerTurn


class _Socket(FileDescriptor):
    """
    A transport whose socket takes C{room} bytes per send (all of them
    when L{None}), or fails with C{error}.
    """

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.sent: list[bytes] = []
        self.sends = 0
        self.room: Any = None
        self.error: Any = None

    def fileno(self) -> int:
        return 7

    def writeSomeData(self, data: bytes) -> Any:
        self.sends += 1
        if self.error is not None:
            return self.error
        taken = bytes(data if self.room is None else data[: self.room])
        self.sent.append(taken)
        return len(taken)


class TurnWriterTests(SynchronousTestCase):
    """
    L{TurnWriter} over a memory reactor.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.writer = TurnWriter(self.reactor, (_Socket,))
        self.socket = _Socket(self.reactor)
        self.assertTrue(self.writer.adopt(self.socket))

    def test_onceAtTheEndOfTheTurn(self) -> None:
        """
        Writes made during a turn are sent together in one send when the
        turn ends, and the reactor is never asked to watch the socket.
        """
        self.socket.write(b"HTTP/1.1 200 OK\r\n\r\n")
        self.socket.writeSequence([b"body", b"!"])
        self.assertEqual((self.socket.sent, self.reactor.getWriters()), ([], []))
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, [b"HTTP/1.1 200 OK\r\n\r\nbody!"])
        self.assertEqual(self.socket.sends, 1)
        self.assertEqual(self.reactor.getWriters(), [])
        self.socket.write(b"more")
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent[-1], b"more")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_restWhenWritable(self) -> None:
        """
        What the socket does not take waits for the reactor to say the
        socket is writable, as Twisted does it.
        """
        self.socket.room = 3
        self.socket.write(b"abcdef")
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, [b"abc"])
        self.assertEqual(self.reactor.getWriters(), [self.socket])
        self.socket.room = None
        self.socket.doWrite()
        self.assertEqual(self.socket.sent, [b"abc", b"def"])
        self.assertEqual(self.reactor.getWriters(), [])

    def test_sendFailure(self) -> None:
        """
        A failed send leaves the data to the reactor, which then finds the
        connection lost as it would have.
        """
        self.socket.error = ConnectionLost()
        self.socket.write(b"abc")
        self.reactor.advance(0)
        self.assertEqual(self.reactor.getWriters(), [self.socket])

    def test_closingIsTwistedsPath(self) -> None:
        """
        A connection closing after its writes is closed by the reactor, as
        usual, once they are sent.
        """
        self.socket.write(b"abc")
        self.socket.loseConnection()
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, [])
        self.assertEqual(self.reactor.getWriters(), [self.socket])

    def test_closedMeanwhile(self) -> None:
        """
        A connection gone before the end of the turn is not written to.
        """
        self.socket.write(b"abc")
        self.socket.connected = 0
        self.reactor.advance(0)
        self.assertEqual((self.socket.sends, self.reactor.getWriters()), (0, []))

    def test_otherTransportsLeftAlone(self) -> None:
        """
        Only the given transport classes are adopted (by default Twisted's
        TCP transports): a subclass, a TLS or a memory transport is not.
        """

        class Sub(_Socket):
            pass

        self.assertFalse(self.writer.adopt(Sub(self.reactor)))
        self.assertFalse(sendOncePerTurn(object()))


class _Collect(Protocol):
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = b""
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(self.received)


class _Answer(Protocol):
    """
    Writes its answer in two pieces as soon as connected, adopted by
    L{sendOncePerTurn}.
    """

    adopted: list[bool] = []

    def connectionMade(self) -> None:
        self.adopted.append(sendOncePerTurn(self.transport))
        self.transport.write(b"head|")  # type: ignore[union-attr]
        self.transport.write(b"body" * 1000)  # type: ignore[union-attr]


class RealSocketTests(TestCase):
    """
    Over a real TCP connection on the global reactor.
    """

    async def test_delivered(self) -> None:
        """
        The server's writes reach the client, the socket's writability is
        not watched once they are sent, and a closed connection is closed.
        """
        factory = Factory.forProtocol(_Answer)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = _Collect(5 + 4000)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        received = await client.done
        self.assertEqual(received, b"head|" + b"body" * 1000)
        self.assertEqual(_Answer.adopted[-1:], [True])
        writers = [w for w in reactor.getWriters() if getattr(w, "protocol", None).__class__ is _Answer]
        self.assertEqual(writers, [])
        lost: Deferred = Deferred()
        client.connectionLost = lambda reason: lost.callback(None)  # type: ignore[method-assign]
        client.transport.loseConnection()  # type: ignore[union-attr]
        await lost
