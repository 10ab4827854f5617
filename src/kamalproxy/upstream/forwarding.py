# -*- test-case-name: tests.upstream.test_forwarding -*-
"""
Forwarding one request to a target and its response back to the client.

Headers: hop-by-hop headers are dropped both ways, C{Host} is kept,
C{X-Forwarded-For/-Host/-Proto} are set (the client's own values are kept
only when the service trusts forwarded headers), C{X-Request-Start} and
C{X-Request-ID} are added when absent, and C{X-Kamal-Target} names the
target (after the client's own values when forwarded headers are trusted).

Errors: when a target cannot be connected to (refused, reset, connect
timeout), the request, of which nothing was sent, goes to another healthy
target of its group at once and the target is marked unhealthy (failover);
with no other one, or when a target dies after the request was sent, a 502
page; a target slower than the target timeout to send its response head
gives a 504 page.
"""

from __future__ import annotations

import os
from io import BytesIO
from typing import IO, Any, Callable, Iterator, Optional

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kamalproxy.http.fields import HOP_BY_HOP, clientHost, connectionTokens, tokensOf
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.options import TargetOptions
from kamalproxy.upstream.targets import Target
from kamalproxy.http.tunnel import Tunnel
from kamalproxy.upstream.client import RawHeaders, UpstreamConnection
from kamalproxy.upstream.deadlines import Deadlines
from kamalproxy.twistedcompat import fieldKey, rawHeaders

_REPLACED = frozenset(
    (
        b"host",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"forwarded",
        b"x-kamal-target",
    )
)
_DROPPED_FROM_REQUEST = HOP_BY_HOP | _REPLACED
_REPLAYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
_CONNECTION = fieldKey(b"connection")
_HOST = fieldKey(b"host")
_UPGRADE = fieldKey(b"upgrade")
_X_FORWARDED_FOR = fieldKey(b"x-forwarded-for")
_X_FORWARDED_HOST = fieldKey(b"x-forwarded-host")
_X_FORWARDED_PROTO = fieldKey(b"x-forwarded-proto")
_X_KAMAL_TARGET = fieldKey(b"x-kamal-target")


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _requestIds() -> Iterator[bytes]:
    """
    Random (version 4) UUIDs in their usual text form, cut from one
    C{getrandom} call per 256 of them.
    """
    while True:
        pool = os.urandom(16 * 256).hex()
        for start in range(0, len(pool), 32):
            h = pool[start : start + 32]
            # The version nibble is 4, the variant's two high bits are 10.
            yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}".encode("ascii")


_nextRequestId = _requestIds().__next__


def newRequestId() -> bytes:
    """
    A new request ID: a random (version 4) UUID in its usual text form, as
    the original's, made without L{uuid.UUID}'s cost.
    """
    return _nextRequestId()


def upgradeRequested(request: Any) -> Optional[bytes]:
    """
    The protocol an HTTP/1.1 C{request} asks to upgrade to (its C{Upgrade}
    value, e.g. C{websocket}, when C{Connection} names C{upgrade}), or
    L{None}.
    """
    if request.clientproto != b"HTTP/1.1":
        return None
    fields = rawHeaders(request.requestHeaders)
    upgrade = fields.get(_UPGRADE)
    if not upgrade or b"upgrade" not in connectionTokens(fields.get(_CONNECTION)):
        return None
    return upgrade[0]


