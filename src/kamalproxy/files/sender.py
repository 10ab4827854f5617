# -*- test-case-name: tests.files.test_sender -*-
"""
A file's bytes streamed to a consumer with flow control.

L{FileProducer} is a push producer: it reads a bounded chunk at a time
(C{os.pread}, so the file position is never shared) and writes it, as long as
the consumer has not paused it, for at most L{TURN_BUDGET} bytes per reactor
turn, so one large file never holds up the other connections. A slow client
pauses it: the proxy holds at most a chunk plus the transport's buffer of any
file, whatever its size.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from kamalproxy.http.ranges import Piece

CHUNK_SIZE = 64 * 1024
TURN_BUDGET = 16 * CHUNK_SIZE


class FileShrank(IOError):
    """
    The file ended before the bytes promised were read (it was truncated
    while being sent).
    """


class Stopped(Exception):
    """
    The consumer stopped the producer (the client went away).
    """


@implementer(IPushProducer)
class FileProducer:
    """
    Writes C{pieces} of the file open as C{fd} to C{write}, then calls
    C{done(None)}; C{done(error)} when reading fails, C{done(Stopped())}
    when the consumer stops it: C{done} is called exactly once, and the file
    descriptor is the caller's to close then.

    @ivar paused: whether the consumer has paused it.
    @ivar finished: whether it is done (all sent, failed or stopped).
    """

    def __init__(
        self,
        clock: IReactorTime,
        fd: int,
        pieces: Sequence[Piece],
        write: Callable[[bytes], object],
        done: Callable[[Optional[Exception]], object],
    ) -> None:
        self._clock = clock
        self._fd = fd
        self._pieces = list(reversed(pieces))
        self._write = write
        self._done = done
        self._call: Optional[IDelayedCall] = None
        self.paused = False
        self.finished = False

    def start(self) -> None:
        """
        Begin sending, on the next reactor turn.
        """
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not self.finished:
            self._call = self._clock.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        budget = TURN_BUDGET
        pieces = self._pieces
        while budget > 0 and not self.paused and not self.finished:
            if not pieces:
                self._finish(None)
                return
            piece = pieces.pop()
            if isinstance(piece, bytes):
                self._write(piece)
                continue
            offset, length = piece
            wanted = min(length, CHUNK_SIZE)
            try:
                data = os.pread(self._fd, wanted, offset)
            except OSError as e:
                self._finish(e)
                return
            if not data:
                self._finish(FileShrank(f"file ended at byte {offset}"))
                return
            if len(data) < length:
                pieces.append((offset + len(data), length - len(data)))
            budget -= len(data)
            self._write(data)
        if not self.paused and not self.finished:
            self._schedule()

    def _finish(self, error: Optional[Exception]) -> None:
        if not self.finished:
            self.finished = True
            self._done(error)

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._schedule()

    def stopProducing(self) -> None:
        """
        The consumer wants no more (the client went away).
        """
        self.pauseProducing()
        self._finish(Stopped())
