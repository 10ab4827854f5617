# -*- test-case-name: tests.files.test_ranges -*-
"""
The C{Range} request header (RFC 9110 section 14.2), for C{bytes} only.

A header that cannot be read (another unit, bad syntax, a range whose last
position is before its first) is ignored, as RFC 9110 allows: the whole file
is served. So is one asking for more than L{MAX_RANGES} ranges or for more
bytes in all than the file holds (overlapping ranges, a cheap way to make a
server send a file many times over). A well-formed header none of whose
ranges overlaps the file is unsatisfiable (416).
"""

from __future__ import annotations

from typing import Optional

MAX_RANGES = 100
"""
The most ranges one request may ask for; more and the header is ignored.
"""

Span = tuple[int, int]
"""
A satisfiable range: the first and the last byte position, inclusive.
"""


class Unsatisfiable(Exception):
    """
    No range of the header overlaps the file (416, C{Content-Range: bytes */size}).
    """


def _position(text: bytes) -> Optional[int]:
    return int(text) if text.isdigit() else None


def parseRange(value: bytes, size: int) -> Optional[list[Span]]:
    """
    The ranges of C{value} (a C{Range} header) over a file of C{size}
    bytes, clipped to it, in the order asked.

    @return: the spans to send, or L{None} to ignore the header and send
        the whole file.
    @raise Unsatisfiable: the header is valid and no range overlaps the file.
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
