# -*- test-case-name: tests.test_forwarding -*-
"""
Forwarding one request to a target and its response back to the client.

Headers: hop-by-hop headers are dropped both ways, C{Host} is kept,
C{X-Forwarded-For/-Host/-Proto} are set (the client's own values are kept
only when the service trusts forwarded headers), and C{X-Request-Start} and
C{X-Request-ID} are added when absent.

Errors: a target that refuses or dies gives a 502 page; one slower than the
target timeout to send its response head gives a 504 page.
"""

from __future__ import annotations

import functools
import os
from io import BytesIO
from typing import Optional

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web._http2 import H2Stream
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from kamalproxy import pages
from kamalproxy.buffering import BodyBuffer, BodyTooLarge
from kamalproxy.interim import writeInterim
from kamalproxy.options import TargetOptions
from kamalproxy.targets import Target
from kamalproxy.tunnel import Tunnel
from kamalproxy.upstream import RawHeaders, UpstreamConnection

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
_REPLACED = frozenset(
    (
        b"host",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"forwarded",
    )
)
_DROPPED_FROM_REQUEST = HOP_BY_HOP | _REPLACED
_REPLAYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))

CLIENT_CLOSED_REQUEST = 499


def _connectionTokens(values: Optional[list[bytes]]) -> frozenset[bytes]:
    if not values:
        return frozenset()
    if len(values) == 1:
        return _tokensOf(values[0])
    return frozenset().union(*map(_tokensOf, values))


@functools.lru_cache(maxsize=256)
def _tokensOf(value: bytes) -> frozenset[bytes]:
    """
    The lower-case tokens of one C{Connection} value (the same few values,
    such as C{keep-alive}, arrive with most messages).
    """
    return frozenset(token.strip().lower() for token in value.split(b","))


