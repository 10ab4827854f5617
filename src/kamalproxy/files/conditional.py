# -*- test-case-name: tests.files.test_conditional -*-
"""
Validators of a file and the conditional requests they answer (RFC 9110
section 13): C{If-Match}, C{If-Unmodified-Since}, C{If-None-Match},
C{If-Modified-Since}, evaluated in the RFC's order, and C{If-Range}.

The entity tag is strong: the file's inode, size and modification time in
nanoseconds, so any change to the file (or a new file renamed over it)
changes it. C{Last-Modified} is the modification time in whole seconds.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from twisted.web.http import datetimeToString, stringToDatetime
from twisted.web.http_headers import Headers

NOT_MODIFIED = 304
PRECONDITION_FAILED = 412

_ENTITY_TAG = re.compile(rb'\s*(W/)?("[^"]*")\s*(?:,|$)')


def strongETag(stat: os.stat_result) -> bytes:
    """
    The strong entity tag of a file with C{stat}.
    """
    return b'"%x-%x-%x"' % (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def lastModified(stat: os.stat_result) -> int:
    """
    The file's modification time in whole seconds, as C{Last-Modified} says it.
    """
    return int(stat.st_mtime)


def httpDate(seconds: int) -> bytes:
    return bytes(datetimeToString(seconds))


def _parseDate(value: Optional[bytes]) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(stringToDatetime(value))
    except (ValueError, IndexError, KeyError, OverflowError):
        return None


def _entityTags(value: bytes) -> Optional[list[tuple[bool, bytes]]]:
    """
    The C{(weak, opaque-tag)} pairs of an C{If-Match}/C{If-None-Match}
    value, or L{None} for C{*}; an unreadable part ends the list.
    """
    if value.strip() == b"*":
        return None
    tags = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None or match.end() == position:
            break
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return tags


def _matches(value: bytes, etag: bytes, strong: bool) -> bool:
    tags = _entityTags(value)
    if tags is None:
        return True
    return any(tag == etag and not (strong and weak) for weak, tag in tags)


def _header(headers: Headers, name: bytes) -> Optional[bytes]:
    values = headers.getRawHeaders(name)
    return b", ".join(values) if values else None


def evaluate(method: bytes, headers: Headers, etag: bytes, modified: int) -> Optional[int]:
    """
    The answer the request's preconditions call for, before any C{Range}:
    L{NOT_MODIFIED}, L{PRECONDITION_FAILED}, or L{None} to serve the file.
    """
    safe = method in (b"GET", b"HEAD")
    ifMatch = _header(headers, b"if-match")
    if ifMatch is not None:
        if not _matches(ifMatch, etag, strong=True):
            return PRECONDITION_FAILED
    else:
        since = _parseDate(_header(headers, b"if-unmodified-since"))
        if since is not None and modified > since:
            return PRECONDITION_FAILED
    ifNoneMatch = _header(headers, b"if-none-match")
    if ifNoneMatch is not None:
        if _matches(ifNoneMatch, etag, strong=False):
            return NOT_MODIFIED if safe else PRECONDITION_FAILED
    elif safe:
        since = _parseDate(_header(headers, b"if-modified-since"))
        if since is not None and modified <= since:
            return NOT_MODIFIED
    return None


def rangeApplies(headers: Headers, etag: bytes, modified: int) -> bool:
    """
    Whether the request's C{Range} is to be honoured: no C{If-Range}, or
    one naming the current file (its strong entity tag, or exactly its
    C{Last-Modified} date).
    """
    ifRange = _header(headers, b"if-range")
    if ifRange is None:
        return True
    ifRange = ifRange.strip()
    if ifRange.startswith(b'"') or ifRange.startswith(b"W/"):
        return ifRange == etag
    return _parseDate(ifRange) == modified
