# -*- test-case-name: tests.pipeline.test_balance -*-
"""
Stage: pick the target the request goes to among the healthy targets of
the exchange's group (the service's, unless a stage before chose another);
503 when none is healthy or the group is being drained.

A group with readers (C{--read-target}) sends reads to them, as the
original does: a read is a C{GET} or C{HEAD} that is not a WebSocket
upgrade (unless C{--read-target-websockets}); it goes to a healthy reader,
else to a writer. Writer affinity: a read carrying the cookie
C{kamal-writer=<unix ms>} with that time still ahead goes to a writer, and
every other request's response sets that cookie to now plus
C{--writer-affinity-timeout} (when it is above 0), so a user who just wrote
reads their own write, unless the app answered C{X-Writer-Affinity: false}.
That header is taken out of every response of such a group
(L{WriterAffinitySink}).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.http import datetimeToString

from kamalproxy.http.fields import connectionTokens
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sinks import SinkWrapper
from kamalproxy.upstream.client import RawHeaders

WRITER_COOKIE = b"kamal-writer"
AFFINITY_HEADER = b"x-writer-affinity"
_READ_METHODS = frozenset((b"GET", b"HEAD"))


def balance(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    group = exchange.group
    read = False
    if group.readers:
        options = exchange.service.options.service
        request = exchange.request
        read = isRead(request, options.read_targets_accept_websockets)
        target = group.pick(read and not hasWriterCookie(request, exchange.clock.seconds()))
    else:
        target = group.pick()
    if target is None or target.draining:
        exchange.respondWithPage(503)
        return
    exchange.target = target
    if group.readers:
        timeout = 0.0 if read else options.writer_affinity_timeout
        exchange.sink = WriterAffinitySink(exchange.sink, exchange.clock, timeout)
    proceed(exchange)


def isRead(request: Any, webSocketsRead: bool) -> bool:
    """
    Whether C{request} may go to a reader: a C{GET} or C{HEAD}, and not a
    WebSocket upgrade unless C{webSocketsRead}.
    """
    method = request.method
    if method not in _READ_METHODS:
        return False
    return webSocketsRead or method != b"GET" or not isWebSocket(request)


def isWebSocket(request: Any) -> bool:
    """
    Whether C{request} asks for a WebSocket (C{Upgrade: websocket} and
    C{Connection} naming C{upgrade}).
    """
    headers = request.requestHeaders
    upgrade = headers.getRawHeaders(b"upgrade")
    return bool(
        upgrade
        and upgrade[0].strip().lower() == b"websocket"
        and b"upgrade" in connectionTokens(headers.getRawHeaders(b"connection"))
    )


def writerCookie(request: Any) -> Optional[bytes]:
    """
    The value of the first C{kamal-writer} cookie C{request} carries, or
    L{None}.
    """
    for header in request.requestHeaders.getRawHeaders(b"cookie", ()):
        for pair in header.split(b";"):
            name, sep, value = pair.partition(b"=")
            if sep and name.strip() == WRITER_COOKIE:
                return value.strip().strip(b'"')
    return None


def hasWriterCookie(request: Any, now: float) -> bool:
    """
    Whether C{request} carries a C{kamal-writer} cookie whose time (unix
    milliseconds) is still ahead of C{now} (seconds).
    """
    value = writerCookie(request)
    if value is None or not value.isdigit():
        return False
    return now * 1000 < int(value)


def affinityCookie(now: float, timeout: float) -> bytes:
    """
    The C{Set-Cookie} value that sends the client's reads to the writers
    until C{timeout} seconds after C{now}: its value is that time in unix
    milliseconds, and the cookie expires a second later.
    """
    expiry = int((now + timeout) * 1000)
    return b"%s=%d; Path=/; Expires=%s; HttpOnly" % (
        WRITER_COOKIE,
        expiry,
        datetimeToString(expiry // 1000 + 1),
    )


class WriterAffinitySink(SinkWrapper):
    """
    Takes C{X-Writer-Affinity} out of the response head and, when
    C{timeout} is above 0 and the app did not answer C{X-Writer-Affinity:
    false}, adds the writer affinity cookie (see L{affinityCookie}).
    """

    def __init__(self, inner: Any, clock: IReactorTime, timeout: float) -> None:
        super().__init__(inner)
        self._clock = clock
        self._timeout = timeout

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        kept: RawHeaders = []
        optOut: Optional[bytes] = None
        for name, value in headers:
            if name.lower() == AFFINITY_HEADER:
                if optOut is None:
                    optOut = value
                continue
            kept.append((name, value))
        if self._timeout > 0 and optOut != b"false":
            kept.append((b"Set-Cookie", affinityCookie(self._clock.seconds(), self._timeout)))
        self.passHead(status, reason, kept)
