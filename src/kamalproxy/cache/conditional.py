# -*- test-case-name: tests.cache.test_conditional -*-
"""
A client's conditional request answered from a stored response (RFC 9110
§13): C{If-None-Match} by weak comparison of entity tags, else
C{If-Modified-Since} against the stored C{Last-Modified} (or C{Date}).
"""

from __future__ import annotations

from typing import Optional, Sequence

from kamalproxy.cache.directives import firstValue, parseDate
from kamalproxy.upstream.client import RawHeaders

#: The fields a 304 carries from the stored response (RFC 9110 §15.4.5).
_NOT_MODIFIED_FIELDS = frozenset(
    (b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified")
)


def entityTags(values: Sequence[bytes]) -> Optional[list[bytes]]:
    """
    The entity tags of C{If-None-Match} / C{If-Match} values, each as
    given (C{W/"x"} or C{"x"}); L{None} for C{*}.
    """
    tags: list[bytes] = []
    for value in values:
        for part in value.split(b","):
            part = part.strip()
            if part == b"*":
                return None
            if part:
                tags.append(part)
    return tags


def _opaque(tag: bytes) -> bytes:
    return tag[2:] if tag.startswith(b"W/") else tag


def weakMatch(a: bytes, b: bytes) -> bool:
    """
    Weak comparison: the opaque tags are equal, either may be weak.
    """
    return _opaque(a.strip()) == _opaque(b.strip())


def strongMatch(a: bytes, b: bytes) -> bool:
    """
    Strong comparison: neither is weak and both are equal.
    """
    a, b = a.strip(), b.strip()
    return not a.startswith(b"W/") and a == b


def notModified(
    ifNoneMatch: Optional[Sequence[bytes]],
    ifModifiedSince: Optional[bytes],
    storedHeaders: RawHeaders,
) -> bool:
    """
    Whether a GET or HEAD with these conditions is answered 304 by a
    response with C{storedHeaders}.
    """
    if ifNoneMatch:
        etag = firstValue(storedHeaders, b"etag")
        tags = entityTags(ifNoneMatch)
        if tags is None:
            return True
        return etag is not None and any(weakMatch(tag, etag) for tag in tags)
    if ifModifiedSince is not None:
        since = parseDate(ifModifiedSince)
        modified = parseDate(firstValue(storedHeaders, b"last-modified") or firstValue(storedHeaders, b"date"))
        return since is not None and modified is not None and modified <= since
    return False


def notModifiedHeaders(storedHeaders: RawHeaders) -> RawHeaders:
    """
    The stored fields a 304 repeats.
    """
    return [(n, v) for n, v in storedHeaders if n.lower() in _NOT_MODIFIED_FIELDS]
