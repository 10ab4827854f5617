# -*- test-case-name: tests.http.test_validators -*-
"""
Validators and the conditional requests they answer (RFC 9110 section 13),
for every part of the proxy that answers them itself: the HTTP cache (from a
stored response) and X-Sendfile (from a file).

Entity tags are handled as they are written (C{"x"} or C{W/"x"}); a list of
them (C{If-Match}, C{If-None-Match}) is read tag by tag, so a tag holding a
comma (C{"a,b"}, a legal tag) is one tag. Dates are HTTP dates (section
5.6.7) read strictly: a field in any other form is not a valid date, and a
condition on it is ignored, as the RFC says.

Most requests carry no condition at all: each function here sees that in a
lookup or two of the request's fields and answers at once.
"""

from __future__ import annotations

import calendar
import re
from email.utils import formatdate
from typing import Iterable, Optional

from twisted.web.http_headers import Headers

from kamalproxy.twistedcompat import fieldKey, rawHeaders

NOT_MODIFIED = 304
PRECONDITION_FAILED = 412

# The request fields read here, looked up in the fields' dict (Headers'
# methods encode the name on every call).
_IF_MATCH = fieldKey(b"if-match")
_IF_NONE_MATCH = fieldKey(b"if-none-match")
_IF_MODIFIED_SINCE = fieldKey(b"if-modified-since")
_IF_UNMODIFIED_SINCE = fieldKey(b"if-unmodified-since")
_IF_RANGE = fieldKey(b"if-range")
_PRECONDITIONS = frozenset((_IF_MATCH, _IF_NONE_MATCH, _IF_MODIFIED_SINCE, _IF_UNMODIFIED_SINCE))

_ENTITY_TAG = re.compile(rb'[ \t,]*(W/)?"([^"]*)"[ \t]*(?:,|\Z)')


def entityTags(values: Iterable[bytes]) -> Optional[list[bytes]]:
    """
    The entity tags of C{If-Match}/C{If-None-Match} values, each as written
    (C{"x"} or C{W/"x"}); L{None} for C{*}. An unreadable part ends a
    value's list.
    """
    tags: list[bytes] = []
    for value in values:
        if value.strip(b" \t") == b"*":
            return None
        position = 0
        while True:
            match = _ENTITY_TAG.match(value, position)
            if match is None or match.end() == position:
                break
            tags.append((match.group(1) or b"") + b'"' + match.group(2) + b'"')
            position = match.end()
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


def _listMatches(values: Iterable[bytes], etag: Optional[bytes], strong: bool) -> bool:
    """
    Whether an C{If-Match}/C{If-None-Match} field (C{values}) names the
    current representation, whose tag is C{etag} (L{None}: it has none).
    """
    tags = entityTags(values)
    if tags is None:
        return True
    if etag is None:
        return False
    compare = strongMatch if strong else weakMatch
    return any(compare(tag, etag) for tag in tags)


