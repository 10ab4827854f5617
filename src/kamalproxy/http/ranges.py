# -*- test-case-name: tests.http.test_ranges -*-
"""
Range requests (RFC 9110 section 14), for C{bytes} only, with one set of
rules for every part of the proxy that answers them itself: the HTTP cache
(from a stored body) and X-Sendfile (from a file).

A C{Range} header that cannot be read (another unit, bad syntax, a range
whose last position is before its first) is ignored, as the RFC allows: the
whole representation is sent. So is one asking for more than L{MAX_RANGES}
ranges, or, with several ranges, for more bytes in all than the
representation holds (overlapping ranges, a cheap way to make a server send
a body many times over; Go's C{http.ServeContent} has the same rule). A
well-formed header none of whose ranges overlaps the representation is
unsatisfiable (416). Several ranges are answered as C{multipart/byteranges}.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

MAX_RANGES = 100
"""
The most ranges one request may ask for; more and the header is ignored.
Since the ranges together never ask for more bytes than the representation
holds, what this bounds is the multipart framing (about a hundred bytes a
part, so at most some 10 KB over the body) and the work of reading the
header; a hundred is more than any reader of PDFs or media asks for at once
(Apache's default is 200).
"""

Span = tuple[int, int]
"""
A satisfiable range: the first and the last byte position, inclusive.
"""

Piece = Union[bytes, tuple[int, int]]
"""
A piece of a response body: literal bytes (a multipart boundary and part
head), or C{(offset, length)} of the representation.
"""


class Unsatisfiable(Exception):
    """
    No range of the header overlaps the representation (416, with
    L{unsatisfiedRange} as its C{Content-Range}).
    """


def _position(text: bytes) -> Optional[int]:
    return int(text) if text.isdigit() else None


def parseRange(value: bytes, size: int) -> Optional[list[Span]]:
    """
    The ranges of C{value} (a C{Range} header) over a representation of
    C{size} bytes, clipped to it, in the order asked.

    @return: the spans to send, or L{None} to ignore the header and send
        the whole representation.
    @raise Unsatisfiable: the header is valid and no range overlaps the
        representation.
    """
    unit, equals, rangeSet = value.partition(b"=")
    if not equals or unit.strip().lower() != b"bytes":
        return None
    specs = [spec.strip(b" \t") for spec in rangeSet.split(b",")]
    specs = [spec for spec in specs if spec]
    if not specs or len(specs) > MAX_RANGES:
        return None
    spans: list[Span] = []
    for spec in specs:
        first, dash, last = spec.partition(b"-")
        if not dash:
            return None
        if not first:  # a suffix: the last N bytes
            suffix = _position(last)
            if suffix is None:
                return None
            if suffix > 0 and size > 0:
                spans.append((max(0, size - suffix), size - 1))
            continue
        start = _position(first)
        end = _position(last) if last else start
        if start is None or end is None or end < start:
            return None
        if start < size:
            spans.append((start, min(end, size - 1) if last else size - 1))
    if not spans:
        raise Unsatisfiable()
    if len(spans) > 1 and sum(end - start + 1 for start, end in spans) > size:
        return None
    return spans


def unsatisfiedRange(size: int) -> bytes:
    """
    The C{Content-Range} of a 416 for a representation of C{size} bytes.
    """
    return b"bytes */%d" % (size,)


def newBoundary() -> bytes:
    """
    A random C{multipart/byteranges} boundary.
    """
    return os.urandom(12).hex().encode("ascii")


def partial(
    spans: Sequence[Span], size: int, contentType: Optional[bytes], boundary: Optional[bytes] = None
) -> tuple[list[tuple[bytes, bytes]], list[Piece]]:
    """
    The fields and body of the 206 answering C{spans} of a C{size}-byte
    representation of type C{contentType} (L{None}: unknown): one span as
    it is, with C{Content-Range}; several as C{multipart/byteranges}
    (section 14.6), a part per span with its C{Content-Type} and
    C{Content-Range}.

    @param boundary: the multipart boundary (L{newBoundary} if L{None}).
    @return: the fields C{Content-Type} (when known) and C{Content-Range}
        (one span), and the body's pieces (L{piecesLength} long).
    """
    typed = [(b"Content-Type", contentType)] if contentType is not None else []
    if len(spans) == 1:
        start, end = spans[0]
        return typed + [(b"Content-Range", b"bytes %d-%d/%d" % (start, end, size))], [(start, end - start + 1)]
    if boundary is None:
        boundary = newBoundary()
    partType = b"Content-Type: %s\r\n" % (contentType,) if contentType is not None else b""
    pieces: list[Piece] = []
    for index, (start, end) in enumerate(spans):
        head = b"%s--%s\r\n%sContent-Range: bytes %d-%d/%d\r\n\r\n" % (
            b"\r\n" if index else b"",
            boundary,
            partType,
            start,
            end,
            size,
        )
        pieces += [head, (start, end - start + 1)]
    pieces.append(b"\r\n--%s--\r\n" % (boundary,))
    return [(b"Content-Type", b"multipart/byteranges; boundary=" + boundary)], pieces


def piecesLength(pieces: Sequence[Piece]) -> int:
    """
    How many bytes C{pieces} make.
    """
    return sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)


def joinPieces(pieces: Sequence[Piece], data: bytes) -> bytes:
    """
    The body C{pieces} make of a representation held in memory as C{data}.
    """
    return b"".join(p if isinstance(p, bytes) else data[p[0] : p[0] + p[1]] for p in pieces)
