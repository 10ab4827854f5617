# -*- test-case-name: tests.test_twistedcompat -*-
"""
Every private Twisted name kamal-proxy uses, in one place, each checked when
this module is imported.

Twisted renames or drops private names between releases without notice
(C{H2Stream.writeHeaders}' argument type changed between 24.3 and 24.7 with no
rename). Reaching them only through this module means an upgrade that breaks
one fails at start-up with a message naming it and the Twisted version,
instead of as a wrong answer under traffic; CI runs the suite against the
lowest Twisted that C{setup.cfg} allows and the newest.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import twisted
from twisted.internet import tcp
from twisted.internet.task import Clock
from twisted.web import http
from twisted.web.http_headers import Headers

SUPPORTED = ">= 26.10"


class IncompatibleTwisted(ImportError):
    """
    The installed Twisted lacks a private name kamal-proxy relies on.
    """


def _missing(what: str) -> IncompatibleTwisted:
    return IncompatibleTwisted(
        f"kamal-proxy needs Twisted's private {what}, which Twisted {twisted.__version__} "
        f"does not have (kamal-proxy supports Twisted {SUPPORTED})"
    )


def require(owner: Any, names: str, where: str) -> None:
    """
    Raise L{IncompatibleTwisted} unless C{owner} has every attribute in the
    space-separated C{names}; C{where} names C{owner} in the message.
    """
    for name in names.split():
        if not hasattr(owner, name):
            raise _missing(f"{where}.{name}")


def _importPrivate(module: str, names: str) -> dict[str, Any]:
    try:
        imported = __import__(module, fromlist=names.split())
    except ImportError:
        raise _missing(f"module {module}") from None
    require(imported, names, module)
    return {name: getattr(imported, name) for name in names.split()}


# --- private modules and classes -------------------------------------------

_h2 = _importPrivate("twisted.web._http2", "H2Connection H2Stream _END_STREAM_SENTINEL")
H2Connection = _h2["H2Connection"]
H2Stream = _h2["H2Stream"]
END_STREAM_SENTINEL = _h2["_END_STREAM_SENTINEL"]

GenericHTTPChannelProtocol = _importPrivate("twisted.web.http", "_GenericHTTPChannelProtocol")[
    "_GenericHTTPChannelProtocol"
]

# The PROXY protocol (listen/proxyprotocol.py): Twisted's parsers of a whole
# v1 line and a whole v2 header, and the error they raise. Framing, the
# allowlist and the header timeout are ours: Twisted's HAProxyProtocolWrapper
# closes a header split into reads shorter than 8 (v1) or 16 (v2) bytes and
# has neither.
_v1 = _importPrivate("twisted.protocols.haproxy._v1parser", "V1Parser")["V1Parser"]
_v2 = _importPrivate("twisted.protocols.haproxy._v2parser", "V2Parser")["V2Parser"]
InvalidProxyHeader = _importPrivate("twisted.protocols.haproxy._exceptions", "InvalidProxyHeader")[
    "InvalidProxyHeader"
]
require(_v2, "PREFIX", "V2Parser")
require(_v1.parse(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2"), "source destination", "V1Parser.parse()")
parseProxyV1 = _v1.parse
parseProxyV2 = _v2.parse
PROXY_V2_SIGNATURE: bytes = _v2.PREFIX

# --- private attributes ----------------------------------------------------

# Headers keeps its fields in a dict keyed by lower-case name; the request
# log and the forwarding headers read several fields per request, and
# getRawHeaders() re-encodes the name on every call.
require(Headers(), "_rawHeaders", "Headers")

# The proxied response's fields are put into Headers' dict directly (three
# addRawHeader calls per response showed in profiles), keyed and cleaned as
# addRawHeader does it.
# Names already canonicalised are looked up in the encoder's own cache
# first (a call of its encode() per field showed in profiles too).
_hh = _importPrivate("twisted.web.http_headers", "_nameEncoder _sanitizeLinearWhitespace")
require(_hh["_nameEncoder"], "_canonicalHeaderCache", "_nameEncoder")
_encodeName = _hh["_nameEncoder"].encode
_canonicalNames: dict[Any, bytes] = _hh["_nameEncoder"]._canonicalHeaderCache
_sanitizeValue = _hh["_sanitizeLinearWhitespace"]
del _hh

def _probeChannel() -> http.HTTPChannel:
    """
    An HTTPChannel on a memory transport that has read a request line, to
    check the attributes Twisted sets while a request is being received.
    """
    from twisted.internet.testing import StringTransport

    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"GET /probe HTTP/1.1\r\n")
    return channel


# ProxyChannel (http/channel.py) overrides these of HTTPChannel's methods and
# reads these attributes: the request line of the request being received
# (_command, _path, _version, read when the head has arrived, before the
# body), the body decoder, the pipelining flag, the buffer handed to a
# tunnel, and the producer the HTTP/2 switch takes over.
require(
    http.HTTPChannel,
    "_finishRequestBody _respondToBadRequestAndDisconnect allHeadersReceived allContentReceived",
    "HTTPChannel",
)
_probe = _probeChannel()
require(
    _probe,
    "_command _path _version _dataBuffer _handlingRequest _transferDecoder _networkProducer",
    "HTTPChannel()",
)
_probe.connectionLost(None)  # type: ignore[arg-type]
del _probe

# The HTTP/1.1-or-HTTP/2 wrapper: ProxyChannel's switch reads and replaces
# its channel and hands its factory's settings to the HTTP/2 connection.
require(
    GenericHTTPChannelProtocol(http.HTTPChannel()),
    "_channel _negotiatedProtocol _requestFactory _site _factory _timeOut _callLater",
    "_GenericHTTPChannelProtocol()",
)


# ProxyH2Connection (http/http2.py) overrides these of H2Connection's hooks
# (a rename would silently bypass the override) and drives its send path
# and control-frame limits through these attributes.
require(
    H2Connection,
    "_handlePriorityUpdate _handleWindowUpdate _isSecure _requestAborted _requestDataReceived"
    " _requestDone _requestEnded _requestReceived _sendPrioritisedData _terminate"
    " _tryToWriteControlData",
    "H2Connection",
)
require(
    H2Connection(reactor=Clock()),  # not the global reactor: importing us must not install one
    "conn _bufferedControlFrames _bufferedControlFrameBytes _consumerBlocked"
    " _outboundStreamQueues _stillProducing _streamCleanupCallbacks",
    "H2Connection()",
)

# The h2 state machine Twisted's HTTP/2 server uses: ServerStateMachine
# (http/http2.py) overrides two of its frame handlers, ends connections
# through its terminate step, and reads its frame buffer's bytes.
_h2c = _importPrivate("h2.connection", "H2Connection")["H2Connection"]
require(_h2c, "_receive_frame _receive_goaway_frame _terminate_connection", "h2.connection.H2Connection")
_fb = _importPrivate("h2.frame_buffer", "FrameBuffer")["FrameBuffer"]
require(_fb(server=True), "_data", "h2.frame_buffer.FrameBuffer()")
del _h2c, _fb


# kamalproxy/turnwrites.py asks a TCP transport to send its buffer itself
# (doWrite, as the reactor does when the socket is writable), so it must
# know whether the buffer is empty and whether the transport is closing.
require(tcp.Connection, "dataBuffer _writeDisconnecting", "tcp.Connection")


# --- the epoll reactor's dispatch -------------------------------------------

try:
    from twisted.internet import epollreactor
except ImportError:  # no epoll: not Linux
    pass
else:
    require(epollreactor.EPollReactor, "_doReadOrWrite", "twisted.internet.epollreactor.EPollReactor")


def epollDispatch(reactor: Any) -> tuple[Any, dict[int, Any], Callable[[Any, int, int], None]]:
    """
    An C{EPollReactor}'s epoll object, its selectables by file descriptor,
    and the method that hands one event to its selectable.
    """
    require(reactor, "_poller _selectables _doReadOrWrite", "EPollReactor")
    return reactor._poller, reactor._selectables, reactor._doReadOrWrite


def keepsWriteBuffer(transport: Any) -> bool:
    """
    Whether C{transport} buffers its writes as Twisted's TCP transports do
    (so that L{writeBuffered} can tell about it).
    """
    return hasattr(transport, "_tempDataLen") and hasattr(transport, "dataBuffer")


def writeBuffered(transport: Any) -> bool:
    """
    Whether C{transport} (see L{keepsWriteBuffer}) holds bytes not sent yet.
    """
    return bool(transport.dataBuffer or transport._tempDataLen)


def writeClosing(transport: Any) -> bool:
    """
    Whether C{transport} is closing (its whole connection or its writing
    side) once its buffer is sent.
    """
    return bool(transport.disconnecting or transport._writeDisconnecting)


def rawHeaders(headers: Headers) -> dict[bytes, list[bytes]]:
    """
    C{headers}' fields as a dict from name to values (read only), keyed as
    L{fieldKey} says.
    """
    return headers._rawHeaders  # type: ignore[no-any-return]


def addRawFields(headers: Headers, fields: Iterable[tuple[bytes, bytes]]) -> None:
    """
    Add C{fields} to C{headers}, as C{addRawHeader(name, value)} for each
    would.

    @raise InvalidHeaderName: a name is not a valid field name.
    """
    raw = headers._rawHeaders
    known = _canonicalNames
    for name, value in fields:
        if 13 in value or 10 in value:  # (b"\r" in value: 5x slower)
            value = _sanitizeValue(value)
        key = known.get(name) or _encodeName(name)
        values = raw.get(key)
        if values is None:
            raw[key] = [value]
        else:
            values.append(value)


def fieldKey(name: bytes) -> bytes:
    """
    The key under which L{Headers} stores the field C{name} in
    L{rawHeaders} (Twisted 26 canonicalises to C{Header-Case}; asked of
    Twisted itself, so a change of that rule is followed).
    """
    probe = Headers()
    probe.setRawHeaders(name, [b""])
    [key] = rawHeaders(probe)
    return key


def requestHead(channel: Any) -> tuple[bytes, bytes, bytes]:
    """
    The method, request target and version of the request whose head just
    arrived on C{channel}: Twisted's HTTP/1.1 channel keeps them as
    C{_command}, C{_path} and C{_version} until the request is complete,
    its HTTP/2 stream as C{command} and C{path}.
    """
    path = getattr(channel, "_path", None)
    if path is not None:
        return channel._command, path, channel._version
    return channel.command, channel.path, b"HTTP/2"


__all__ = [
    "addRawFields",
    "END_STREAM_SENTINEL",
    "GenericHTTPChannelProtocol",
    "H2Connection",
    "H2Stream",
    "IncompatibleTwisted",
    "InvalidProxyHeader",
    "PROXY_V2_SIGNATURE",
    "parseProxyV1",
    "parseProxyV2",
    "keepsWriteBuffer",
    "rawHeaders",
    "require",
    "requestHead",
    "writeBuffered",
    "writeClosing",
]