def requestHeaders(
    request: IRequest,
    options: TargetOptions,
    now: float,
    upgrade: Optional[bytes] = None,
    targetAddress: bytes = b"",
) -> tuple[RawHeaders, bytes]:
    """
    The headers to send upstream for C{request}, and its request ID; with
    C{upgrade} (see L{upgradeRequested}) the upgrade is passed on.

    @param targetAddress: the target's C{host:port}, sent as C{Host} when
        the client sent none or an empty one (an HTTP/1.0 request), since
        the upstream request is HTTP/1.1, which requires it; Go's
        C{ReverseProxy} does the same.
    """
    # Read from the fields' dict once (getRawHeaders re-encodes the name
    # on every call); an empty value list counts as absent, as there.
    incoming = rawHeaders(request.requestHeaders)
    dropped = _DROPPED_FROM_REQUEST
    connection = incoming.get(_CONNECTION)
    if connection:
        dropped = dropped | connectionTokens(connection)
    host = incoming.get(_HOST)
    hostValue = host[0] if host else b""
    sentHost = hostValue or targetAddress
    out: RawHeaders = [(b"Host", sentHost)] if sentHost else []
    requestId = b""
    hasStart = False
    for name, values in incoming.items():
        lname = name.lower()
        if lname in dropped:
            continue
        if lname == b"x-request-id":
            requestId = values[0]
        elif lname == b"x-request-start":
            hasStart = True
        for value in values:
            out.append((name, value))
    peerHost = clientHost(request.getClientAddress()).encode("ascii")
    scheme = b"https" if request.isSecure() else b"http"
    if options.forward_headers:
        priorFor = incoming.get(_X_FORWARDED_FOR)
        forwardedFor = b", ".join(priorFor + [peerHost]) if priorFor else peerHost
        proto = (incoming.get(_X_FORWARDED_PROTO) or [scheme])[0]
        forwardedHost = (incoming.get(_X_FORWARDED_HOST) or [hostValue])[0]
    else:
        forwardedFor, proto, forwardedHost = peerHost, scheme, hostValue
    if peerHost:
        out.append((b"X-Forwarded-For", forwardedFor))
    if forwardedHost:
        out.append((b"X-Forwarded-Host", forwardedHost))
    out.append((b"X-Forwarded-Proto", proto))
    if not hasStart:
        out.append((b"X-Request-Start", b"t=%d" % int(now * 1000)))
    if not requestId:
        requestId = newRequestId()
        out.append((b"X-Request-ID", requestId))
    if upgrade is not None:
        out += ((b"Connection", b"Upgrade"), (b"Upgrade", upgrade))
    return out, requestId


def hopByHopNames(headers: RawHeaders) -> frozenset[bytes]:
    """
    The (lower-case) names of a response's hop-by-hop fields: the standard
    ones and those its C{Connection} fields name.
    """
    dropped = HOP_BY_HOP
    for name, value in headers:
        if name.lower() == b"connection":
            dropped = dropped | tokensOf(value)
    return dropped


def endToEndHeaders(headers: RawHeaders) -> RawHeaders:
    """
    The response headers to pass on to the client: the target's, minus
    hop-by-hop ones (L{hopByHopNames}).
    """
    kept: RawHeaders = []
    named: frozenset[bytes] = frozenset()
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                named = named | (tokensOf(value) - HOP_BY_HOP)  # (usually nothing: keep-alive, close)
        else:
            kept.append((name, value))
    if named:  # a second pass only for the fields a Connection header names
        kept = [(name, value) for name, value in kept if name.lower() not in named]
    return kept


@implementer(IPushProducer)
class _UpstreamProducer:
    """
    The target's response as a producer: a slow client pauses reading from
    the target; a consumer that wants no more (a sink giving up, a client
    gone) stops it, which abandons the response.
    """

    __slots__ = ("transport", "paused", "onStop")

    def __init__(self, transport: IPushProducer, onStop: Callable[[], None]) -> None:
        self.transport = transport
        self.paused = False
        self.onStop = onStop

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.onStop()


