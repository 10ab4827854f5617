# -*- test-case-name: tests.test_http2 -*-
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

L{switchToHTTP2} hands a connection over to it, for ALPN C{h2} and h2c.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ISSLTransport
from twisted.web._http2 import _END_STREAM_SENTINEL, H2Connection, H2Stream

FLUSH_BUDGET = 256 * 1024
"""Most DATA bytes one connection sends per reactor iteration."""

CONNECTION_SPECIFIC = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
"""Response fields HTTP/2 forbids (RFC 9113 section 8.2.2)."""


class ProxyH2Stream(H2Stream):
    """
    One HTTP/2 stream: Twisted's L{H2Stream} writing headers ready for the
    wire, so that h2 need not normalise and re-validate them.
    """

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        fields = [(b":status", code)]
        append = fields.append
        for name, values in headers.getAllRawHeaders():
            name = name.lower()
            if name in CONNECTION_SPECIFIC:
                continue
            for value in values:
                append((name, value))
        self._conn.writeHeaderList(fields, self.streamID)


class ProxyH2Connection(H2Connection):
    """
    An HTTP/2 server connection that coalesces its writes; see the module
    docstring.  Built by L{switchToHTTP2}.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        super().__init__(reactor)
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config=config)
        # Streams with queued DATA (or END_STREAM) and window to send it, in
        # round-robin order: a dict used as an ordered set.
        self._ready: dict[int, None] = {}
        self._flushCall: Optional[IDelayedCall] = None
        self._host: Optional[IAddress] = None
        self._peer: Optional[IAddress] = None
        self._secure = False

    def connectionMade(self) -> None:
        self._host = self.transport.getHost()
        self._peer = self.transport.getPeer()
        self._secure = ISSLTransport(self.transport, None) is not None
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
        self._outboundStreamQueues[streamID] = deque()
        self.streams[streamID] = ProxyH2Stream(
            streamID, self, event.headers, self.requestFactory, self.site, self.factory
        )

    def _requestDone(self, streamID: int) -> None:
        del self._outboundStreamQueues[streamID]
        del self.streams[streamID]
        self._ready.pop(streamID, None)

    def _handlePriorityUpdate(self, event: h2.events.PriorityUpdated) -> None:
        """
        PRIORITY frames are ignored (RFC 9113 section 5.3.2): streams are
        served round-robin.
        """

    # Writing

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any, streamID: int
    ) -> None:
        fields = [(b":status", code)]
        for name, value in headers:
            name = name.lower()
            if name not in CONNECTION_SPECIFIC:
                fields.append((name, value))
        self.writeHeaderList(fields, streamID)

    def writeHeaderList(self, fields: list[tuple[bytes, bytes]], streamID: int) -> None:
        """
        Queue a response's HEADERS frame; C{fields} starts with C{:status}
        and is ready for the wire.
        """
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
        if self.remainingOutboundWindow(streamID) <= 0:
            self.streams[streamID].flowControlBlocked()

    def endRequest(self, streamID: int) -> None:
        self._outboundStreamQueues[streamID].append(_END_STREAM_SENTINEL)
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
            stream.windowUpdated()
        else:
            for stream in list(self.streams.values()):
                stream.windowUpdated()
                if self._outboundStreamQueues.get(stream.streamID):
                    self._ready[stream.streamID] = None
        if self._ready:
            self._scheduleFlush()

    def resumeProducing(self) -> None:
        super().resumeProducing()
        if self._ready:
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
        if self._ready and self._consumerBlocked is None:
            self.resetTimeout()
            self._sendQueuedData()
            if self._ready:
                self._scheduleFlush()  # over budget: go on next iteration
        self._tryToWriteControlData()

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
                if chunk is _END_STREAM_SENTINEL:
                    conn.end_stream(streamID)
                    self._requestDone(streamID)
                    continue
                size = min(conn.max_outbound_frame_size, conn.local_flow_control_window(streamID))
                if size <= 0:
                    del ready[streamID]  # until a WINDOW_UPDATE
                    continue
                if len(chunk) > size:
                    queue[0] = chunk[size:]
                    chunk = chunk[:size]
                else:
                    queue.popleft()
                last = len(queue) == 1 and queue[0] is _END_STREAM_SENTINEL
                conn.send_data(streamID, chunk, end_stream=last)
                budget -= len(chunk)
                if last:
                    self._requestDone(streamID)
                elif not queue:
                    del ready[streamID]

    def connectionLost(self, reason: Any, _cancelTimeouts: bool = True) -> None:
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flushCall = None
        self._ready.clear()
        super().connectionLost(reason, _cancelTimeouts=_cancelTimeouts)


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
    channel.callLater = generic._callLater
    generic._channel = channel
    channel.makeConnection(transport)
    networkProducer.registerProducer(channel, True)
    generic._negotiatedProtocol = b"h2"
    return channel


__all__ = ["CONNECTION_SPECIFIC", "FLUSH_BUDGET", "ProxyH2Connection", "ProxyH2Stream", "switchToHTTP2"]
