# -*- test-case-name: tests.http.test_channel -*-
"""
The HTTP/1.1 connection in front of the router, hardened so that what
reaches an application is only what a strict parser would read the same way.

L{ProxyChannel} is Twisted's L{HTTPChannel} with:

  - size limits on the head (C{--max-request-line}: 414; C{--max-header-line},
    C{--max-header-bytes}, C{--max-headers}: 431);
  - strict framing: malformed request lines and headers, obs-fold, control
    bytes in header values, duplicate C{Content-Length}, a C{Content-Length}
    or chunk size beyond 63 bits, C{Content-Length} with
    C{Transfer-Encoding}, any transfer coding but C{chunked}, a missing or
    repeated C{Host}, and invalid chunked bodies (a bare LF ending one of
    their lines included) are all answered with 400 and the connection is
    closed, so no request can be smuggled behind another;
  - header values may carry obs-text (bytes 0x80-0xFF, RFC 9110 section
    5.5: UTF-8 names, cookies), passed on unchanged;
  - the request line and header lines may end with a bare LF (RFC 9112
    section 2.2), as in Go and nginx; a CR anywhere else in them is
    refused, and the head is passed on re-serialised with CRLF, so the
    application reads the same lines as the proxy did;
  - absolute-form targets (C{GET http://host/path HTTP/1.1}) rewritten to
    origin-form, their authority replacing the C{Host} header (RFC 9112
    section 3.2.2);
  - Thruster's timeouts on the injected clock: C{--http-idle-timeout}
    between requests, C{--http-read-timeout} for a whole request head and
    body (408), C{--http-write-timeout} for a client that stops reading.

Each refusal is a small HTML page (L{kamalproxy.http.pages}) with C{Connection:
close}, logged once with the peer address and the reason.

L{ConnectionLimiter} refuses connections beyond C{--max-connections}.

A connection that picks HTTP/2 (ALPN C{h2}, or with C{--h2c} a plain one that
opens with the HTTP/2 preface) is handed to L{kamalproxy.http.http2}.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Optional

import attr
from twisted.internet.interfaces import IAddress, IDelayedCall, INegotiated, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from twisted.web.http import H2_ENABLED

from kamalproxy.http import pages
from kamalproxy.http.fields import (
    BAD_VALUE_BYTE,
    FIELD_NAME,
    MAX_BODY_LENGTH,
    beyond63Bits,
    connectionTokens,
)
from kamalproxy.http.http2 import switchToHTTP2
from kamalproxy.twistedcompat import GenericHTTPChannelProtocol, addRawFields, fieldKey, rawHeaders

_log = Logger()

_CONNECTION = fieldKey(b"connection")

DEFAULT_MAX_REQUEST_LINE = 8192
DEFAULT_MAX_HEADER_LINE = 16384
DEFAULT_MAX_HEADER_BYTES = 65536
DEFAULT_MAX_HEADERS = 100
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_WRITE_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 10000

MAX_CHUNK_SIZE_LINE = 4096

"""The largest C{Content-Length} or chunk size accepted (as Go's 63 bits)."""

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The HTTP/2 connection preface (RFC 9113 section 3.4), sniffed for h2c."""

_BAD_TARGET_BYTE = re.compile(rb"[^\x21-\x7e]")
_BAD_REQUEST_LINE_BYTE = re.compile(rb"[^\x21-\x7e \r\n]")
_ABSOLUTE_FORM = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)\Z", re.DOTALL)
_AUTHORITY = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?\Z"
)
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}\Z")
_CHUNK_EXTENSIONS = re.compile(
    rb"""(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"""
    rb"""(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"))?)*\Z"""
)


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class ChannelLimits:
    """
    The daemon's per-connection limits; a timeout or C{maxConnections} of 0
    turns that limit off.

    @ivar maxRequestLine: bytes in the request line (414 beyond).
    @ivar maxHeaderLine: bytes in one header line (431 beyond).
    @ivar maxHeaderBytes: bytes in all header lines together (431 beyond).
    @ivar maxHeaders: header lines in a request (431 beyond).
    @ivar idleTimeout: seconds a connection may wait for a request.
    @ivar readTimeout: seconds from a request's first byte to its last.
    @ivar writeTimeout: seconds the client may leave our writes unread.
    @ivar maxConnections: connections open at once.
    """

    maxRequestLine: int = DEFAULT_MAX_REQUEST_LINE
    maxHeaderLine: int = DEFAULT_MAX_HEADER_LINE
    maxHeaderBytes: int = DEFAULT_MAX_HEADER_BYTES
    maxHeaders: int = DEFAULT_MAX_HEADERS
    idleTimeout: float = DEFAULT_IDLE_TIMEOUT
    readTimeout: float = DEFAULT_READ_TIMEOUT
    writeTimeout: float = DEFAULT_WRITE_TIMEOUT
    maxConnections: int = DEFAULT_MAX_CONNECTIONS


class MalformedChunkedBody(ValueError):
    """
    A chunked request body does not follow RFC 9112 section 7.1.
    """


def headerLineProblem(line: bytes) -> Optional[str]:
    """
    Why C{line} is not a valid C{name: value} field line, or L{None}.
    """
    return _fieldProblem(*line.partition(b":"))


# Field names already found to be tokens: the same few dozen come with every
# request, and a set lookup costs less than matching the pattern (bounded, so
# that made-up names cannot grow it).
_validNames: set[bytes] = set()
_MAX_VALID_NAMES = 1024
_MAX_REMEMBERED_NAME = 64


def _fieldProblem(name: bytes, colon: bytes, value: bytes) -> Optional[str]:
    """
    Why a field line cut into C{name}, C{colon} and C{value} at its first
    colon is not a valid one, or L{None}.
    """
    if not colon:
        return "malformed header line"
    if name not in _validNames:
        if not FIELD_NAME.match(name):
            return "malformed header line"
        if len(name) <= _MAX_REMEMBERED_NAME and len(_validNames) < _MAX_VALID_NAMES:
            _validNames.add(name)
    if BAD_VALUE_BYTE.search(value):
        return "control byte in a header value"
    return None


class ChunkedDecoder:
    """
    A strict decoder for the C{chunked} transfer coding: hexadecimal sizes of
    at most 16 digits and 63 bits, well-formed extensions, CRLF after every
    chunk, and trailer lines that are valid field lines (which are then
    dropped).  Every line ends with CRLF: a bare LF is refused as soon as it
    arrives (as Go does since CVE-2025-22871), since a parser in front of
    the proxy could read it otherwise.

    @param dataCallback: called with each piece of body data.
    @param finishCallback: called once, with the bytes after the body.
    @param maxTrailerBytes: bytes allowed in the trailer section.
    """

    def __init__(
        self,
        dataCallback: Callable[[bytes], None],
        finishCallback: Callable[[bytes], None],
        maxTrailerBytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        self._dataCallback = dataCallback
        self._finishCallback = finishCallback
        self._maxTrailerBytes = maxTrailerBytes
        self._buffer = bytearray()
        self._state = "size"
        self._remaining = 0
        self._trailerBytes = 0

    def dataReceived(self, data: bytes) -> None:
        """
        Decode more of the body.

        @raise MalformedChunkedBody: the body is not valid chunked data.
        """
        if self._state == "done":
            raise MalformedChunkedBody("data after the last chunk")
        self._buffer += data
        while self._buffer and self._state != "done":
            if not getattr(self, "_" + self._state)():
                return

    def _line(self, limit: int, what: str) -> Optional[bytes]:
        buffer = self._buffer
        end = buffer.find(b"\n")
        if end == -1:
            if len(buffer) > limit + 1:  # the last byte may be the CR
                raise MalformedChunkedBody(f"{what} too long")
            return None
        if buffer[end - 1 : end] != b"\r":
            raise MalformedChunkedBody(f"{what} ends with a bare LF")
        if end - 1 > limit:
            raise MalformedChunkedBody(f"{what} too long")
        line = bytes(buffer[: end - 1])
        del buffer[: end + 1]
        return line

    def _size(self) -> bool:
        line = self._line(MAX_CHUNK_SIZE_LINE, "chunk size line")
        if line is None:
            return False
        size, semicolon, extensions = line.partition(b";")
        if not _CHUNK_SIZE.match(size):
            raise MalformedChunkedBody("invalid chunk size")
        if semicolon and not _CHUNK_EXTENSIONS.match(semicolon + extensions):
            raise MalformedChunkedBody("invalid chunk extension")
        if beyond63Bits(size, 16):
            raise MalformedChunkedBody("chunk size over 63 bits")
        self._remaining = int(size, 16)
        self._state = "data" if self._remaining else "trailer"
        return True

    def _data(self) -> bool:
        piece = bytes(self._buffer[: self._remaining])
        del self._buffer[: len(piece)]
        self._remaining -= len(piece)
        if not self._remaining:
            self._state = "crlf"
        self._dataCallback(piece)
        return True

    def _crlf(self) -> bool:
        if not b"\r\n".startswith(bytes(self._buffer[:2])):
            raise MalformedChunkedBody("chunk data not followed by CRLF")
        if len(self._buffer) < 2:
            return False
        del self._buffer[:2]
        self._state = "size"
        return True

    def _trailer(self) -> bool:
        line = self._line(self._maxTrailerBytes - self._trailerBytes, "trailer section")
        if line is None:
            return False
        if line:
            self._trailerBytes += len(line) + 2
            problem = headerLineProblem(line)
            if problem is not None:
                raise MalformedChunkedBody(f"trailer: {problem}")
            return True
        self._state = "done"
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._finishCallback(rest)
        return False


def formatAddress(address: Optional[IAddress]) -> str:
    host = getattr(address, "host", None)
    if host is None:
        return "?" if address is None else str(address)
    port = getattr(address, "port", None)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peer(transport: Any) -> str:
    try:
        return formatAddress(transport.getPeer())
    except Exception:
        return "?"


class ProxyChannel(HTTPChannel):
    """
    A strict, size- and time-limited HTTP/1.1 connection (see the module
    docstring).

    @ivar limits: the L{ChannelLimits} applied.
    """

    # Lines of the head end with LF; lineReceived drops the CR before it.
    delimiter = b"\n"

    def __init__(
        self, limits: ChannelLimits = ChannelLimits(), clock: Optional[IReactorTime] = None
    ) -> None:
        """
        @param limits: the limits applied.
        @param clock: what the idle and read timeouts are measured on (the
            reactor whose C{callLater} the channel is given).
        """
        super().__init__()
        self.limits = limits
        self._seconds: Callable[[], float] = clock.seconds if clock is not None else time.monotonic
        timeouts = [t for t in (limits.idleTimeout, limits.readTimeout) if t]
        self._stride = min(timeouts) if timeouts else 0.0
        self._setLineLimit(limits.maxRequestLine)
        # Twisted's own head limits, no tighter than ours so that ours answer.
        self.maxHeaders = limits.maxHeaders
        self.totalHeadersSize = limits.maxRequestLine + limits.maxHeaderBytes + 2
        self._phase = "idle"  # "idle", "reading" (a request's head or body), "handling"
        self._refused = False
        self._closing = False
        self._lost = False
        # The idle or read timeout of the current phase: see _setDeadline.
        self._phaseCall: Optional[IDelayedCall] = None
        self._deadline = 0.0
        self._onDeadline: Optional[Callable[[], None]] = None
        self._writeCall: Optional[IDelayedCall] = None
        self._closeCall: Optional[IDelayedCall] = None
        self._host: Optional[IAddress] = None
        self._client: Optional[IAddress] = None
        self._secure: Optional[bool] = None
        self._tunnel: Any = None
        self._resetRequestState()

    def _resetRequestState(self) -> None:
        self._sawRequestLine = False
        self._headerCount = 0
        self._headerBytes = 0
        self._contentLengths = 0
        self._chunked = False
        self._hostCount = 0
        self._absoluteHost: Optional[bytes] = None
        self._parsing = "request line"
        self._setLineLimit(self.limits.maxRequestLine)

    def _setLineLimit(self, limit: int) -> None:
        # LineReceiver counts the CR before the LF as part of the line.
        self.MAX_LENGTH = limit + 1

    # TimeoutMixin: replaced by the idle/read/write timers below, since its
    # single timer is reset by every byte and so never ends a slow client.

    def setTimeout(self, period: Optional[float]) -> Optional[float]:
        previous = self.timeOut
        self.timeOut = period  # type: ignore[assignment]
        return previous

    def resetTimeout(self) -> None:
        pass

    # The connection

    def connectionMade(self) -> None:
        super().connectionMade()
        self._startIdle()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        self.stopTimers()
        if self._tunnel is not None:
            self._tunnel.clientLost()
        super().connectionLost(reason)

    def startTunnel(self, head: bytes, tunnel: Any) -> None:
        """
        The request was upgraded (C{101}): write the response C{head} and
        from now on hand every byte the client sends to C{tunnel} (a
        L{kamalproxy.http.tunnel.Tunnel}), including any that arrived after the
        request; no more HTTP on this connection, and no HTTP timeouts.
        """
        self.stopTimers()
        self._tunnel = tunnel
        pending = b"".join(self._dataBuffer)
        self._dataBuffer = []
        self.transport.write(head)  # type: ignore[union-attr]
        if pending:
            tunnel.fromClient(pending)

    def getHost(self) -> IAddress:
        """
        The local address, asked of the socket once per connection (every
        request reads it).
        """
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def getPeer(self) -> IAddress:
        """
        The client's address, asked of the transport once per connection
        (every request reads it, and a TCP transport makes a new address
        object each time).
        """
        if self._client is None:
            self._client = super().getPeer()
        return self._client

    def isSecure(self) -> bool:
        """
        Whether the connection is TLS, decided once per connection (an
        interface lookup that every request made several times).
        """
        if self._secure is None:
            self._secure = bool(super().isSecure())
        return self._secure

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """
        Write a response head as one piece: Twisted's hands the transport a
        sequence of some thirty pieces, each of which a TCP transport
        checks and counts on its own.
        """
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        self.transport.write(b"".join(head))  # type: ignore[union-attr]

    def stopTimers(self) -> None:
        """
        Cancel every timer, for when another protocol (HTTP/2) takes over
        the connection.
        """
        self._onDeadline = None
        for name in ("_phaseCall", "_writeCall", "_closeCall"):
            self._cancel(name)

    def loseConnection(self) -> None:
        """
        Close once what was written has been sent, aborting if the client
        leaves it unread for the write timeout.
        """
        if self._closing:
            return
        self._closing = True
        self._onDeadline = None
        self._cancel("_phaseCall")
        super().loseConnection()
        if self.limits.writeTimeout and not self._lost:
            self._closeCall = self.callLater(self.limits.writeTimeout, self._abort)

    def refuse(self, status: int, reason: str) -> None:
        """
        Answer C{status} with its page and C{Connection: close}, log it with
        C{reason}, and close the connection; nothing more is read from it.
        """
        if self._refused or self._closing:
            return
        self._refused = True
        if getattr(self.transport, "disconnecting", False):
            # Already answered and closed by the request (413, 503, ...).
            self.loseConnection()
            return
        _log.info(
            "Refused a request from {peer} with {status}: {reason}",
            peer=_peer(self.transport),
            status=status,
            reason=reason,
        )
        self.transport.write(pages.rawResponse(status))  # type: ignore[union-attr]
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's own checks (request line syntax, header names, a
        # non-numeric Content-Length, ...) end here.
        self.refuse(400, f"malformed {self._parsing}")

    # Timers

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None:
            if call.active():
                call.cancel()
            setattr(self, name, None)

    def _setDeadline(self, timeout: float, onDeadline: Optional[Callable[[], None]]) -> None:
        """
        Call C{onDeadline} C{timeout} seconds from now, unless the phase
        changes first (no call if C{timeout} is 0 or C{onDeadline} None).

        One delayed call serves every phase of the connection, so moving
        the deadline (twice per request) is two assignments, not a timer
        cancelled and a new one made: it is never armed for longer than
        the shortest timeout, so no later deadline can be sooner than it,
        and when it fires before the deadline it is armed again for what
        is left (or that shortest timeout).
        """
        if not timeout or onDeadline is None:
            self._onDeadline = None
            return
        self._deadline = self._seconds() + timeout
        self._onDeadline = onDeadline
        if self._phaseCall is None:
            self._phaseCall = self.callLater(self._stride, self._phaseTimer)

    def _phaseTimer(self) -> None:
        self._phaseCall = None
        onDeadline = self._onDeadline
        if onDeadline is None:
            return  # between timed phases: the next one arms it again
        remaining = self._deadline - self._seconds()
        if remaining > 1e-6:
            self._phaseCall = self.callLater(min(remaining, self._stride), self._phaseTimer)
            return
        self._onDeadline = None
        onDeadline()

    def _startIdle(self) -> None:
        self._phase = "idle"
        self._setDeadline(self.limits.idleTimeout, self._idleTimedOut)

    def _startReading(self) -> None:
        self._phase = "reading"
        self._setDeadline(self.limits.readTimeout, self._readTimedOut)

    def _idleTimedOut(self) -> None:
        _log.debug("Closing idle connection from {peer}", peer=_peer(self.transport))
        self.loseConnection()

    def _readTimedOut(self) -> None:
        if getattr(self.transport, "disconnecting", False):
            self._abort()  # answered and closed already, yet still not gone
            return
        self.refuse(408, f"request not received within {self.limits.readTimeout:g}s")

    def _abort(self) -> None:
        self._closeCall = None
        self._writeCall = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _writeTimedOut(self) -> None:
        self._writeCall = None
        _log.info(
            "Aborting connection from {peer}: it read nothing for {timeout}s",
            peer=_peer(self.transport),
            timeout=f"{self.limits.writeTimeout:g}",
        )
        self._abort()

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self.limits.writeTimeout and self._writeCall is None:
            self._writeCall = self.callLater(self.limits.writeTimeout, self._writeTimedOut)

    def resumeProducing(self) -> None:
        self._cancel("_writeCall")
        super().resumeProducing()

    # Parsing

    def dataReceived(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.fromClient(data)
            return
        if self._refused or self._closing:
            return
        if self._phase == "idle" and data:
            self._startReading()
        if not self._sawRequestLine and _BAD_REQUEST_LINE_BYTE.search(data.split(b"\n", 1)[0]):
            # Binary garbage or a TLS handshake on the HTTP port: no request
            # line can hold these bytes, so refuse now rather than wait for a
            # line end or the read timeout.
            self.refuse(400, "malformed request line")
            return
        super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._sawRequestLine:
            self.refuse(431, f"header line over {self.limits.maxHeaderLine} bytes")
        else:
            self.refuse(414, f"request line over {self.limits.maxRequestLine} bytes")

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if line.endswith(b"\r"):
            line = line[:-1]  # CRLF; without the CR, a bare LF (RFC 9112 section 2.2)
        if not self._sawRequestLine:
            self._requestLineReceived(line)
        elif line:
            self._headerLineReceived(line)
        else:
            if self._hostCount == 0 and self._version == b"HTTP/1.1":
                self.refuse(400, "no Host header")
                return
            if self._chunked and self._version != b"HTTP/1.1":
                self.refuse(400, "Transfer-Encoding in an HTTP/1.0 request")
                return
            super().lineReceived(line)

    def _requestLineReceived(self, line: bytes) -> None:
        if not line:
            # Twisted skips one (RFC 9112 section 2.2 "SHOULD"); kamal-proxy's
            # Go server and strict parsers refuse it.
            self.refuse(400, "empty line before the request line")
            return
        if len(line) > self.limits.maxRequestLine:
            self.refuse(414, f"request line over {self.limits.maxRequestLine} bytes")
            return
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[1] or _BAD_TARGET_BYTE.search(parts[1]):
            self.refuse(400, "malformed request line")
            return
        self._sawRequestLine = True
        self._setLineLimit(self.limits.maxHeaderLine)
        super().lineReceived(line)
        if self._refused:
            return
        self._parsing = "header"
        target = self._path
        if target.startswith(b"/") or (target == b"*" and self._command == b"OPTIONS"):
            return
        match = _ABSOLUTE_FORM.match(target)
        if match is None:
            self.refuse(400, "unsupported request target form")
            return
        scheme, authority, rest = match.groups()
        if scheme.lower() not in (b"http", b"https"):
            self.refuse(400, "request target with a scheme other than http(s)")
        elif not _AUTHORITY.match(authority):
            self.refuse(400, "invalid authority in the request target")
        elif b"#" in rest:
            self.refuse(400, "fragment in the request target")
        else:
            # RFC 9112 section 3.2.2: the target's authority is the host;
            # the Host header is ignored (replaced in allHeadersReceived).
            self._absoluteHost = authority
            self._path = rest if rest.startswith(b"/") else b"/" + rest

    def _headerLineReceived(self, line: bytes) -> None:
        limits = self.limits
        if line[:1] in (b" ", b"\t"):
            self.refuse(400, "obsolete line folding in the header")
            return
        if len(line) > limits.maxHeaderLine:
            self.refuse(431, f"header line over {limits.maxHeaderLine} bytes")
            return
        self._headerCount += 1
        if self._headerCount > limits.maxHeaders:
            self.refuse(431, f"more than {limits.maxHeaders} headers")
            return
        self._headerBytes += len(line) + 2
        if self._headerBytes > limits.maxHeaderBytes:
            self.refuse(431, f"headers over {limits.maxHeaderBytes} bytes")
            return
        name, colon, value = line.partition(b":")
        problem = _fieldProblem(name, colon, value)
        if problem is not None:
            self.refuse(400, problem)
            return
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            self._contentLengths += 1
            if self._contentLengths > 1:
                self.refuse(400, "more than one Content-Length header")
                return
            if self._chunked:
                self.refuse(400, "Content-Length with Transfer-Encoding")
                return
            if not value.isdigit():
                self.refuse(400, "invalid Content-Length")
                return
            if beyond63Bits(value, 10):
                self.refuse(400, "Content-Length over 63 bits")
                return
            super().lineReceived(line)  # Twisted sets the body's length from it
            return
        if name == b"transfer-encoding":
            if self._contentLengths:
                self.refuse(400, "Content-Length with Transfer-Encoding")
                return
            if self._chunked:
                self.refuse(400, "more than one Transfer-Encoding header")
                return
            if value.lower() != b"chunked":
                self.refuse(400, "unsupported Transfer-Encoding")
                return
            self._chunked = True
            super().lineReceived(line)
            return
        if name == b"host":
            self._hostCount += 1
            if self._hostCount > 1:
                self.refuse(400, "more than one Host header")
                return
        # Checked above as strictly as Twisted would (a token name, no CR,
        # LF or NUL in the value, limits tighter than its own), so stored
        # as its headerReceived stores it, without parsing the line again.
        addRawFields(self.requests[-1].requestHeaders, ((name, value),))

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        # Twisted reads only the first Connection header and splits it on
        # spaces, so "Connection: close,foo" would keep the connection open.
        tokens = connectionTokens(rawHeaders(request.requestHeaders).get(_CONNECTION))
        if version != b"HTTP/1.1":
            return False
        if b"close" in tokens:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return True

    def allHeadersReceived(self) -> None:
        if self._refused:
            return
        request = self.requests[-1]
        if self._absoluteHost is not None:
            request.requestHeaders.setRawHeaders(b"host", [self._absoluteHost])
        if self._chunked:
            self._parsing = "chunked body"
            self._transferDecoder = ChunkedDecoder(
                request.handleContentChunk,
                self._finishRequestBody,
                self.limits.maxHeaderBytes,
            )
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._handlingRequest and isinstance(self._transferDecoder, ChunkedDecoder):
            try:
                self._transferDecoder.dataReceived(data)
            except MalformedChunkedBody as e:
                self.refuse(400, f"invalid chunked body: {e}")
            return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._onDeadline = None  # no read timeout while the request is handled
        self._phase = "handling"
        self._resetRequestState()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        persistent = self.persistent
        if persistent:
            self._phase = "idle"
        super().requestDone(request)
        if persistent and self._phase == "idle" and not self._closing:
            if self._buffer:  # the next request's first bytes are already in
                self._startReading()
            else:
                self._startIdle()


class _ProxyChannelProtocol(GenericHTTPChannelProtocol):  # type: ignore[misc]
    """
    Twisted's HTTP/1.1-or-HTTP/2 switch around a L{ProxyChannel}, with
    cleartext HTTP/2 (h2c) by prior knowledge.
    """

    _negotiatedProtocol: Optional[bytes]

    def __init__(self, channel: ProxyChannel, h2c: bool = False) -> None:
        super().__init__(channel)
        # The first bytes, kept while they may still be the HTTP/2 preface
        # (only when cleartext HTTP/2 is on); None once decided.
        self._h2cBuffer: Optional[bytes] = b"" if h2c and H2_ENABLED else None

    def makeConnection(self, transport: Any) -> None:
        self._channel.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self._negotiatedProtocol is None:
            transport = self._channel.transport
            if getattr(transport, "negotiatedProtocol", None) == b"h2":
                self._startHTTP2()  # TLS with ALPN "h2"
            elif self._h2cBuffer is not None and not INegotiated.providedBy(transport):
                data = self._h2cBuffer + data
                if not H2_PREFACE.startswith(data[: len(H2_PREFACE)]):
                    self._negotiatedProtocol = b"http/1.1"
                elif len(data) < len(H2_PREFACE):
                    self._h2cBuffer = data  # may still be the preface
                    return
                else:
                    self._startHTTP2()  # h2c with prior knowledge
                self._h2cBuffer = None
            else:
                self._negotiatedProtocol = b"http/1.1"
        self._channel.dataReceived(data)

    def _startHTTP2(self) -> None:
        """
        Hand the connection to L{ProxyH2Connection}: the client chose HTTP/2,
        by ALPN or (h2c) by opening with the HTTP/2 preface.
        """
        old = self._channel
        if isinstance(old, ProxyChannel):
            old.stopTimers()  # HTTP/2 has its own idle timeout
        switchToHTTP2(self, self._factory.reactor)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._channel.connectionLost(reason)


def buildChannelProtocol(site: Any) -> _ProxyChannelProtocol:
    """
    A connection for C{site}, to be its factory's C{protocol}: a
    L{ProxyChannel} with C{site.limits}.
    """
    return _ProxyChannelProtocol(
        ProxyChannel(getattr(site, "limits", None) or ChannelLimits(), getattr(site, "clock", None)),
        bool(getattr(site, "h2c", False)),
    )


__all__ = [
    "MAX_BODY_LENGTH",
    "ChannelLimits",
    "ChunkedDecoder",
    "MalformedChunkedBody",
    "ProxyChannel",
    "beyond63Bits",
    "buildChannelProtocol",
    "headerLineProblem",
]
