# -*- test-case-name: tests.cache.test_freshness -*-
"""
Whether a response may be stored by a shared cache (RFC 9111 §3), how long
it stays fresh (§4.2.1, §4.2.2), and how old it is (§4.2.3).

Heuristic freshness: a response without explicit freshness (no
C{s-maxage}, C{max-age} or C{Expires}) but with C{Last-Modified} and a
status RFC 9110 §15.1 calls heuristically cacheable is fresh for 10 % of
the time since it was last modified, at most one day (as RFC 9111 §4.2.2
suggests, and as Squid and Varnish do). Nothing else is fresh without
being told.
"""

from __future__ import annotations

from typing import Optional

from kamalproxy.cache.directives import INVALID, CacheControl
from kamalproxy.http.fields import firstValue, headerValues
from kamalproxy.http.validators import parseDate
from kamalproxy.upstream.client import RawHeaders

#: Statuses that are heuristically cacheable (RFC 9110 §15.1), less 206,
#: whose partial bodies this cache does not store.
HEURISTIC_STATUSES = frozenset((200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501))

#: Heuristic freshness: this fraction of the time since Last-Modified ...
HEURISTIC_FRACTION = 0.1
#: ... and no more than this many seconds.
HEURISTIC_MAXIMUM = 86400.0

#: Final statuses this cache stores when the response says how long it is
#: fresh (explicit freshness allows any final status; 206 is not stored).
_NEVER = frozenset((206, 304))


def notStorableBecause(
    method: bytes,
    status: int,
    requestControl: CacheControl,
    responseControl: CacheControl,
    authorized: bool,
    headers: RawHeaders,
) -> Optional[str]:
    """
    Why a shared cache must not store this response, or L{None} when it
    may (RFC 9111 §3, §3.5; a response with C{Set-Cookie} is not stored
    either, so that one client's cookie is never given to another).
    """
    if method != b"GET":
        return "method"
    if status < 200 or status in _NEVER:
        return "status"
    if "no-store" in requestControl or "no-store" in responseControl:
        return "no-store"
    if "private" in responseControl:
        return "private"
    if authorized and not (
        "public" in responseControl or "s-maxage" in responseControl or "must-revalidate" in responseControl
    ):
        return "authorization"
    if firstValue(headers, b"set-cookie") is not None:
        return "set-cookie"
    if b"*" in varyNames(headers):
        return "vary"
    explicit = (
        "public" in responseControl
        or "s-maxage" in responseControl
        or "max-age" in responseControl
        or firstValue(headers, b"expires") is not None
    )
    if not explicit and status not in HEURISTIC_STATUSES:
        return "status"
    return None


def varyNames(headers: RawHeaders) -> tuple[bytes, ...]:
    """
    The request field names C{headers}' C{Vary} names, lower case, sorted,
    without repeats (C{*} kept as it is).
    """
    names: set[bytes] = set()
    for value in headerValues(headers, b"vary"):
        for name in value.split(b","):
            name = name.strip().lower()
            if name:
                names.add(name)
    return tuple(sorted(names))


def freshnessLifetime(control: CacheControl, headers: RawHeaders, dateValue: float, status: int) -> float:
    """
    How long (seconds) a response stays fresh for a shared cache:
    C{s-maxage}, else C{max-age}, else C{Expires} minus C{Date}, else the
    heuristic (see the module docstring). Invalid or repeated-and-different
    values make it stale at once (RFC 9111 §4.2.1).
    """
    for name in ("s-maxage", "max-age"):
        seconds = control.seconds(name)
        if seconds is not None:
            return 0.0 if seconds == INVALID else float(seconds)
    expires = headerValues(headers, b"expires")
    if expires:
        when = parseDate(expires[0]) if len(set(expires)) == 1 else None
        return 0.0 if when is None else max(0.0, when - dateValue)
    modified = parseDate(firstValue(headers, b"last-modified"))
    if modified is not None and status in HEURISTIC_STATUSES and "no-cache" not in control:
        return min(HEURISTIC_MAXIMUM, max(0.0, (dateValue - modified) * HEURISTIC_FRACTION))
    return 0.0


def correctedInitialAge(
    ageValue: float, dateValue: float, requestTime: float, responseTime: float
) -> float:
    """
    The age a response had when it arrived (RFC 9111 §4.2.3): the larger
    of what its C{Date} shows and its C{Age} plus the time it took to come.
    """
    apparentAge = max(0.0, responseTime - dateValue)
    responseDelay = max(0.0, responseTime - requestTime)
    return max(apparentAge, ageValue + responseDelay)


def ageValue(headers: RawHeaders) -> float:
    """
    The response's C{Age}: the first of its values (0 when absent or
    invalid).
    """
    value = firstValue(headers, b"age")
    if value is None:
        return 0.0
    value = value.split(b",")[0].strip()  # a list: its first member
    return float(min(int(value), 2147483648)) if value.isdigit() else 0.0
