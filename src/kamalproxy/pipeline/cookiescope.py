# -*- test-case-name: tests.pipeline.test_cookiescope -*-
"""
Stage: cookie paths scoped to the service's path prefix
(C{--scope-cookie-paths}).

Two apps on one host under different prefixes (C{/app}, C{/admin}) would
otherwise overwrite each other's cookies: each sets C{Path=/}, as it would
at the root of its own host. With the flag, the response's C{Set-Cookie}
fields that belong to the request's host (no C{Domain}, or the host's own)
get their C{Path} put under the prefix the request matched: C{Path=/admin}
under C{/app} becomes C{/app/admin}, no C{Path} becomes C{/app}. Cookies
for other domains, and values that are no cookie, are left as they are.
The other attributes keep their place and spelling.
"""

from __future__ import annotations

import posixpath
from typing import Callable

from kamalproxy.interfaces import IResponseSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sinks import SinkWrapper
from kamalproxy.routing.table import requestHost
from kamalproxy.upstream.client import RawHeaders


def scopeCookies(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    prefix = exchange.prefix
    if exchange.service.options.target.scope_cookie_paths and prefix != b"/":
        host = requestHost(exchange.request.requestHeaders.getRawHeaders(b"host", (None,))[0])
        exchange.sink = CookieScopingSink(exchange.sink, prefix, host)
    proceed(exchange)


def scopedPath(prefix: bytes, path: bytes) -> bytes:
    """
    C{path} (a cookie's C{Path}, possibly empty) put under C{prefix}, as
    one clean absolute path.
    """
    relative = path.strip(b"/")
    joined = prefix.rstrip(b"/") + b"/" + relative if relative else prefix
    joined = posixpath.normpath(joined)
    return b"/" + joined.lstrip(b"/")


def scopedSetCookie(value: bytes, prefix: bytes, host: bytes) -> bytes:
    """
    A C{Set-Cookie} value with its C{Path} put under C{prefix} when the
    cookie is for C{host} (no C{Domain}, or C{host} itself, leading dot
    and case aside); otherwise (another domain, no C{name=value} pair)
    C{value} unchanged.
    """
    parts = value.split(b";")
    name, equals, _ = parts[0].partition(b"=")
    if not equals or not name.strip():
        return value
    path = b""
    pathAt = -1
    for index in range(1, len(parts)):
        attribute, _, argument = parts[index].partition(b"=")
        attribute = attribute.strip().lower()
        if attribute == b"domain":
            domain = argument.strip().lstrip(b".").lower()
            if domain and domain != host:
                return value
        elif attribute == b"path":
            path, pathAt = argument.strip(), index  # the last one counts
    scoped = b" Path=" + scopedPath(prefix, path)
    if pathAt < 0:
        return value + b";" + scoped
    out = [parts[0]]
    for index in range(1, len(parts)):
        if index == pathAt:
            out.append(scoped)
        elif parts[index].partition(b"=")[0].strip().lower() != b"path":
            out.append(parts[index])
    return b";".join(out)


class CookieScopingSink(SinkWrapper):
    """
    Scopes the response's C{Set-Cookie} fields to C{prefix} on their way
    to C{inner}.
    """

    def __init__(self, inner: IResponseSink, prefix: bytes, host: bytes) -> None:
        super().__init__(inner)
        self.prefix = prefix
        self.host = host

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        if any(len(name) == 10 and name.lower() == b"set-cookie" for name, _ in headers):
            headers = [
                (name, scopedSetCookie(value, self.prefix, self.host))
                if len(name) == 10 and name.lower() == b"set-cookie"
                else (name, value)
                for name, value in headers
            ]
        self.passHead(status, reason, headers)


__all__ = ["CookieScopingSink", "scopeCookies", "scopedPath", "scopedSetCookie"]
