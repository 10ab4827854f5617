# -*- test-case-name: tests.http.test_fields -*-
"""
HTTP field rules used on both sides of the proxy, each in one place: the
hop-by-hop fields, the tokens of C{Connection}, and the client's address as
the proxy reports it.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Optional

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