class Forwarding:
    """
    One request on its way to a target: the response handler for the
    upstream connection and the in-flight record the target drains. The
    response goes to the exchange's sink.
    """

    log = Logger()

    def __init__(self, exchange: Exchange, options: TargetOptions) -> None:
        self.exchange: Optional[Exchange] = exchange
        self.clock = exchange.clock
        self.target: Target = exchange.target
        self.options = options
        self.conn: Optional[UpstreamConnection] = None
        self.headReceived = False
        self._deadlines: Optional[Deadlines] = None  # while the response timeout runs
        self._retried = False
        self._failovers = 0
        self._tunnel: Optional[Tunnel] = None
        self._method = b"GET"
        self._path = b"/"
        self._headers: RawHeaders = []
        self._body: bytes | IO[bytes] = b""

    @property
    def request(self) -> Optional[IRequest]:
        """
        The client's request, while this forwarding still answers it.
        """
        exchange = self.exchange
        return exchange.request if exchange is not None else None

    def start(self, headers: RawHeaders) -> None:
        """
        Send the request, whose body is complete, upstream.
        """
        exchange = self.exchange
        assert exchange is not None
        request = exchange.request
        self._method, self._path, self._headers = request.method, exchange.upstreamPath, headers
        content = request.content
        if content is None:
            self._body = b""
        elif isinstance(content, BytesIO):
            self._body = content.getvalue()
        else:
            self._body = content  # a spilled body, streamed from its file
        self.target.started(self)
        exchange.onClientGone = self._clientGone
        self._startTimer()
        self._acquire(fresh=False)

    def _acquire(self, fresh: bool) -> None:
        pool = self.target.pool
        conn = None if fresh else pool.takeIdle()
        if conn is not None:
            self._send(conn)
        else:
            pool.connect().addCallbacks(self._send, self._connectFailed)

    def _send(self, conn: UpstreamConnection) -> None:
        if self.exchange is None:  # the client left or we gave up meanwhile
            conn.abort()
            return
        self.conn = conn
        body = self._body
        if isinstance(body, bytes):
            conn.sendRequest(self, self._method, self._path, self._headers, body)
        else:
            body.seek(0, 2)
            length = body.tell()
            body.seek(0)
            conn.sendRequest(self, self._method, self._path, self._headers, b"", length)
            FileSender().beginFileTransfer(body, conn.transport).addErrback(lambda f: None)

    def _connectFailed(self, reason: Failure) -> None:
        if self.exchange is not None and not self._failOver(reason):
            self._unreachable(reason)

    def _failOver(self, reason: Failure) -> bool:
        """
        No connection to the target could be made, so nothing of the
        request was sent: send the request to another healthy target of the
        group (a reader's read to another reader, else to a writer), and
        mark the target unhealthy. The last healthy target is not marked:
        without another one to go to, requests get a 502, as without
        failover, until its health check says otherwise.

        @return: whether the request moved to another target.
        """
        exchange = self.exchange
        failed = self.target
        group = exchange.group if exchange is not None else None
        if exchange is None or group is None or self._failovers >= len(group.targets):
            return False
        target = group.pick(failed in group.readers, avoid=failed)
        if target is None or target.draining:
            return False
        failed.markUnreachable(reason.getErrorMessage())
        self._failovers += 1
        self.log.info(
            "Unable to connect to {failed} ({error}); request sent to {target}",
            failed=failed.address,
            error=reason.getErrorMessage(),
            target=target.address,
        )
        failed.finished(self)
        self.target = exchange.target = target
        target.started(self)
        self._headers = [
            header for header in self._headers if header[0] != b"X-Kamal-Target"
        ] + [targetHeader(exchange.request, self.options, target.addressBytes)]
        self._acquire(fresh=False)
        return True

    def _unreachable(self, reason: Failure) -> None:
        """
        The target could not be reached or failed before answering: log
        it, and the client gets the 502 page.
        """
        self.log.info(
            "Unable to proxy request to {target}: {error}",
            target=self.target.address,
            error=reason.getErrorMessage(),
        )
        self._fail(502)

    # IResponseHandler

    def responseInterim(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.sink.interim(status, endToEndHeaders(headers))

    def responseHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        self.headReceived = True
        self._cancelTimer()
        if status == 101 and self._startTunnel(headers):
            return
        sink = exchange.sink
        sink.head(status, reason, endToEndHeaders(headers))
        if self.conn is not None and self.conn.transport is not None:
            producer = _UpstreamProducer(self.conn.transport, self._abandoned)  # type: ignore[arg-type]
            sink.registerProducer(producer, True)

    def _startTunnel(self, headers: RawHeaders) -> bool:
        """
        The target accepted the client's upgrade (C{101}): send the client
        the 101 and relay both connections from now on (L{Tunnel}); the
        request stays in flight, and is logged, until the tunnel closes.

        @return: whether the tunnel started (the client asked for the
            upgrade over an HTTP/1.1 connection that can be handed over).
        """
        exchange, conn = self.exchange, self.conn
        request = exchange.request if exchange is not None else None
        channel = getattr(request, "channel", None)
        startTunnel = getattr(channel, "startTunnel", None)
        if (
            exchange is None
            or conn is None
            or conn.transport is None
            or startTunnel is None
            or exchange.upgrade is None
        ):
            return False
        dropped = hopByHopNames(headers)
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        upgrade = b""
        for name, value in headers:  # as the target wrote them
            lname = name.lower()
            if lname == b"upgrade":
                upgrade = upgrade or value
            elif lname not in dropped:
                head += (name, b": ", value, b"\r\n")
        head += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n\r\n")
        exchange.request.setResponseCode(101)
        self._tunnel = tunnel = Tunnel(channel.transport, conn.transport, self._tunnelClosed)  # type: ignore[union-attr]
        conn.relay(tunnel.fromTarget, tunnel.targetLost)
        startTunnel(b"".join(head), tunnel)
        return True

    def _tunnelClosed(self) -> None:
        exchange = self.exchange
        self._tunnel = None
        self.conn = None
        self._release()
        if exchange is not None:
            exchange.end()

    def responseBody(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.sink.body(data)

    def responseDone(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        self._release()
        exchange.sink.end()

    def responseFailed(self, reason: Failure, headReceived: bool) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        conn = self.conn
        if (
            not headReceived
            and not self._retried
            and conn is not None
            and conn.requestsSent > 1
            and not conn.gotResponseBytes
            and self._replayable()
        ):
            # A kept-alive connection the target had closed: try a new one.
            self._retried = True
            self.conn = None
            self._acquire(fresh=True)
            return
        self._unreachable(reason)

    def _replayable(self) -> bool:
        if self._body:
            return False
        if self._method in _REPLAYABLE_METHODS:
            return True
        request = self.request
        incoming = request.requestHeaders if request is not None else None
        return bool(
            incoming is not None
            and (incoming.hasHeader(b"idempotency-key") or incoming.hasHeader(b"x-idempotency-key"))
        )

    # Ending early

    def _startTimer(self) -> None:
        """
        Give the target C{--target-timeout} from now to send its response
        head (L{expired} otherwise).
        """
        timeout = self.options.response_timeout
        exchange = self.exchange
        if timeout > 0 and exchange is not None:
            self._deadlines = deadlines = exchange.service.responseDeadlines
            deadlines.add(self, timeout)

    def expired(self) -> None:
        """
        The response timeout passed without a response head: 504.
        """
        self._deadlines = None
        if self.exchange is None:
            return
        self.log.info(
            "Target {target} did not respond within {timeout}s",
            target=self.target.address,
            timeout=self.options.response_timeout,
        )
        self._abortUpstream()
        self._fail(504)

    def cancelForDrain(self) -> None:
        """
        The drain deadline passed with this request still running (or its
        upgraded connection still open: both sides are dropped): a 504 page
        when nothing of the response reached the client yet, else the
        response is cut short.
        """
        if self._tunnel is not None:
            self._tunnel.abort()
            return
        if self.exchange is None:
            return
        self._abortUpstream()
        self._fail(504)

    def _clientGone(self) -> None:
        if self.exchange is None:
            return
        self._abortUpstream()
        self._release()

    def _abandoned(self) -> None:
        """
        The sinks want no more of the response (one gave up on it, or the
        client went away): drop the target connection.
        """
        self._clientGone()

    def _abortUpstream(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()

    def _fail(self, status: int) -> None:
        """
        Give up: the client gets the page for C{status}, or a cut response
        if it already has part of one.
        """
        exchange = self.exchange
        self._release()
        if exchange is not None:
            exchange.sink.fail(status)

    def _cancelTimer(self) -> None:
        deadlines, self._deadlines = self._deadlines, None
        if deadlines is not None:
            deadlines.discard(self)

    def _release(self) -> None:
        """
        This forwarding is over: forget the client and leave the target.
        """
        self._cancelTimer()
        exchange, self.exchange = self.exchange, None
        if exchange is not None and exchange.onClientGone == self._clientGone:
            exchange.onClientGone = None
        self.target.finished(self)


def targetHeader(request: IRequest, options: TargetOptions, address: bytes) -> tuple[bytes, bytes]:
    """
    The C{X-Kamal-Target} header naming the target C{address}: after the
    client's own values when forwarded headers are trusted.
    """
    if options.forward_headers:
        prior = rawHeaders(request.requestHeaders).get(_X_KAMAL_TARGET)
        if prior:
            return (b"X-Kamal-Target", b", ".join([*prior, address]))
    return (b"X-Kamal-Target", address)


def stampRequest(exchange: Exchange, options: TargetOptions) -> RawHeaders:
    """
    Note on C{exchange} what the request log needs, and return the headers
    to send upstream.
    """
    request = exchange.request
    upgrade = upgradeRequested(request)
    headers, requestId = requestHeaders(
        request, options, exchange.clock.seconds(), upgrade, exchange.target.addressBytes
    )
    exchange.upgrade = upgrade
    exchange.requestId = requestId
    exchange.trustForwarded = exchange.trustForwarded or options.forward_headers
    request.defaultContentType = None
    if options.log_request_headers or options.log_response_headers:
        exchange.logHeaders = (options.log_request_headers, options.log_response_headers)
    headers.append(targetHeader(request, options, exchange.target.addressBytes))
    return headers
