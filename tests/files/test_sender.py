"""
Tests for L{kamalproxy.files.sender}: the file streamed in bounded chunks,
paused and resumed by its consumer.
"""

from __future__ import annotations

import os
from typing import Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.files.sender import CHUNK_SIZE, TURN_BUDGET, FileProducer, FileShrank, Stopped


class FileProducerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = os.urandom(3 * TURN_BUDGET + 123)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(self.data)
        self.fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, self.fd)
        self.clock = Clock()
        self.written: list[bytes] = []
        self.outcome: list[Optional[Exception]] = []

    def turn(self) -> None:
        """
        One reactor turn: run the calls scheduled so far, not those they
        schedule (L{Clock.advance} would run those too).
        """
        for call in list(self.clock.calls):
            self.clock.calls.remove(call)
            call.func(*call.args, **call.kw)

    def producer(self, pieces: list, write=None) -> FileProducer:  # type: ignore[type-arg, no-untyped-def]
        return FileProducer(self.clock, self.fd, pieces, write or self.written.append, self.outcome.append)

    def test_wholeFileInBoundedChunksAndTurns(self) -> None:
        producer = self.producer([(0, len(self.data))])
        producer.start()
        self.assertEqual(self.written, [])  # nothing before the reactor turns
        turns = 0
        while not self.outcome:
            self.turn()
            turns += 1
        self.assertEqual(turns, 4)
        self.assertEqual(b"".join(self.written), self.data)
        self.assertTrue(all(len(chunk) <= CHUNK_SIZE for chunk in self.written))
        self.assertEqual(self.outcome, [None])

    def test_piecesAndLiterals(self) -> None:
        producer = self.producer([b"<", (10, 5), b"|", (100, 3), b">"])
        producer.start()
        self.clock.advance(0)
        self.assertEqual(b"".join(self.written), b"<" + self.data[10:15] + b"|" + self.data[100:103] + b">")
        self.assertEqual(self.outcome, [None])

    def test_pausedConsumerGetsNothingMore(self) -> None:
        """
        A consumer that pauses the producer from its C{write} (as a full
        transport does) gets no more bytes until it resumes it.
        """
        producer: FileProducer

        def write(data: bytes) -> None:
            self.written.append(data)
            producer.pauseProducing()

        producer = self.producer([(0, len(self.data))], write)
        producer.start()
        self.clock.advance(0)
        self.assertEqual(len(self.written), 1)
        for _ in range(5):
            self.clock.advance(0)
        self.assertEqual(len(self.written), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        producer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(len(self.written), 2)
        self.assertEqual(b"".join(self.written), self.data[: 2 * CHUNK_SIZE])

    def test_stopped(self) -> None:
        producer = self.producer([(0, len(self.data))])
        producer.start()
        self.turn()
        sent = len(self.written)
        self.assertEqual(sent, TURN_BUDGET // CHUNK_SIZE)
        producer.stopProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsInstance(self.outcome[0], Stopped)
        producer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(len(self.written), sent)
        self.assertEqual(len(self.outcome), 1)

    def test_fileShrank(self) -> None:
        producer = self.producer([(len(self.data) - 10, 20)])
        producer.start()
        self.clock.advance(0)
        self.assertEqual(b"".join(self.written), self.data[-10:])
        self.assertIsInstance(self.outcome[0], FileShrank)
