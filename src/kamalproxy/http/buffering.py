# -*- test-case-name: tests.http.test_buffering -*-
"""
Bodies held by the proxy: in memory up to a limit, then in a temporary file
that is gone as soon as it is closed (it has no name on disk).
"""

from __future__ import annotations

import tempfile
from io import BytesIO
from typing import IO, Optional

SPILL_PREFIX = "kamal-proxy-buffer-"


class BodyTooLarge(Exception):
    """
    A body crossed its maximum size.
    """


def bodyFile(length: Optional[int], memoryLimit: int) -> IO[bytes]:
    """
    Where to keep a request body of C{length} bytes (L{None}: unknown):
    memory when it fits in C{memoryLimit}, else memory that spills to a
    temporary file once it grows past C{memoryLimit}.
    """
    if length is not None and length <= memoryLimit:
        return BytesIO()
    return tempfile.SpooledTemporaryFile(max_size=memoryLimit, prefix=SPILL_PREFIX)


class BodyBuffer:
    """
    Collects a body up to C{maximum} bytes (0: no maximum), in memory up to
    C{memoryLimit}, on disk beyond.
    """

    def __init__(self, memoryLimit: int, maximum: int = 0) -> None:
        self.file: IO[bytes] = bodyFile(None, memoryLimit)
        self.size = 0
        self._maximum = maximum

    def write(self, data: bytes) -> None:
        """
        Add C{data}.

        @raise BodyTooLarge: the body is now over its maximum; nothing more
            is kept.
        """
        self.size += len(data)
        if self._maximum and self.size > self._maximum:
            raise BodyTooLarge(self.size)
        self.file.write(data)

    @property
    def inMemory(self) -> bool:
        """
        Whether the body is still held in memory only.
        """
        return not getattr(self.file, "_rolled", True) or isinstance(self.file, BytesIO)

    def getvalue(self) -> bytes:
        """
        The whole body (for bodies L{inMemory}).
        """
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        """
        Free the memory or the temporary file.
        """
        self.file.close()