def parseDate(value: Optional[bytes]) -> Optional[float]:
    """
    An HTTP date (RFC 9110 section 5.6.7: IMF-fixdate, or the obsolete RFC
    850 and asctime forms, names in any case) as POSIX seconds, or L{None}
    when absent or in any other form (other time zones, two-digit years in
    the first form, missing commas, extra spaces ...).
    """
    if not value:
        return None
    text = value.decode("latin-1").strip()
    match = _IMF_FIXDATE.match(text)
    if match is not None:
        _, day, month, year, hour, minute, second = match.groups()
    else:
        match = _RFC850.match(text)
        if match is not None:
            _, day, month, year, hour, minute, second = match.groups()
            year = str(int(year) + (2000 if int(year) < 70 else 1900))  # RFC 9110's rule, near enough
        else:
            match = _ASCTIME.match(text)
            if match is None:
                return None
            _, month, day, hour, minute, second, year = match.groups()
    try:
        fields = (int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second))
        if not (1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] < 61):
            return None
        return float(calendar.timegm((*fields, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(r"(mon|tue|wed|thu|fri|sat|sun), (\d\d) " + _MONTH + r" (\d{4}) " + _TIME + r" gmt\Z", re.I)
_RFC850 = re.compile(
    r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\d\d)-" + _MONTH + r"-(\d\d) " + _TIME + r" gmt\Z",
    re.I,
)
_ASCTIME = re.compile(r"(mon|tue|wed|thu|fri|sat|sun) " + _MONTH + r" ([ \d]\d) " + _TIME + r" (\d{4})\Z", re.I)


def httpDate(seconds: float) -> bytes:
    """
    POSIX C{seconds} (whole seconds are kept) as an IMF-fixdate, the form
    C{Date} and C{Last-Modified} are sent in.
    """
    return formatdate(int(seconds), usegmt=True).encode("ascii")


def _field(fields: dict[bytes, list[bytes]], key: bytes) -> Optional[bytes]:
    """
    The value of a field that is not a list (a date, C{If-Range}): its
    values joined, so that one given twice is not a valid value.
    """
    values = fields.get(key)
    return b", ".join(values) if values else None


def notModified(request: Headers, etag: Optional[bytes], modified: Optional[float]) -> bool:
    """
    Whether a GET or HEAD with C{request}'s conditions is answered 304 by a
    representation with these validators (section 13.2.2, steps 3 and 4):
    C{If-None-Match} by weak comparison, else C{If-Modified-Since} against
    C{modified}.
    """
    fields = rawHeaders(request)
    ifNoneMatch = fields.get(_IF_NONE_MATCH)
    if ifNoneMatch:
        return _listMatches(ifNoneMatch, etag, strong=False)
    if _IF_MODIFIED_SINCE not in fields:  # no condition
        return False
    since = parseDate(_field(fields, _IF_MODIFIED_SINCE))
    return since is not None and modified is not None and modified <= since


def evaluate(method: bytes, request: Headers, etag: Optional[bytes], modified: Optional[float]) -> Optional[int]:
    """
    The answer an origin's preconditions call for (section 13.2.2, in its
    order), before any C{Range}: L{PRECONDITION_FAILED} (C{If-Match} by
    strong comparison, else C{If-Unmodified-Since}), L{NOT_MODIFIED} (see
    L{notModified}; C{If-None-Match} on another method fails instead), or
    L{None} to send the representation.
    """
    fields = rawHeaders(request)
    if fields.keys().isdisjoint(_PRECONDITIONS):  # no condition
        return None
    ifMatch = fields.get(_IF_MATCH)
    if ifMatch:
        if not _listMatches(ifMatch, etag, strong=True):
            return PRECONDITION_FAILED
    else:
        since = parseDate(_field(fields, _IF_UNMODIFIED_SINCE))
        if since is not None and modified is not None and modified > since:
            return PRECONDITION_FAILED
    if method in (b"GET", b"HEAD"):
        return NOT_MODIFIED if notModified(request, etag, modified) else None
    ifNoneMatch = fields.get(_IF_NONE_MATCH)
    if ifNoneMatch and _listMatches(ifNoneMatch, etag, strong=False):
        return PRECONDITION_FAILED
    return None


def rangeApplies(request: Headers, etag: Optional[bytes], modified: Optional[float]) -> bool:
    """
    Whether C{request}'s C{Range} is to be honoured (section 13.1.5): no
    C{If-Range}, or one naming the current representation, by a strong
    match of its entity tag or exactly its modification time.
    """
    ifRange = _field(rawHeaders(request), _IF_RANGE)
    if ifRange is None:
        return True
    ifRange = ifRange.strip()
    if ifRange.startswith(b'"') or ifRange.startswith(b"W/"):
        return etag is not None and strongMatch(ifRange, etag)
    when = parseDate(ifRange)
    return when is not None and when == modified
