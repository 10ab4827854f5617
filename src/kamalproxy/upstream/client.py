# -*- test-case-name: tests.upstream.test_client -*-
"""
A lean HTTP/1.1 client for talking to targets: one request at a time per
connection, persistent connections kept in a per-target pool (and closed
before their target would close them: see L{kamalproxy.upstream.keepalive}).

This is the proxy's hot path, so it avoids C{twisted.web.client.Agent}'s
generality (IBodyProducer, Deferred chains per response, header objects): the
response head is handed to an L{IResponseHandler} as a plain list, and body
bytes are passed on as they arrive, with the connection's transport exposed as
the push producer that a slow client can pause.
"""

from __future__ import annotations

import re

from typing import Callable, Optional, Protocol as TypingProtocol

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from kamalproxy.http.fields import beyond63Bits, tokensOf
from kamalproxy.turnwrites import sendOncePerTurn
from kamalproxy.upstream.keepalive import DEFAULT_IDLE_TIMEOUT, announcedTimeout, idleLimit

RawHeaders = list[tuple[bytes, bytes]]

MAX_HEAD_SIZE = 64 * 1024
_HEX_SIZE = re.compile(rb"[0-9A-Fa-f]+")
MAX_INTERIM_RESPONSES = 5
"""
Most interim (1xx) responses accepted before the final one, as Go's
transport (more is a protocol error, so a target cannot hold a request
forever with them).
"""
_NO_BODY_STATUSES = frozenset((204, 304))


class UpstreamProtocolError(Exception):
    """
    The target sent something that is not valid HTTP/1.1.
    """


