# -*- test-case-name: tests.http.test_fields -*-
"""
HTTP field rules used on both sides of the proxy, each in one place: field
names and the bytes a value may hold, the largest length, the hop-by-hop
fields, the tokens of C{Connection} and the directive names of lists like
C{Cache-Control} and C{Pragma}, look-ups in the C{(name, value)} lists
responses travel as, and the client's address as the proxy reports it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable, Optional, Sequence

FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
"""A field name: a token (RFC 9110 section 5.1)."""

BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Bytes no field value may hold: controls but HTAB, and DEL; obs-text
(0x80-0xFF) is allowed (RFC 9110 section 5.5)."""

MAX_BODY_LENGTH = (1 << 63) - 1
"""The largest body length or chunk size accepted, from clients and targets."""


def beyond63Bits(digits: bytes, base: int) -> bool:
    """
    Whether the number C{digits} (in C{base}, digits only) is over
    L{MAX_BODY_LENGTH}, without converting a huge string.
    """
    significant = digits.lstrip(b"0")
    return len(significant) > 19 or int(significant or b"0", base) > MAX_BODY_LENGTH

HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
"""Fields that describe one connection, never passed on (RFC 9110 section 7.6.1)."""


@functools.lru_cache(maxsize=256)
def tokensOf(value: bytes) -> frozenset[bytes]:
    """
    The lower-case tokens of one C{Connection} value (the same few values,
    such as C{keep-alive}, arrive with most messages).
    """
    return frozenset(token.strip().lower() for token in value.split(b","))


def connectionTokens(values: Optional[Iterable[bytes]]) -> frozenset[bytes]:
    """
    The lower-case tokens of every C{Connection} value in C{values}.
    """
    if not values:
        return frozenset()
    return frozenset().union(*map(tokensOf, values))


@functools.lru_cache(maxsize=256)
def directiveNames(value: bytes) -> frozenset[bytes]:
    """
    The lower-case names of the members of one list value whose members
    may carry an argument (C{Cache-Control}, C{Pragma}: C{max-age=60},
    C{private="Set-Cookie"}), without their arguments; remembered per value,
    as L{tokensOf} is. A quoted argument holding a comma yields a stray name,
    which no caller looks for.
    """
    return frozenset(member.split(b"=", 1)[0].strip().lower() for member in value.split(b","))


def headerValues(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    The values of the field C{name} (lower case) in C{headers}, a list of
    C{(name, value)} pairs, in order.
    """
    return [value for key, value in headers if key.lower() == name]


def firstValue(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> Optional[bytes]:
    """
    The first value of the field C{name} (lower case) in C{headers}, or
    L{None}.
    """
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def clientHost(address: Any) -> str:
    """
    The host of a client's address as the proxy logs and forwards it: an
    IPv4 client of a dual-stack IPv6 listener (C{::ffff:a.b.c.d}) as plain
    IPv4; C{""} for an address without a host.
    """
    host: str = getattr(address, "host", "") or ""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host
