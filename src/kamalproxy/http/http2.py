# -*- test-case-name: tests.http.test_http2 -*-
"""
The HTTP/2 connection: Twisted's L{H2Connection} with a leaner send path.

Twisted's server sends one DATA frame per reactor iteration per connection
(a C{callLater(0)} loop walking an RFC 7540 priority tree) and writes each
response's HEADERS, DATA and END_STREAM to the transport separately.  Behind
a proxy that answers many small responses per connection that loop, not the
protocol, is what limits throughput.  L{ProxyH2Connection} keeps Twisted's
protocol handling (frame parsing, flow control, the reset-rate limit against
Rapid Reset, idle timeouts, control-frame buffering limits) and changes how
responses leave:

  - response frames are coalesced: HEADERS and DATA are queued in the h2
    state machine and written with one C{transport.write} when the reactor
    iteration that produced them ends;
  - streams with data to send are served round-robin (RFC 9113 deprecates
    RFC 7540's priority scheme; PRIORITY frames are accepted and ignored, so
    a client cannot grow a priority tree with them), each flush sending up
    to L{FLUSH_BUDGET} bytes before yielding to other connections;
  - a response's last DATA frame carries END_STREAM instead of an extra
    empty frame;
  - response headers are made HTTP/2-ready here (lower-case names, no
    connection-specific fields) rather than re-checked by h2 per response;
    request headers are still validated by h2;
  - the connection's addresses and security are read once, not per request.

It also behaves as a proxy needs where Twisted's server does not: a stream
whose window a SETTINGS frame opens resumes; response HEADERS made while the
client is not reading wait instead of counting as control frames (whose
flood limit would drop the connection); the idle timeout waits for open
streams; an aborted response is a RST_STREAM, not a clean end; a request
refused before its body is read is answered on its stream, which is then
reset with NO_ERROR unless its declared body fits the stream's initial
window (the client may send that much anyway), and body data still arriving
for it is dropped with its window given back.

And it ends connections as RFC 9113 says where Twisted and h2 do not
(L{ServerStateMachine}): a connection error's GOAWAY carries its own code
(COMPRESSION_ERROR for an undecodable header block, FRAME_SIZE_ERROR for a
SETTINGS ACK with a payload, PROTOCOL_ERROR for an invalid preface) and the
connection is then closed over TLS as over h2c; the client's GOAWAY lets the
streams open finish and PINGs be answered; the client's RST_STREAM for a
stream already answered, or a producer ending a stream already dropped, is
ignored; and L{ProxyH2Connection.loseConnection} (a shutdown) lets the
responses in flight finish, then says GOAWAY NO_ERROR with the last stream
processed and closes.

L{switchToHTTP2} hands a connection over to it, for ALPN C{h2} and h2c.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Optional

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
from hpack.exceptions import HPACKError, OversizedHeaderListError
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import connectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from kamalproxy.http import pages
from kamalproxy.http.fields import BAD_VALUE_BYTE
from kamalproxy.twistedcompat import END_STREAM_SENTINEL, H2Connection, H2Stream

_log = Logger()

FLUSH_BUDGET = 256 * 1024
"""Most DATA bytes one connection sends per reactor iteration."""

CONNECTION_SPECIFIC = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
"""Response fields HTTP/2 forbids (RFC 9113 section 8.2.2)."""


def wireFields(code: bytes, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """
    A response's HEADERS fields as HTTP/2 wants them: C{:status} first,
    lower-case names, no connection-specific fields.
    """
    fields = [(b":status", code)]
    append = fields.append
    for name, value in headers:
        name = name.lower()
        if name not in CONNECTION_SPECIFIC:
            append((name, value))
    return fields


class _CompressionError(h2.exceptions.ProtocolError):
    """
    A header block HPACK cannot decode (RFC 9113 section 4.3).
    """

    error_code = h2.errors.ErrorCodes.COMPRESSION_ERROR


class _FrameSizeError(h2.exceptions.ProtocolError):
    """
    A frame whose length its type forbids (RFC 9113 section 4.2).
    """

    error_code = h2.errors.ErrorCodes.FRAME_SIZE_ERROR


_SETTINGS = 0x4
_ACK = 0x1


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """
    h2's frame buffer, refusing a SETTINGS ACK with a payload as a
    FRAME_SIZE_ERROR (RFC 9113 section 6.5) where h2 says PROTOCOL_ERROR.
    """

    def __next__(self) -> Any:
        header = self._data[:9]
        if len(header) == 9 and header[3] == _SETTINGS and header[4] & _ACK and any(header[:3]):
            raise _FrameSizeError("SETTINGS frame with ACK and a payload")
        return super().__next__()


class ServerStateMachine(h2.connection.H2Connection):
    """
    h2's server-side connection state machine, with RFC 9113's error codes
    and GOAWAY where h2 differs:

      - an undecodable header block is a COMPRESSION_ERROR, a SETTINGS ACK
        with a payload a FRAME_SIZE_ERROR (h2: PROTOCOL_ERROR for both);
      - an invalid connection preface is answered with GOAWAY
        PROTOCOL_ERROR (h2 raises without queueing one);
      - the client's GOAWAY does not close the connection's state: it
        opens no new streams, but those open may finish and PINGs are
        still answered (h2 refuses every frame after it, and drops what
        was queued to send).

    It relies on h2's private C{FrameBuffer._data}, C{_receive_frame},
    C{_receive_goaway_frame} (through h2's frame dispatch table) and
    C{_terminate_connection}, all exercised by tests/http/test_http2.py.
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.incoming_buffer = _FrameBuffer(server=True)

    def receive_data(self, data: Any) -> list[h2.events.Event]:
        try:
            return super().receive_data(data)
        except h2.exceptions.ProtocolError:
            if self.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                # An invalid preface: the only error h2 raises before it
                # queues a GOAWAY.
                self._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            raise

    def _receive_frame(self, frame: Any) -> list[h2.events.Event]:
        try:
            return super()._receive_frame(frame)
        except h2.exceptions.ProtocolError as e:
            cause = e.__cause__
            if (
                type(e) is h2.exceptions.ProtocolError
                and isinstance(cause, HPACKError)
                and not isinstance(cause, OversizedHeaderListError)
            ):
                raise _CompressionError(str(e)) from cause
            raise

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = h2.errors.ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code  # an unknown code, kept as a number (as h2 does)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class ProxyH2Stream(H2Stream):
    """
    One HTTP/2 stream: Twisted's L{H2Stream} writing headers ready for the
    wire, so that h2 need not normalise and re-validate them.
    """

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        pairs = ((name, value) for name, values in headers.getAllRawHeaders() for value in values)
        self._conn.writeHeaderList(wireFields(code, pairs), self.streamID)

    def writeInterim(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """
        Send an interim (1xx) response: a HEADERS frame without END_STREAM,
        before the final response's (see L{kamalproxy.upstream.interim}).
        """
        self._conn.writeHeaderList(wireFields(b"%d" % status, headers), self.streamID)

    def refuse(self, status: int, reason: str) -> None:
        """
        Answer C{status} with its page at once, before the request body is
        read (e.g. 413), then reset the stream so that the client stops
        sending it; the connection's other streams go on.
        """
        _log.info(
            "Refused a request from {peer} with {status}: {reason}",
            peer=getattr(self.getPeer(), "host", "?"),
            status=status,
            reason=reason,
        )
        if self._request.startedWriting:
            self.abortConnection()  # a response is already on its way: cut it
            return
        body = pages.pageFor(status)
        self._conn.writeHeaderList(
            [
                (b":status", b"%d" % status),
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ],
            self.streamID,
        )
        self._conn.writeDataToStream(self.streamID, body)
        self._conn.endRequest(self.streamID)
        if not self._bodyFitsWindow():
            self._conn.resetAfterEnd(self.streamID)

    def _bodyFitsWindow(self) -> bool:
        """
        Whether the request declared a body no larger than the stream's
        initial window: the client may send all of it anyway, so it is
        read and dropped rather than the stream reset (some clients take a
        reset that comes before they have sent everything for an error,
        although the response is complete).
        """
        declared = self._request.requestHeaders.getRawHeaders(b"content-length")
        if not declared or not declared[0].isdigit():
            return False
        return int(declared[0]) <= self._conn.conn.local_settings.initial_window_size


class ProxyH2Connection(H2Connection):
    """
    An HTTP/2 server connection that coalesces its writes; see the module
    docstring.  Built by L{switchToHTTP2}.
    """

    requestFactory: Any  # set by switchToHTTP2 from the connection it takes over

    def __init__(self, reactor: IReactorTime) -> None:
        super().__init__(reactor)
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = ServerStateMachine(config=config)
        # Streams with queued DATA (or END_STREAM) and window to send it, in
        # round-robin order: a dict used as an ordered set.
        self._ready: dict[int, None] = {}
        # Streams with queued data but no window, until the client opens it
        # (WINDOW_UPDATE, or a SETTINGS change of the initial window).
        self._blocked: set[int] = set()
        # Streams to reset (NO_ERROR) once their response has ended: the
        # client is still sending a body nobody will read.
        self._resetAfterEnd: set[int] = set()
        # Response HEADERS made while the transport had paused us, sent
        # (in order) when it resumes: they are not control frames.
        self._pendingHeaders: deque[tuple[int, list[tuple[bytes, bytes]]]] = deque()
        self._flushCall: Optional[IDelayedCall] = None
        # What the connection is registered with as the transport's
        # producer (switchToHTTP2), to unregister before closing.
        self._networkProducer: Any = None
        # loseConnection was called: GOAWAY once no stream is open.
        self._closing = False
        self._goneAway = False
        self._lastStreamID = 0
        self._host: Any = None  # IAddress, once connected
        self._peer: Any = None
        self._secure = False

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        self._host = transport.getHost()
        self._peer = transport.getPeer()
        self._secure = ISSLTransport(transport, None) is not None
        super().connectionMade()

    def getHost(self) -> IAddress:
        return self._host

    def getPeer(self) -> IAddress:
        return self._peer

    def _isSecure(self) -> bool:
        return self._secure

    # Streams

    def _requestReceived(self, event: h2.events.RequestReceived) -> None:
        streamID = event.stream_id
        if self._closing:
            # Not processed: the client may retry it elsewhere (RFC 9113
            # section 8.7).
            self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        self._lastStreamID = streamID
        if any(BAD_VALUE_BYTE.search(value) for _, value in event.headers):
            # h2 refuses NUL, CR and LF in field values; the other control
            # bytes are no more valid in HTTP (RFC 9110 section 5.5) and
            # HTTP/1.1 refuses them too: a malformed request, its stream
            # reset (RFC 9113 section 8.1.1), never forwarded.
            _log.info(
                "Refused a request from {peer}: control bytes in a header value",
                peer=getattr(self._peer, "host", "?"),
            )
            self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        self._outboundStreamQueues[streamID] = deque()
        self.streams[streamID] = ProxyH2Stream(
            streamID, self, event.headers, self.requestFactory, self.site, self.factory
        )

    def _requestDone(self, streamID: int) -> None:
        del self._outboundStreamQueues[streamID]
        stream = self.streams.pop(streamID)
        # Request body held back while the stream was paused, never to be
        # read: give its share of the connection's window back.
        unread = sum(length for _, length in stream._inboundDataBuffer if length)
        if unread:
            stream._inboundDataBuffer.clear()
            self.conn.acknowledge_received_data(unread, streamID)
        self._ready.pop(streamID, None)
        self._blocked.discard(streamID)
        if streamID in self._resetAfterEnd:
            self._resetAfterEnd.discard(streamID)
            try:
                self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.NO_ERROR)
            except h2.exceptions.StreamClosedError:
                pass  # the client had finished sending
        if self._closing and not self.streams:
            self._scheduleFlush()  # the GOAWAY follows the last frames

    def resetAfterEnd(self, streamID: int) -> None:
        """
        Reset C{streamID} with NO_ERROR once its response is sent (RFC 9113
        section 8.1: a response before the whole request).
        """
        self._resetAfterEnd.add(streamID)

    def _requestDataReceived(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            # The response was already sent (e.g. a 413 before the body):
            # the rest of the body is dropped, its window given back.
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        stream.receiveDataChunk(event.data, event.flow_controlled_length)

    def _requestEnded(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.requestComplete()

    def _requestAborted(self, event: h2.events.StreamReset) -> None:
        if event.stream_id in self.streams:
            super()._requestAborted(event)
        # Else its response was already sent (the client reset its own,
        # still open, half of the stream): nothing to abort.

    _eventHandlers = {
        h2.events.RequestReceived: "_requestReceived",
        h2.events.DataReceived: "_requestDataReceived",
        h2.events.StreamEnded: "_requestEnded",
        h2.events.StreamReset: "_requestAborted",
        h2.events.WindowUpdated: "_handleWindowUpdate",
        h2.events.ConnectionTerminated: "_goAwayReceived",
    }
    """The method that handles each h2 event the connection acts on."""

    def dataReceived(self, data: bytes) -> None:
        """
        Twisted's event dispatch, but for the client's GOAWAY (see
        L{_goAwayReceived}) and what arrives once the connection is torn
        down or has said GOAWAY itself, which is dropped.  (PRIORITY
        frames are ignored: see L{_handlePriorityUpdate}.)
        """
        if self._goneAway or not self._stillProducing:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._terminate(Failure())
            return
        self.resetTimeout()
        for event in events:
            if not self._stillProducing:
                break
            handler = self._eventHandlers.get(type(event))
            if handler is not None:
                getattr(self, handler)(event)
        self._tryToWriteControlData()
        if self._blocked:
            self._unblockStreams()

    def _goAwayReceived(self, event: h2.events.ConnectionTerminated) -> None:
        """
        The client's GOAWAY.  With NO_ERROR it is closing gracefully: it
        opens no new streams, those open are answered, PINGs too, and it
        closes the connection (or the idle timeout does).  With an error,
        the connection ends now.
        """
        if event.error_code != h2.errors.ErrorCodes.NO_ERROR:
            self._terminate(Failure(ConnectionLost("Remote peer sent GOAWAY")))

    def _unblockStreams(self) -> None:
        """
        Streams waiting for window whose window opened (by WINDOW_UPDATE or
        by a SETTINGS change) are ready again, and their producers resumed.
        """
        for streamID in list(self._blocked):
            stream = self.streams.get(streamID)
            if stream is None:
                self._blocked.discard(streamID)
            elif self.conn.local_flow_control_window(streamID) > 0:
                self._blocked.discard(streamID)
                self._ready[streamID] = None
                stream.windowUpdated()
        if self._ready:
            self._scheduleFlush()

    def abortRequest(self, streamID: int) -> None:
        """
        End a stream with RST_STREAM (INTERNAL_ERROR) so that the client
        knows its response is incomplete (a target that failed mid-body, a
        drain deadline), and tell the request its connection is gone.
        """
        stream = self.streams.get(streamID)
        if stream is None:
            return
        try:
            self.conn.reset_stream(streamID, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
        except h2.exceptions.StreamClosedError:
            pass
        if self._tryToWriteControlData():
            self._requestDone(streamID)
            stream.connectionLost(Failure(ConnectionLost("HTTP/2 stream reset by the proxy")))

    def timeoutConnection(self) -> None:
        """
        The idle timeout: only for a connection with no request in flight,
        or one whose client stopped reading (a slow target is not idleness;
        its own response timeout applies).
        """
        if self.streams and self._consumerBlocked is None:
            self.setTimeout(self.timeOut)  # the timer that fired is spent: arm a new one
            return
        self._unregisterProducer()
        super().timeoutConnection()

    # Closing

    def loseConnection(self) -> None:
        """
        Close gracefully (a shutdown): the streams open are answered to
        their end, streams the client opens meanwhile are refused
        (REFUSED_STREAM), then a GOAWAY NO_ERROR names the last stream
        processed and the transport closes once it has sent everything.
        """
        if self._closing or not self._stillProducing:
            return
        self._closing = True
        self._scheduleFlush()

    def _goAway(self) -> None:
        """
        The end of L{loseConnection}: GOAWAY, written even if the client
        has stopped reading (the close waits for it), and close.
        """
        self._goneAway = True
        self.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=self._lastStreamID)
        pending = b"".join(self._bufferedControlFrames) + self.conn.data_to_send()
        self._bufferedControlFrames.clear()
        self._bufferedControlFrameBytes = 0
        self.transport.write(pending)  # type: ignore[union-attr]
        self._loseTransport()

    def _terminate(self, reason: Failure) -> None:
        """
        Tear the connection down after a connection error (its GOAWAY
        queued), as Twisted's does, but closing the transport so that TLS
        closes too (L{_loseTransport}).
        """
        if self._tryToWriteControlData():
            self._loseTransport()
            self.connectionLost(reason, _cancelTimeouts=False)

    def _loseTransport(self) -> None:
        self._unregisterProducer()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _unregisterProducer(self) -> None:
        """
        Stop being the transport's producer before closing it, as
        L{HTTPChannel.loseConnection} does: a TLS transport
        (L{TLSMemoryBIOProtocol.loseConnection}) does not close while a
        producer is registered with it, and switchToHTTP2 registered this
        connection.
        """
        producer, self._networkProducer = self._networkProducer, None
        if producer is not None:
            producer.unregisterProducer()

    def _handlePriorityUpdate(self, event: h2.events.PriorityUpdated) -> None:
        """
        PRIORITY frames are ignored (RFC 9113 section 5.3.2): streams are
        served round-robin.
        """

    # Writing

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any, streamID: int
    ) -> None:
        self.writeHeaderList(wireFields(code, headers), streamID)

    def writeHeaderList(self, fields: list[tuple[bytes, bytes]], streamID: int) -> None:
        """
        Queue a response's HEADERS frame; C{fields} starts with C{:status}
        and is ready for the wire.
        """
        if self._consumerBlocked is not None or self._pendingHeaders:
            self._pendingHeaders.append((streamID, fields))
            return
        try:
            self.conn.send_headers(streamID, fields)
        except h2.exceptions.StreamClosedError:
            return  # the client reset the stream; as Twisted's write() does
        self._scheduleFlush()

    def writeDataToStream(self, streamID: int, data: bytes) -> None:
        self._outboundStreamQueues[streamID].append(data)
        if self.conn.local_flow_control_window(streamID) > 0:
            self._ready[streamID] = None
            self._scheduleFlush()
        else:
            self._blocked.add(streamID)
        if self.remainingOutboundWindow(streamID) <= 0:
            self.streams[streamID].flowControlBlocked()

    def endRequest(self, streamID: int) -> None:
        queue = self._outboundStreamQueues.get(streamID)
        if queue is None:
            return  # the stream is gone (reset, or the connection lost): nothing to end
        queue.append(END_STREAM_SENTINEL)
        self._ready[streamID] = None
        self._scheduleFlush()

    def _handleWindowUpdate(self, event: h2.events.WindowUpdated) -> None:
        streamID = event.stream_id
        if streamID:
            stream = self.streams.get(streamID)
            if stream is None:
                return  # a late update for a finished stream
            if self._outboundStreamQueues[streamID]:
                self._ready[streamID] = None
                self._blocked.discard(streamID)
            stream.windowUpdated()
        else:
            for stream in list(self.streams.values()):
                stream.windowUpdated()
                if self._outboundStreamQueues.get(stream.streamID):
                    self._ready[stream.streamID] = None
                    self._blocked.discard(stream.streamID)
        if self._ready:
            self._scheduleFlush()

    def resumeProducing(self) -> None:
        super().resumeProducing()
        if self._ready or self._pendingHeaders:
            self._scheduleFlush()

    def _scheduleFlush(self) -> None:
        if self._flushCall is None and self._stillProducing:
            self._flushCall = self._reactor.callLater(0, self._sendPrioritisedData)

    def _sendPrioritisedData(self, *args: object) -> None:
        """
        Send what the streams have queued, round-robin and within their
        flow-control windows, then write all pending frames at once.
        (Twisted's name for its sending loop, which this replaces.)
        """
        self._flushCall = None
        if not self._stillProducing:
            return
        if self._pendingHeaders and self._consumerBlocked is None:
            self._sendPendingHeaders()
        if self._ready and self._consumerBlocked is None and not self._pendingHeaders:
            self.resetTimeout()
            self._sendQueuedData()
            if self._ready:
                self._scheduleFlush()  # over budget: go on next iteration
        self._tryToWriteControlData()
        if self._closing and not self.streams and not self._goneAway:
            self._goAway()

    def _sendPendingHeaders(self) -> None:
        pending, self._pendingHeaders = self._pendingHeaders, deque()
        for streamID, fields in pending:
            if streamID in self.streams:
                try:
                    self.conn.send_headers(streamID, fields)
                except h2.exceptions.StreamClosedError:
                    pass

    def _sendQueuedData(self) -> None:
        conn = self.conn
        queues = self._outboundStreamQueues
        ready = self._ready
        budget = FLUSH_BUDGET
        while ready and budget > 0:
            for streamID in list(ready):
                queue = queues[streamID]
                while queue and queue[0] == b"":
                    queue.popleft()
                if not queue:
                    del ready[streamID]
                    continue
                chunk = queue[0]
                if chunk is END_STREAM_SENTINEL:
                    conn.end_stream(streamID)
                    self._requestDone(streamID)
                    continue
                size = min(conn.max_outbound_frame_size, conn.local_flow_control_window(streamID))
                if size <= 0:
                    del ready[streamID]  # until the client opens the window
                    self._blocked.add(streamID)
                    continue
                if len(chunk) > size:
                    queue[0] = chunk[size:]
                    chunk = chunk[:size]
                else:
                    queue.popleft()
                last = len(queue) == 1 and queue[0] is END_STREAM_SENTINEL
                conn.send_data(streamID, chunk, end_stream=last)
                budget -= len(chunk)
                if last:
                    self._requestDone(streamID)
                elif not queue:
                    del ready[streamID]

    def connectionLost(self, reason: Failure = connectionDone, _cancelTimeouts: bool = True) -> None:
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flushCall = None
        self._ready.clear()
        self._blocked.clear()
        self._resetAfterEnd.clear()
        self._pendingHeaders.clear()
        super().connectionLost(reason, _cancelTimeouts=_cancelTimeouts)


def connectionOf(channel: Any) -> Any:
    """
    The connection a request's C{channel} belongs to: its
    L{ProxyH2Connection} for an HTTP/2 stream, else the channel itself.
    """
    return channel._conn if isinstance(channel, H2Stream) else channel


def switchToHTTP2(generic: Any, reactor: IReactorTime) -> ProxyH2Connection:
    """
    Hand the connection behind C{generic} (a L{_GenericHTTPChannelProtocol})
    from its HTTP/1.1 channel to a new L{ProxyH2Connection}, as Twisted does
    when ALPN picks C{h2}, and return it.
    """
    old = generic._channel
    networkProducer = old._networkProducer
    networkProducer.unregisterProducer()
    old.setTimeout(None)
    transport = old.transport
    channel = ProxyH2Connection(reactor)
    channel.requestFactory = generic._requestFactory
    channel.site = generic._site
    channel.factory = generic._factory
    channel.timeOut = generic._timeOut
    channel.callLater = generic._callLater  # type: ignore[method-assign]
    generic._channel = channel
    channel.makeConnection(transport)
    networkProducer.registerProducer(channel, True)
    channel._networkProducer = networkProducer
    generic._negotiatedProtocol = b"h2"
    return channel


__all__ = [
    "CONNECTION_SPECIFIC",
    "FLUSH_BUDGET",
    "ProxyH2Connection",
    "ProxyH2Stream",
    "ServerStateMachine",
    "connectionOf",
    "switchToHTTP2",
]
