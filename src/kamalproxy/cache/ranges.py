# -*- test-case-name: tests.cache.test_ranges -*-
"""
C{Range} requests answered from a stored whole response (RFC 9110 §14):
one range as a 206 with C{Content-Range}, several as
C{multipart/byteranges}, none satisfiable as 416; C{If-Range} decides
whether the range applies at all.
"""

from __future__ import annotations

import os
from typing import Optional

from kamalproxy.cache.conditional import strongMatch
from kamalproxy.cache.directives import firstValue, parseDate
from kamalproxy.upstream.client import RawHeaders

#: More ranges than this in one request are ignored (the whole response is
#: sent), so that a request cannot make the proxy build a huge multipart.
MAX_RANGES = 16

Ranges = list[tuple[int, int]]


def parseRange(value: bytes, length: int) -> Optional[Ranges]:
    """
    The satisfiable byte ranges (first, last inclusive) a C{Range} value
    asks of a C{length}-byte body; L{None} when the field is to be ignored
    (not bytes, malformed, too many ranges); an empty list when none is
    satisfiable.
    """
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or not spec.strip():
        return None
    ranges: Ranges = []
    parts = [p.strip() for p in spec.split(b",") if p.strip()]
    if not parts or len(parts) > MAX_RANGES:
        return None
    for part in parts:
        first, dash, last = part.partition(b"-")
        if not dash:
            return None
        first, last = first.strip(), last.strip()
        if not first:
            if not last.isdigit():
                return None
            suffix = int(last)
            if suffix > 0 and length > 0:
                ranges.append((max(0, length - suffix), length - 1))
            continue
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        if last and int(last) < start:
            return None
        end = int(last) if last else length - 1
        if start < length:
            ranges.append((start, min(end, length - 1)))
    return ranges


def ifRangeHolds(value: Optional[bytes], storedHeaders: RawHeaders) -> bool:
    """
    Whether the C{If-Range} condition (absent: holds) matches the stored
    response: a strong entity tag match, or exactly its C{Last-Modified}.
    """
    if value is None:
        return True
    value = value.strip()
    if value.startswith(b'"') or value.startswith(b"W/"):
        etag = firstValue(storedHeaders, b"etag")
        return etag is not None and strongMatch(value, etag)
    modified = firstValue(storedHeaders, b"last-modified")
    when = parseDate(value)
    return when is not None and modified is not None and parseDate(modified) == when


def partialAnswer(
    ranges: Ranges, body: bytes, headers: RawHeaders, boundary: Optional[bytes] = None
) -> tuple[int, RawHeaders, bytes]:
    """
    The status, fields and body answering C{ranges} of C{body} (whose
    stored fields are C{headers}): 416, a single 206 part, or a multipart.
    """
    length = len(body)
    kept = [(n, v) for n, v in headers if n.lower() not in (b"content-range", b"content-type", b"content-length")]
    contentType = firstValue(headers, b"content-type")
    if not ranges:
        return 416, kept + [(b"Content-Range", b"bytes */%d" % length)], b""
    if len(ranges) == 1:
        first, last = ranges[0]
        typed = kept + ([(b"Content-Type", contentType)] if contentType is not None else [])
        return 206, typed + [(b"Content-Range", b"bytes %d-%d/%d" % (first, last, length))], body[first : last + 1]
    boundary = boundary or os.urandom(12).hex().encode("ascii")
    parts = []
    for first, last in ranges:
        parts.append(b"\r\n--" + boundary + b"\r\n")
        if contentType is not None:
            parts.append(b"Content-Type: " + contentType + b"\r\n")
        parts.append(b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (first, last, length))
        parts.append(body[first : last + 1])
    parts.append(b"\r\n--" + boundary + b"--\r\n")
    return 206, kept + [(b"Content-Type", b"multipart/byteranges; boundary=" + boundary)], b"".join(parts)