class IResponseHandler(TypingProtocol):
    """
    Receives one response from an L{UpstreamConnection}.
    """

    def responseInterim(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        """
        An interim (1xx) response arrived, other than C{101} (which is
        final here: see L{UpstreamConnection.relay}); the final response
        follows.
        """

    def responseHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        """
        The status line and headers arrived.
        """

    def responseBody(self, data: bytes) -> None:
        """
        Some body bytes arrived (already de-chunked).
        """

    def responseDone(self) -> None:
        """
        The whole response arrived.
        """

    def responseFailed(self, reason: Failure, headReceived: bool) -> None:
        """
        The connection failed before the response was complete.
        """


class UpstreamConnection(Protocol):
    """
    One HTTP/1.1 connection to a target.

    @ivar reusable: whether the connection can carry another request once
        the current response is done.
    @ivar onIdle: called with this connection when a response completes and
        the connection may be reused; set by the pool.
    @ivar onLost: called with this connection when it disconnects.
    @ivar keepAliveTimeout: the idle timeout the target announced with the
        last response (C{Keep-Alive: timeout=N}), or L{None}.
    @ivar idleDeadline: when, on the pool's clock, this connection is to be
        closed if still idle; set by the pool.
    """

    onIdle: Optional[Callable[["UpstreamConnection"], None]] = None
    onLost: Optional[Callable[["UpstreamConnection"], None]] = None
    keepAliveTimeout: Optional[float] = None
    idleDeadline = 0.0

    def __init__(self) -> None:
        self.connected = False
        self.reusable = True
        self.requestsSent = 0
        self._handler: Optional[IResponseHandler] = None
        self._buffer = b""
        self._headDone = False
        self._headRequest = False
        # body framing: remaining length (Content-Length), or -1 for chunked,
        # or -2 for read-until-close
        self._remaining = 0
        self._chunkState = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer
        self._chunkLeft = 0
        self._gotBytes = False
        self._interimCount = 0
        self._lostWaiters: list[Deferred] = []
        # After a 101 taken up by the handler: where the bytes go, and who
        # hears of the close.
        self._relay: Optional[Callable[[bytes], None]] = None
        self._relayLost: Optional[Callable[[], None]] = None

    def connectionMade(self) -> None:
        self.connected = True
        if ITCPTransport.providedBy(self.transport):
            # No Nagle: a small write (a piece of a streamed body) could
            # otherwise wait for the target's delayed ACK of the one before,
            # up to about 40 ms on Linux.  Go sets it on every TCP connection.
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        sendOncePerTurn(self.transport)

    def close(self) -> Deferred:
        """
        Close the connection; fires once it is closed.
        """
        if not self.connected:
            return succeed(None)
        d: Deferred = Deferred()
        self._lostWaiters.append(d)
        self.transport.loseConnection()  # type: ignore[union-attr]
        return d

    # Sending

    def sendRequest(
        self,
        handler: IResponseHandler,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body: bytes = b"",
        streamedLength: int = 0,
        chunked: bool = False,
    ) -> None:
        """
        Send one request; the response goes to C{handler}.

        C{headers} must not contain hop-by-hop headers nor C{Content-Length};
        this sets C{Content-Length} from C{body} for methods that carry one.
        With C{streamedLength}, the caller writes that many body bytes to the
        transport itself after this returns; with C{chunked}, the caller
        writes the body chunk-encoded, ending with the last chunk.
        """
        self._handler = handler
        self._headRequest = method == b"HEAD"
        self._headDone = False
        self._gotBytes = False
        self._interimCount = 0
        self.requestsSent += 1
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        length = streamedLength or len(body)
        if chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif length or method in (b"POST", b"PUT", b"PATCH"):
            parts += (b"Content-Length: ", b"%d" % length, b"\r\n")
        parts.append(b"\r\n")
        if body and len(body) < 65536:
            parts.append(body)
            body = b""
        self.transport.write(b"".join(parts))  # type: ignore[union-attr]
        if body:
            self.transport.write(body)  # type: ignore[union-attr]

    def relay(self, received: Callable[[bytes], None], lost: Callable[[], None]) -> None:
        """
        Give the connection over to an upgraded protocol (called by the
        handler from C{responseHead} for a C{101}): every byte from now on,
        including any after the response head, goes to C{received}, and
        C{lost} is called when the connection closes.
        """
        self._relay = received
        self._relayLost = lost
        self._handler = None

    @property
    def gotResponseBytes(self) -> bool:
        """
        Whether any byte of the current response has arrived.
        """
        return self._gotBytes

    def abort(self) -> None:
        """
        Drop the connection at once (a cancelled or timed-out request).
        """
        self.reusable = False
        self._handler = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        self._gotBytes = True
        if self._relay is not None:
            self._relay(data)
            return
        if self._handler is None:
            # Bytes nobody asked for: the connection is not usable.
            self.reusable = False
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if not self._headDone:
            data = self._buffer + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HEAD_SIZE:
                    self._fail(UpstreamProtocolError("response head too large"))
                else:
                    self._buffer = data
                return
            self._buffer = b""
            try:
                if not self._parseHead(data[:end]):
                    # An interim (1xx) response: look for the real one.
                    self.dataReceived(data[end + 4 :])
                    return
            except UpstreamProtocolError as e:
                self._fail(e)
                return
            data = data[end + 4 :]
            if self._relay is not None:  # upgraded: the rest is the new protocol's
                if data:
                    self._relay(data)
                return
            if self._remaining == 0:
                self._finish()
                if data:
                    self.reusable = False
                    self.transport.loseConnection()  # type: ignore[union-attr]
                return
            if not data:
                return
        self._bodyReceived(data)

    def _parseHead(self, head: bytes) -> bool:
        """
        Parse a response head and tell the handler.

        @return: whether it was the final response (not an interim one).
        """
        lines = head.split(b"\r\n")
        version, status, reason = _statusLine(lines[0])
        if 100 <= status < 200 and status != 101:
            self._interimReceived(status, reason, lines)
            return False
        headers: RawHeaders = []
        contentLength = -1
        chunked = False
        keepAlive = version == b"HTTP/1.1"
        keepAliveTimeout = None
        for line in lines[1:]:
            name, value = _field(line)
            lname = name.lower()
            if lname == b"content-length":
                # Digits only (int() would also take "+5", "1_0" and spaces),
                # and within 63 bits, as the client side demands.
                if not value.isdigit() or beyond63Bits(value, 10):
                    raise UpstreamProtocolError("bad Content-Length")
                length = int(value)
                if contentLength >= 0 and length != contentLength:
                    raise UpstreamProtocolError("bad Content-Length")
                contentLength = length
            elif lname == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lname == b"connection":
                tokens = tokensOf(value)
                if b"close" in tokens:
                    keepAlive = False
                elif b"keep-alive" in tokens:
                    keepAlive = True
            elif lname == b"keep-alive":
                keepAliveTimeout = announcedTimeout(value)
            headers.append((name, value))
        self.keepAliveTimeout = keepAliveTimeout
        if not keepAlive:
            self.reusable = False
        if status == 101:
            # Upgraded (a WebSocket): the handler relays the connection, or
            # takes the 101 as an empty response; never reused either way.
            self.reusable = False
            self._remaining = 0
        elif self._headRequest or status in _NO_BODY_STATUSES:
            self._remaining = 0
        elif chunked:
            if contentLength >= 0:
                self.reusable = False  # RFC 9112 6.3: framing was ambiguous
            self._remaining = -1
            self._chunkState = 0
        elif contentLength >= 0:
            self._remaining = contentLength
        else:
            self._remaining = -2
            self.reusable = False
        self._headDone = True
        handler = self._handler
        assert handler is not None
        handler.responseHead(status, reason, headers)
        return True

    def _interimReceived(self, status: int, reason: bytes, lines: list[bytes]) -> None:
        self._interimCount += 1
        if self._interimCount > MAX_INTERIM_RESPONSES:
            raise UpstreamProtocolError("too many interim responses")
        headers = [_field(line) for line in lines[1:]]
        handler = self._handler
        if handler is not None:
            handler.responseInterim(status, reason, headers)

    def _bodyReceived(self, data: bytes) -> None:
        remaining = self._remaining
        if remaining > 0:
            if len(data) < remaining:
                self._remaining = remaining - len(data)
                self._deliver(data)
                return
            extra = data[remaining:]
            self._remaining = 0
            self._deliver(data[:remaining])
            self._finish()
            if extra:
                self.reusable = False
                if self.transport is not None:
                    self.transport.loseConnection()
        elif remaining == -1:
            self._chunkedReceived(data)
        elif remaining == -2:
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        handler = self._handler
        if handler is not None and data:
            handler.responseBody(data)

    def _chunkedReceived(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        pos = 0
        end = len(buf)
        while pos < end:
            state = self._chunkState
            if state == 1:
                take = min(self._chunkLeft, end - pos)
                self._deliver(buf[pos : pos + take])
                pos += take
                self._chunkLeft -= take
                if self._chunkLeft == 0:
                    self._chunkState = 2
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > 4096:
                    self._fail(UpstreamProtocolError("bad chunk encoding"))
                    return
                break
            line = buf[pos:eol]
            pos = eol + 2
            if state == 0:
                size = line.split(b";", 1)[0].strip()
                try:
                    if not _HEX_SIZE.fullmatch(size) or beyond63Bits(size, 16):
                        raise ValueError(size)
                    length = int(size, 16)
                except ValueError:
                    self._fail(UpstreamProtocolError("bad chunk size"))
                    return
                if length == 0:
                    self._chunkState = 3
                else:
                    self._chunkLeft = length
                    self._chunkState = 1
            elif state == 2:
                if line:
                    self._fail(UpstreamProtocolError("bad chunk encoding"))
                    return
                self._chunkState = 0
            elif not line:  # state 3: trailers end with an empty line
                self._buffer = b""
                self._finish()
                if pos < end:
                    self.reusable = False
                    if self.transport is not None:
                        self.transport.loseConnection()
                return
        self._buffer = buf[pos:]

    def _finish(self) -> None:
        handler = self._handler
        self._handler = None
        self._remaining = 0
        if handler is not None:
            handler.responseDone()
        if self.reusable and self.connected and self.onIdle is not None:
            self.onIdle(self)
        elif self.connected and self.transport is not None:
            self.transport.loseConnection()

    def _fail(self, error: Exception) -> None:
        handler = self._handler
        self._handler = None
        self.reusable = False
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        if handler is not None:
            handler.responseFailed(Failure(error), self._headDone)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.connected = False
        self.reusable = False
        handler = self._handler
        self._handler = None
        relayLost, self._relayLost = self._relayLost, None
        if relayLost is not None:
            relayLost()
        if handler is not None:
            if self._headDone and self._remaining == -2:
                handler.responseDone()
            else:
                handler.responseFailed(reason, self._headDone)
        if self.onLost is not None:
            self.onLost(self)
        waiters, self._lostWaiters = self._lostWaiters, []
        for d in waiters:
            d.callback(None)


def _statusLine(line: bytes) -> tuple[bytes, int, bytes]:
    """
    The version, status code and reason of a response's status line.
    """
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise UpstreamProtocolError("bad status line")
    try:
        status = int(parts[1])
    except ValueError:
        raise UpstreamProtocolError("bad status code") from None
    if status < 100 or status > 999:
        raise UpstreamProtocolError("bad status code")
    return parts[0], status, parts[2] if len(parts) > 2 else b""


def _field(line: bytes) -> tuple[bytes, bytes]:
    """
    The name and value of a header line.
    """
    name, sep, value = line.partition(b":")
    if not sep or not name or name[-1:] in (b" ", b"\t"):
        raise UpstreamProtocolError("bad header line")
    return name, value.strip(b" \t")


def endpointFor(reactor: IReactorTCP, host: str, port: int, timeout: float = 30) -> IStreamClientEndpoint:
    """
    A client endpoint for C{host:port}: a plain TCP endpoint for an IP
    literal (no name resolution), else a L{HostnameEndpoint}.
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


Connector = Callable[[], Deferred]

_SWEEP_SLACK = 0.001
"""Seconds before its deadline that the sweep counts a connection as expired."""


class UpstreamPool:
    """
    Persistent connections to one target.

    An idle connection is closed once it has been idle for as long as
    L{idleLimit} allows (before its target would close it: a request sent
    as the target closes it would be lost), by a timer on C{clock}; one the
    timer has not closed yet is not handed out either.

    @ivar idle: connections ready for a request, most recently used last.
    """

    def __init__(
        self,
        connect: Connector,
        clock: IReactorTime,
        maxIdle: int = 100,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        """
        @param connect: makes a new connection; fires with a connected
            L{UpstreamConnection}.
        @param clock: the idle time is measured on it.
        @param maxIdle: how many idle connections to keep.
        @param idleTimeout: how long a connection may stay idle when its
            target announced no timeout.
        """
        self._connect = connect
        self._clock = clock
        self._maxIdle = maxIdle
        self._idleTimeout = idleTimeout
        self.idle: list[UpstreamConnection] = []
        self._closed = False
        self._sweepCall: Optional[IDelayedCall] = None

    def takeIdle(self) -> Optional[UpstreamConnection]:
        """
        An idle connection for one request, or L{None} if there is none.
        It belongs to the caller until its response completes.
        """
        idle = self.idle
        if not idle:
            return None
        now = self._clock.seconds()
        while idle:
            conn = idle.pop()
            if not conn.connected or getattr(conn.transport, "disconnecting", False):
                continue  # closing: a request written to it would be lost unsent
            if now < conn.idleDeadline:
                return conn
            conn.transport.loseConnection()  # type: ignore[union-attr]
        return None

    def connect(self) -> Deferred:
        """
        A new connection for one request.

        @return: fires with an L{UpstreamConnection} that belongs to the
            caller until its response completes.
        """
        return self._connect().addCallback(self._adopt)

    def acquire(self) -> Deferred:
        """
        An idle connection if there is one, else a new one.
        """
        conn = self.takeIdle()
        return succeed(conn) if conn is not None else self.connect()

    def _adopt(self, conn: UpstreamConnection) -> UpstreamConnection:
        conn.onIdle = self._release
        conn.onLost = self._lost
        return conn

    def _release(self, conn: UpstreamConnection) -> None:
        limit = idleLimit(conn.keepAliveTimeout, self._idleTimeout)
        if self._closed or len(self.idle) >= self._maxIdle or limit <= 0:
            conn.transport.loseConnection()  # type: ignore[union-attr]
            return
        now = self._clock.seconds()
        conn.idleDeadline = now + limit
        self.idle.append(conn)
        self._sweepBy(conn.idleDeadline, now)

    def _sweepBy(self, deadline: float, now: float) -> None:
        """
        Make sure the sweep runs by C{deadline}.
        """
        call = self._sweepCall
        if call is None:
            self._sweepCall = self._clock.callLater(max(0.0, deadline - now), self._sweep)
        elif deadline < call.getTime():
            call.reset(max(0.0, deadline - now))

    def _sweep(self) -> None:
        """
        Close the idle connections whose time is up, and come back for the
        next one.
        """
        self._sweepCall = None
        now = self._clock.seconds()
        soon = now + _SWEEP_SLACK
        expired = [conn for conn in self.idle if conn.idleDeadline <= soon]
        if expired:
            self.idle = [conn for conn in self.idle if conn.idleDeadline > soon]
            for conn in expired:
                conn.transport.loseConnection()  # type: ignore[union-attr]
        if self.idle:
            self._sweepBy(min(conn.idleDeadline for conn in self.idle), now)

    def _lost(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> Deferred:
        """
        Close the idle connections and keep no more; fires once they are
        closed.
        """
        self._closed = True
        if self._sweepCall is not None:
            self._sweepCall.cancel()
            self._sweepCall = None
        idle, self.idle = self.idle, []
        return DeferredList([conn.close() for conn in idle])


__all__ = [
    "IResponseHandler",
    "MAX_INTERIM_RESPONSES",
    "RawHeaders",
    "UpstreamConnection",
    "UpstreamPool",
    "UpstreamProtocolError",
    "endpointFor",
]

