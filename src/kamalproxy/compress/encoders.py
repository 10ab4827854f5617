# -*- test-case-name: tests.compress.test_encoders -*-
"""
The encoders: gzip (the standard library's zlib), zstd (C{zstandard}) and
brotli (C{brotli}), each fed a body piece by piece.

An encoder's L{Encoder.compress} returns what it has to send so far (often
nothing: the compressors keep up to a block of input); L{Encoder.flush}
returns everything the input so far decodes to, so a streamed response
reaches the client as the app sends it; L{Encoder.finish} ends the stream.

BREACH jitter (as Thruster, through klauspost's gzhttp): with C{jitter} J >
0, 1 to J bytes of C{Padding-Padding-...} are added where decoders skip
them, so the length of a response that reflects an attacker's guess next to
a secret no longer says how well the guess compressed. The length is taken
from a CRC-32 of the first 64 KiB of the body, so the same content always
gets the same padding (a random one could be averaged away by repeating the
request). gzip puts it in the header's comment field (RFC 1952), so its
encoder holds up to 64 KiB of input before its first byte of output, unless
flushed earlier; zstd appends a skippable frame (RFC 8878 section 3.1.2) and
brotli a metadata meta-block before its last one (RFC 7932 section 9.2),
both at the end, so they hold nothing.

Levels (see L{LEVELS}) are chosen for speed, as Caddy's and Thruster's are:
a 100 KiB HTML page costs about a millisecond or less on the reactor thread
with each of them.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional, Protocol

import brotli
import zstandard

from kamalproxy.compress.negotiate import BROTLI, GZIP, ZSTD
from kamalproxy.routing.options import MAX_COMPRESSION_JITTER

LEVELS = {GZIP: 5, ZSTD: 3, BROTLI: 4}
"""
Compression levels: gzip 5 and zstd 3 (Caddy's defaults; Thruster uses
gzip 6, zstd 1), brotli 4 (the fastest level that still beats gzip clearly
on HTML; the default 11 is for static files compressed once).
"""

JITTER_SPAN = 64 * 1024
"""
How much of the body the padding length is derived from.
"""

MAX_JITTER = MAX_COMPRESSION_JITTER
"""
The largest C{--compression-jitter} (a brotli metadata block holds at most
this much with a two-byte length).
"""

BROTLI_WINDOW = 19
"""
Brotli's window, 512 KiB: the default (4 MiB) would be held per response in
flight; pages are far smaller.
"""

ZSTD_WINDOW = 19
"""
zstd's window, 512 KiB, for the same reason (level 3 would use 2 MiB).
"""

_PADDING = b"Padding-" * (MAX_JITTER // 8 + 1)
_ZSTD_SKIPPABLE = 0x184D2A50


def padding(checksum: int, jitter: int) -> bytes:
    """
    The padding for a body whose first L{JITTER_SPAN} bytes have CRC-32
    C{checksum}: 1 to C{jitter} bytes of C{Padding-Padding-...}.
    """
    return _PADDING[: 1 + checksum % jitter]


class Encoder(Protocol):
    """
    What every encoder does.
    """

    coding: str

    def compress(self, data: bytes) -> bytes:
        """
        Take C{data}; return the encoded bytes ready so far.
        """

    def flush(self) -> bytes:
        """
        Return everything needed to decode all the input so far.
        """

    def finish(self) -> bytes:
        """
        End the stream; return its last bytes. The encoder is done.
        """


class _Jitter:
    """
    The CRC-32 of the first L{JITTER_SPAN} bytes of a body, fed as it
    passes.
    """

    def __init__(self) -> None:
        self.checksum = 0
        self.seen = 0

    def feed(self, data: bytes) -> None:
        if self.seen < JITTER_SPAN:
            part = data[: JITTER_SPAN - self.seen]
            self.checksum = zlib.crc32(part, self.checksum)
            self.seen += len(part)


class GzipEncoder:
    """
    gzip (RFC 1952): a raw deflate stream between a header of our own,
    whose comment carries the padding, and the CRC-32/length trailer.
    """

    coding = GZIP

    def __init__(self, level: int = LEVELS[GZIP], jitter: int = 0) -> None:
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._jitter = jitter
        self._crc = 0
        self._size = 0
        self._held: Optional[list[bytes]] = [] if jitter else None
        self._heldSize = 0
        self._header: Optional[bytes] = None if jitter else self._makeHeader(b"")

    @staticmethod
    def _makeHeader(comment: bytes) -> bytes:
        flags = 0x10 if comment else 0  # FCOMMENT
        # ID1 ID2 CM FLG MTIME(0: none) XFL OS(255: unknown)
        header = struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, flags, 0, 0, 255)
        return header + comment + b"\0" if comment else header

    def _release(self) -> bytes:
        """
        Write the header, with the padding of the input held, and compress
        that input.
        """
        held, self._held = self._held or [], None
        jitter = _Jitter()
        for piece in held:
            jitter.feed(piece)
        out = [self._makeHeader(padding(jitter.checksum, self._jitter))]
        out += [self._deflate.compress(piece) for piece in held]
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        if self._held is not None:
            self._held.append(data)
            self._heldSize += len(data)
            return self._release() if self._heldSize >= JITTER_SPAN else b""
        out = self._deflate.compress(data)
        header, self._header = self._header, None
        return header + out if header is not None else out

    def _start(self) -> bytes:
        if self._held is not None:
            return self._release()
        header, self._header = self._header, None
        return header or b""

    def flush(self) -> bytes:
        return self._start() + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        start = self._start()
        return start + self._deflate.flush(zlib.Z_FINISH) + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)


class ZstdEncoder:
    """
    zstd (RFC 8878): one frame, then the padding in a skippable frame.
    """

    coding = ZSTD

    def __init__(self, level: int = LEVELS[ZSTD], jitter: int = 0, sizeHint: int = 0) -> None:
        parameters = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=sizeHint, window_log=ZSTD_WINDOW
        )
        self._zstd = zstandard.ZstdCompressor(compression_params=parameters).compressobj()
        self._jitter = _Jitter() if jitter else None
        self._jitterLength = jitter

    def compress(self, data: bytes) -> bytes:
        if self._jitter is not None:
            self._jitter.feed(data)
        return self._zstd.compress(data)

    def flush(self) -> bytes:
        return self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        out = self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        if self._jitter is None:
            return out
        pad = padding(self._jitter.checksum, self._jitterLength)
        return out + struct.pack("<II", _ZSTD_SKIPPABLE, len(pad)) + pad


def brotliMetadata(data: bytes) -> bytes:
    """
    A brotli metadata meta-block holding C{data} (1 to L{MAX_JITTER}
    bytes), which decoders skip; it must start at a byte boundary (after a
    flush). Bits, least significant first: ISLAST 0, MNIBBLES 0 (coded 3),
    a reserved 0, MSKIPBYTES, MSKIPLEN - 1, zeros to the byte boundary.
    """
    length = len(data) - 1
    if length < 256:
        return struct.pack("<H", 3 << 1 | 1 << 4 | length << 6) + data
    return (3 << 1 | 2 << 4 | length << 6).to_bytes(3, "little") + data


class BrotliEncoder:
    """
    brotli (RFC 7932), with the padding in a metadata meta-block before the
    last (empty) meta-block.
    """

    coding = BROTLI

    def __init__(self, level: int = LEVELS[BROTLI], jitter: int = 0) -> None:
        self._brotli = brotli.Compressor(quality=level, lgwin=BROTLI_WINDOW)
        self._jitter = _Jitter() if jitter else None
        self._jitterLength = jitter

    def compress(self, data: bytes) -> bytes:
        if self._jitter is not None:
            self._jitter.feed(data)
        return bytes(self._brotli.process(data))

    def flush(self) -> bytes:
        return bytes(self._brotli.flush())

    def finish(self) -> bytes:
        if self._jitter is None:
            return bytes(self._brotli.finish())
        # A flush leaves the stream at a byte boundary, where a meta-block
        # of our own can go.
        out = bytes(self._brotli.flush())
        pad = brotliMetadata(padding(self._jitter.checksum, self._jitterLength))
        return out + pad + bytes(self._brotli.finish())


def newEncoder(coding: str, jitter: int = 0, sizeHint: int = 0) -> Encoder:
    """
    An encoder for C{coding} (C{"gzip"}, C{"zstd"}, C{"br"}) at its level
    of L{LEVELS}.

    @param jitter: the largest padding (0: none).
    @param sizeHint: the body's size when known (0 when not): zstd picks
        smaller tables for small bodies.
    """
    if coding == ZSTD:
        return ZstdEncoder(jitter=jitter, sizeHint=sizeHint)
    if coding == BROTLI:
        return BrotliEncoder(jitter=jitter)
    if coding == GZIP:
        return GzipEncoder(jitter=jitter)
    raise ValueError(f"unknown content coding: {coding!r}")


__all__ = [
    "BrotliEncoder",
    "Encoder",
    "GzipEncoder",
    "JITTER_SPAN",
    "LEVELS",
    "MAX_JITTER",
    "ZstdEncoder",
    "brotliMetadata",
    "newEncoder",
    "padding",
]