def newRequestId() -> bytes:
    """
    A new request ID: a random (version 4) UUID in its usual text form, as
    the original's, made without L{uuid.UUID}'s cost.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode("ascii")


def upgradeRequested(request: IRequest) -> Optional[bytes]:
    """
    The protocol an HTTP/1.1 C{request} asks to upgrade to (its C{Upgrade}
    value, e.g. C{websocket}, when C{Connection} names C{upgrade}), or
    L{None}.
    """
    if request.clientproto != b"HTTP/1.1":
        return None
    headers = request.requestHeaders
    upgrade = headers.getRawHeaders(b"upgrade")
    if not upgrade or b"upgrade" not in _connectionTokens(headers.getRawHeaders(b"connection")):
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
    incoming = request.requestHeaders
    dropped = _DROPPED_FROM_REQUEST
    connection = incoming.getRawHeaders(b"connection")
    if connection:
        dropped = dropped | _connectionTokens(connection)
    host = incoming.getRawHeaders(b"host")
    hostValue = host[0] if host else b""
    sentHost = hostValue or targetAddress
    out: RawHeaders = [(b"Host", sentHost)] if sentHost else []
    requestId = b""
    hasStart = False
    for name, values in incoming.getAllRawHeaders():
        lname = name.lower()
        if lname in dropped:
            continue
        if lname == b"x-request-id":
            requestId = values[0]
        elif lname == b"x-request-start":
            hasStart = True
        for value in values:
            out.append((name, value))
    peer = request.getClientAddress()
    peerHost = getattr(peer, "host", "").encode("ascii") if peer else b""
    if peerHost.startswith(b"::ffff:") and b"." in peerHost:
        peerHost = peerHost[7:]  # an IPv4 client of the dual-stack listener
    scheme = b"https" if request.isSecure() else b"http"
    if options.forward_headers:
        priorFor = incoming.getRawHeaders(b"x-forwarded-for")
        forwardedFor = b", ".join(priorFor + [peerHost]) if priorFor else peerHost
        proto = incoming.getRawHeaders(b"x-forwarded-proto", [scheme])[0]
        forwardedHost = incoming.getRawHeaders(b"x-forwarded-host", [hostValue])[0]
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


def copyResponseHeaders(headers: RawHeaders) -> Headers:
    """
    The response headers to send to the client: the target's, minus
    hop-by-hop ones and those its C{Connection} header names.
    """
    dropped = HOP_BY_HOP
    result = Headers()
    add = result.addRawHeader
    for name, value in headers:
        lname = name.lower()
        if lname in dropped:
            if lname == b"connection":
                dropped = dropped | _connectionTokens([value])
            continue
        add(name, value)
    if dropped is not HOP_BY_HOP:
        for token in dropped - HOP_BY_HOP:
            result.removeHeader(token)
    return result


@implementer(IPushProducer)
class _UpstreamProducer:
    """
    Lets a slow client pause reading from the target.
    """

    __slots__ = ("transport", "paused")

    def __init__(self, transport: IPushProducer) -> None:
        self.transport = transport
        self.paused = False

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()


class Forwarding:
    """
    One request on its way to a target: the response handler for the
    upstream connection and the in-flight record the target drains.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        request: IRequest,
        target: Target,
        options: TargetOptions,
    ) -> None:
        self.clock = clock
        self.request: Optional[IRequest] = request
        self.target = target
        self.options = options
        self.conn: Optional[UpstreamConnection] = None
        self.headReceived = False
        self._timer: Optional[IDelayedCall] = None
        self._producer: Optional[_UpstreamProducer] = None
        self._buffered: Optional[BodyBuffer] = None
        self._retried = False
        self._tunnel: Optional[Tunnel] = None
        self._method = b"GET"
        self._path = b"/"
        self._headers: RawHeaders = []
        self._body: bytes | BytesIO | None = None

    def start(self, method: bytes, path: bytes, headers: RawHeaders) -> None:
        """
        Send the request upstream.
        """
        request = self.request
        assert request is not None
        self._method, self._path, self._headers = method, path, headers
        content = request.content
        if content is None:
            self._body = b""
        elif isinstance(content, BytesIO):
            self._body = content.getvalue()
        else:
            self._body = content  # a spilled body, streamed from its file
        self.target.started(self)
        request.notifyFinish().addErrback(self._clientGone)
        if self.options.response_timeout > 0:
            self._timer = self.clock.callLater(self.options.response_timeout, self._timedOut)
        self._acquire(fresh=False)

    def _acquire(self, fresh: bool) -> None:
        pool = self.target.pool
        conn = None if fresh else pool.takeIdle()
        if conn is not None:
            self._send(conn)
        else:
            pool.connect().addCallbacks(self._send, self._connectFailed)

    def _send(self, conn: UpstreamConnection) -> None:
        if self.request is None:  # the client left or we gave up meanwhile
            conn.abort()
            return
        self.conn = conn
        body = self._body
        if isinstance(body, bytes):
            conn.sendRequest(self, self._method, self._path, self._headers, body)
        else:
            assert body is not None
            body.seek(0, 2)
            length = body.tell()
            body.seek(0)
            conn.sendRequest(self, self._method, self._path, self._headers, b"", length)
            FileSender().beginFileTransfer(body, conn.transport).addErrback(lambda f: None)

    def _connectFailed(self, reason: Failure) -> None:
        if self.request is None:
            return
        self.log.info(
            "Unable to proxy request to {target}: {error}",
            target=self.target.address,
            error=reason.getErrorMessage(),
        )
        self._fail(502)

    # IResponseHandler

    def responseInterim(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        request = self.request
        if request is not None:
            kept = copyResponseHeaders(headers).getAllRawHeaders()
            writeInterim(request, status, [(name, value) for name, values in kept for value in values])

    def responseHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        request = self.request
        if request is None:
            return
        self.headReceived = True
        self._cancelTimer()
        if status == 101 and self._startTunnel(headers):
            return
        request.setResponseCode(status, reason or None)
        closing = request.responseHeaders.getRawHeaders(b"connection")
        request.responseHeaders = responseHeaders = copyResponseHeaders(headers)
        if closing:  # the channel closes after this response, and says so
            responseHeaders.setRawHeaders(b"connection", closing)
        options = self.options
        if options.buffer_responses and not _isEventStream(responseHeaders):
            self._buffered = BodyBuffer(
                options.max_memory_buffer_size, options.max_response_body_size
            )
        elif self.conn is not None:
            self._producer = _UpstreamProducer(self.conn.transport)  # type: ignore[arg-type]
            request.registerProducer(self._producer, True)

    def _startTunnel(self, headers: RawHeaders) -> bool:
        """
        The target accepted the client's upgrade (C{101}): send the client
        the 101 and relay both connections from now on (L{Tunnel}); the
        request stays in flight, and is logged, until the tunnel closes.

        @return: whether the tunnel started (the client asked for the
            upgrade over an HTTP/1.1 connection that can be handed over).
        """
        request, conn = self.request, self.conn
        channel = getattr(request, "channel", None)
        startTunnel = getattr(channel, "startTunnel", None)
        if (
            request is None
            or conn is None
            or conn.transport is None
            or startTunnel is None
            or not getattr(request, "kamalUpgrade", False)
        ):
            return False
        dropped = HOP_BY_HOP.union(
            *(_tokensOf(value) for name, value in headers if name.lower() == b"connection")
        )
        head = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        upgrade = b""
        for name, value in headers:  # as the target wrote them
            lname = name.lower()
            if lname == b"upgrade":
                upgrade = upgrade or value
            elif lname not in dropped:
                head += (name, b": ", value, b"\r\n")
        head += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n\r\n")
        request.setResponseCode(101)
        self._tunnel = tunnel = Tunnel(channel.transport, conn.transport, self._tunnelClosed)
        conn.relay(tunnel.fromTarget, tunnel.targetLost)
        startTunnel(b"".join(head), tunnel)
        return True

    def _tunnelClosed(self) -> None:
        request = self.request
        self._tunnel = None
        self.conn = None
        self._release()
        if request is not None:
            endUnfinished(request)

    def responseBody(self, data: bytes) -> None:
        request = self.request
        if request is None:
            return
        buffered = self._buffered
        if buffered is None:
            request.write(data)
            return
        try:
            buffered.write(data)
        except BodyTooLarge:
            self.log.info(
                "Response from {target} is over the maximum response body size",
                target=self.target.address,
            )
            buffered.close()
            self._buffered = None
            self._abortUpstream()
            closing = request.responseHeaders.getRawHeaders(b"connection")
            request.responseHeaders = Headers({b"connection": closing} if closing else {})
            self._fail(502)

    def responseDone(self) -> None:
        request = self.request
        if request is None:
            return
        self._release()
        producer = self._producer
        if producer is not None:
            request.unregisterProducer()
            producer.resumeProducing()
        buffered, self._buffered = self._buffered, None
        if buffered is None:
            request.finish()
        else:
            # The target connection goes back to the pool as this returns;
            # the client reads the buffered copy at its own pace.
            sendBuffered(request, buffered)

    def responseFailed(self, reason: Failure, headReceived: bool) -> None:
        request = self.request
        if request is None:
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
        self.log.info(
            "Unable to proxy request to {target}: {error}",
            target=self.target.address,
            error=reason.getErrorMessage(),
        )
        if headReceived:
            self._release()
            if self._producer is not None:
                request.unregisterProducer()
            abortResponse(request)
        else:
            self._fail(502)

    def _replayable(self) -> bool:
        if self._body:
            return False
        if self._method in _REPLAYABLE_METHODS:
            return True
        incoming = self.request.requestHeaders if self.request is not None else None
        return bool(
            incoming is not None
            and (incoming.hasHeader(b"idempotency-key") or incoming.hasHeader(b"x-idempotency-key"))
        )

    # Ending early

    def _timedOut(self) -> None:
        self._timer = None
        if self.request is None:
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
        upgraded connection still open: both sides are dropped).
        """
        if self._tunnel is not None:
            self._tunnel.abort()
            return
        request = self.request
        if request is None:
            return
        self._abortUpstream()
        if self.headReceived:
            self._release()
            abortResponse(request)
        else:
            self._fail(504)

    def _clientGone(self, reason: Failure) -> None:
        request = self.request
        if request is None:
            return
        self._abortUpstream()
        self._release()
        request.kamalStatus = CLIENT_CLOSED_REQUEST  # type: ignore[attr-defined]
        site = getattr(request, "site", None)
        if site is not None:
            site.log(request)

    def _abortUpstream(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()

    def _fail(self, status: int) -> None:
        request = self.request
        self._release()
        if request is not None:
            pages.writePage(request, status)

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _release(self) -> None:
        """
        This forwarding is over: forget the client and leave the target.
        """
        self._cancelTimer()
        self.request = None
        self.target.finished(self)


def endUnfinished(request: IRequest) -> None:
    """
    Log C{request} and count it out of flight, for one that ends without
    L{Request.finish} (an upgraded connection closed, a streamed request
    refused before its body was in).
    """
    site = getattr(request, "kamalSite", None)
    if site is not None:
        site.log(request)
        site.requestEnded(request)


def abortResponse(request: IRequest) -> None:
    """
    End C{request}'s response, already started, as incomplete: over HTTP/1.x
    by closing the connection, over HTTP/2 by resetting the stream (a clean
    end of stream would pass a truncated body off as complete).
    """
    channel = getattr(request, "channel", None)
    if isinstance(channel, H2Stream):
        channel.abortConnection()
    else:
        request.loseConnection()


def _isEventStream(headers: Headers) -> bool:
    contentType = headers.getRawHeaders(b"content-type")
    return bool(contentType) and contentType[0].lower().startswith(b"text/event-stream")


def sendBuffered(request: IRequest, buffered: BodyBuffer) -> None:
    """
    Send a completely buffered response body to C{request}'s client and
    finish it: in one write from memory, or streamed from the temporary file
    with flow control; the buffer is freed afterwards.
    """
    if (
        request.method != b"HEAD"
        and request.code not in (204, 304)
        and not request.responseHeaders.hasHeader(b"content-length")
    ):
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % buffered.size])
    if buffered.inMemory:
        request.write(buffered.getvalue())
        buffered.close()
        request.finish()
        return
    buffered.file.seek(0)

    def done(result: object) -> None:
        buffered.close()
        if not getattr(request, "_disconnected", False):
            request.finish()

    FileSender().beginFileTransfer(buffered.file, request).addBoth(done)


def forward(
    clock: IReactorTime,
    request: IRequest,
    target: Target,
    options: TargetOptions,
    path: bytes,
) -> int:
    """
    Forward C{request} to C{target} with C{path} as the upstream request
    target; the response is written to C{request} asynchronously.

    @return: L{NOT_DONE_YET}, for C{render} to return.
    """
    headers = stampRequest(clock, request, target, options)
    Forwarding(clock, request, target, options).start(request.method, path, headers)
    return NOT_DONE_YET


def stampRequest(
    clock: IReactorTime, request: IRequest, target: Target, options: TargetOptions
) -> RawHeaders:
    """
    Note on C{request} what the request log needs, and return the headers
    to send upstream.
    """
    upgrade = upgradeRequested(request)
    headers, requestId = requestHeaders(
        request, options, clock.seconds(), upgrade, target.addressBytes
    )
    request.kamalUpgrade = upgrade is not None  # type: ignore[attr-defined]
    request.kamalRequestId = requestId  # type: ignore[attr-defined]
    request.kamalTarget = target.address  # type: ignore[attr-defined]
    request.defaultContentType = None  # type: ignore[attr-defined]
    request.kamalTrustForwarded = options.forward_headers  # type: ignore[attr-defined]
    if options.log_request_headers or options.log_response_headers:
        request.kamalLogHeaders = (  # type: ignore[attr-defined]
            options.log_request_headers,
            options.log_response_headers,
        )
    return headers
