"""
Tests for L{kamalproxy.http.http2}: the HTTP/2 connection a client gets by ALPN
C{h2} or h2c, driven by a real h2 client state machine over a
L{StringTransport} and a L{MemoryReactorClock}.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import hyperframe.frame
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import ssl
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import alsoProvides

from kamalproxy.http.channel import H2_PREFACE
from kamalproxy.http.http2 import FLUSH_BUDGET, ProxyH2Connection
from kamalproxy.upstream.interim import writeInterim
from kamalproxy.http.site import ProxySite

from .._helpers import FakeTransport, connect
from tests.tls.test_sni import selfSigned


class _Body(Resource):
    """
    Answers every request with C{size} bytes of C{b"x"}, with a
    C{Connection} field a handler might set, or leaves it open when
    C{size} is None (the test finishes it through C{pending}).
    """

    isLeaf = True

    def __init__(self, size: Optional[int]) -> None:
        super().__init__()
        self.size = size
        self.pending: list[Any] = []

    def render(self, request: Any) -> Any:
        request.setHeader(b"Connection", b"keep-alive")
        request.setHeader(b"X-Answer", b"42")
        if self.size is None:
            self.pending.append(request)
            return NOT_DONE_YET
        return b"x" * self.size


class _WriteCountingTransport(StringTransport):
    """
    A L{StringTransport} that records the size of each C{write}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    @property
    def writes(self) -> int:
        return len(self.sizes)

    def write(self, data: bytes) -> None:
        self.sizes.append(len(data))
        super().write(data)

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class _Client:
    """
    An HTTP/2 client (h2's state machine) talking to a L{ProxySite} with
    h2c on, over a L{StringTransport}.
    """

    def __init__(self, resource: Resource, settings: Optional[dict[int, int]] = None) -> None:
        self.clock = MemoryReactorClock()
        site = ProxySite(resource, self.clock)
        site.h2c = True
        self.protocol = site.buildProtocol(None)
        self.transport = _WriteCountingTransport()
        self.protocol.makeConnection(self.transport)
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.bodies: dict[int, bytes] = {}
        self.headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.ended: set[int] = set()
        self.events: list[Any] = []
        self.send()
        self.receive()

    @property
    def connection(self) -> ProxyH2Connection:
        return self.protocol._channel

    def send(self) -> None:
        self.protocol.dataReceived(self.h2.data_to_send())

    def receive(self, autoAcknowledge: bool = True) -> list[Any]:
        """
        Let the reactor iteration end, read what the server wrote and
        return its events (DATA acknowledged unless told otherwise).
        """
        self.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        events = self.h2.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = list(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
                if autoAcknowledge:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
        self.events.extend(events)
        pending = self.h2.data_to_send()
        if pending:
            self.protocol.dataReceived(pending)
        return events

    def post(self, length: int | None = None) -> int:
        """
        Open a POST request's stream, its body (of C{length} bytes, when
        given) still to come; return its ID.
        """
        streamID = self.h2.get_next_available_stream_id()
        headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.test"), (b":path", b"/")]
        if length is not None:
            headers.append((b"content-length", b"%d" % length))
        self.h2.send_headers(streamID, headers)
        self.send()
        return streamID

    def get(self, count: int = 1) -> list[int]:
        """
        Send C{count} GET requests in one write; return their stream IDs.
        """
        ids = []
        for _ in range(count):
            streamID = self.h2.get_next_available_stream_id()
            self.h2.send_headers(
                streamID,
                [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"),
                 (b":path", b"/")],
                end_stream=True,
            )
            ids.append(streamID)
        self.send()
        return ids


def _frames(events: list[Any], kind: type, streamID: int) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and e.stream_id == streamID]


class SwitchTests(SynchronousTestCase):
    """
    A connection that chooses HTTP/2 is served by L{ProxyH2Connection}.
    """

    def test_h2cUsesProxyConnection(self) -> None:
        """
        The h2c preface hands the connection to L{ProxyH2Connection}, with
        the site's reactor, addresses and security read once.
        """
        client = _Client(_Body(3))
        connection = client.connection
        self.assertIsInstance(connection, ProxyH2Connection)
        self.assertIs(connection._reactor, client.clock)
        self.assertEqual(connection.getHost(), client.transport.getHost())
        self.assertEqual(connection.getPeer(), client.transport.getPeer())
        self.assertFalse(connection._isSecure())

    def test_alpnUsesProxyConnection(self) -> None:
        """
        A TLS transport that negotiated C{h2} by ALPN gets the same
        connection class, and it reports itself secure.
        """
        from zope.interface import alsoProvides
        from twisted.internet.interfaces import ISSLTransport

        clock = MemoryReactorClock()
        site = ProxySite(_Body(3), clock)
        protocol = site.buildProtocol(None)
        transport = _WriteCountingTransport()
        alsoProvides(transport, ISSLTransport)
        transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        protocol.dataReceived(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        self.assertIsInstance(protocol._channel, ProxyH2Connection)
        self.assertTrue(protocol._channel._isSecure())


class ResponseTests(SynchronousTestCase):
    """
    Responses: complete, HTTP/2-clean headers, frames coalesced.
    """

    def test_manyStreamsOneWrite(self) -> None:
        """
        Ten requests answered in one reactor iteration leave in one
        transport write, each complete and each ended by its only DATA
        frame (no extra empty frame).
        """
        client = _Client(_Body(1000))
        before = client.transport.writes
        ids = client.get(10)
        self.assertEqual(client.transport.writes, before + 1)  # SETTINGS/WINDOW ack only
        client.clock.advance(0)
        self.assertEqual(client.transport.writes, before + 2)
        events = client.receive()
        for streamID in ids:
            self.assertEqual(client.bodies[streamID], b"x" * 1000)
            data = _frames(events, h2.events.DataReceived, streamID)
            self.assertEqual(len(data), 1)
            self.assertIsNotNone(data[0].stream_ended)
        self.assertEqual(client.ended, set(ids))
        self.assertEqual(client.connection.streams, {})
        self.assertEqual(client.connection._outboundStreamQueues, {})

    def test_headersReadyForTheWire(self) -> None:
        """
        Response field names are lower case and connection-specific fields
        (here C{Connection}) are not sent.
        """
        client = _Client(_Body(1))
        [streamID] = client.get()
        client.receive()
        names = [name for name, _ in client.headers[streamID]]
        self.assertEqual(names[0], b":status")
        self.assertIn((b"x-answer", b"42"), client.headers[streamID])
        self.assertNotIn(b"connection", names)
        self.assertEqual(names, [name.lower() for name in names])

    def test_emptyBody(self) -> None:
        """
        A response with no body still ends its stream.
        """
        client = _Client(_Body(0))
        [streamID] = client.get()
        client.receive()
        self.assertIn(streamID, client.ended)
        self.assertEqual(client.bodies.get(streamID, b""), b"")

    def test_laterResponse(self) -> None:
        """
        A response written after the request's iteration (as a proxied one
        is) is flushed at the end of the iteration that wrote it.
        """
        resource = _Body(None)
        client = _Client(resource)
        [streamID] = client.get()
        client.receive()
        self.assertNotIn(streamID, client.headers)
        [request] = resource.pending
        request.write(b"hello ")
        request.write(b"world")
        request.finish()
        client.receive()
        self.assertEqual(client.bodies[streamID], b"hello world")
        self.assertIn(streamID, client.ended)

    def test_interimResponse(self) -> None:
        """
        L{writeInterim} sends an interim response (C{103}) as a HEADERS
        frame that does not end the stream, lower-case and before the
        final response; once the final response has started, no more.
        """
        resource = _Body(None)
        client = _Client(resource)
        [streamID] = client.get()
        client.receive()
        [request] = resource.pending
        hints = [(b"Link", b"</a.css>; rel=preload; as=style")]
        self.assertTrue(writeInterim(request, 103, hints))
        events = client.receive()
        [interim] = _frames(events, h2.events.InformationalResponseReceived, streamID)
        self.assertEqual(
            interim.headers, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload; as=style")]
        )
        self.assertNotIn(streamID, client.headers)
        self.assertNotIn(streamID, client.ended)
        request.write(b"body")
        self.assertFalse(writeInterim(request, 103, hints))
        request.finish()
        events = client.receive()
        self.assertEqual(_frames(events, h2.events.InformationalResponseReceived, streamID), [])
        self.assertEqual(dict(client.headers[streamID])[b":status"], b"200")
        self.assertEqual(client.bodies[streamID], b"body")
        self.assertIn(streamID, client.ended)


class FlowControlTests(SynchronousTestCase):
    """
    Flow control and fairness between streams.
    """

    def test_windowRespected(self) -> None:
        """
        No more than the client's window is sent; the rest follows its
        WINDOW_UPDATE, and the stream ends once all is sent.
        """
        client = _Client(_Body(5000), {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        [streamID] = client.get()
        client.receive(autoAcknowledge=False)
        self.assertEqual(len(client.bodies[streamID]), 1000)
        self.assertNotIn(streamID, client.ended)
        client.receive(autoAcknowledge=False)  # nothing more without a window
        self.assertEqual(len(client.bodies[streamID]), 1000)
        for _ in range(5):
            client.h2.acknowledge_received_data(1000, streamID)
            client.send()
            client.receive(autoAcknowledge=False)
        self.assertEqual(client.bodies[streamID], b"x" * 5000)
        self.assertIn(streamID, client.ended)

    def test_producerPausedByWindow(self) -> None:
        """
        A streaming producer writing to a stream is paused when the window
        is used up and resumed when the client opens it.
        """
        resource = _Body(None)
        client = _Client(resource, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
        [streamID] = client.get()
        client.receive()
        [request] = resource.pending
        calls: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

            def stopProducing(self) -> None:
                calls.append("stop")

        request.registerProducer(Producer(), True)
        request.write(b"y" * 150)
        self.assertEqual(calls, ["pause"])
        client.receive()  # 100 bytes arrive and are acknowledged
        self.assertEqual(calls, ["pause", "resume"])
        self.assertEqual(client.bodies[streamID], b"y" * 100)

    def test_roundRobin(self) -> None:
        """
        Two large responses are interleaved frame by frame, not sent one
        after the other.
        """
        client = _Client(_Body(16384 * 3))
        first, second = client.get(2)
        events = client.receive()
        order = [e.stream_id for e in events if isinstance(e, h2.events.DataReceived)]
        self.assertEqual(order[:4], [first, second, first, second])

    def test_budgetPerIteration(self) -> None:
        """
        One connection sends at most L{FLUSH_BUDGET} bytes per reactor
        iteration (plus one frame); the rest follows in later iterations.
        """
        size = FLUSH_BUDGET * 2
        client = _Client(
            _Body(size),
            {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1},
        )
        client.h2.increment_flow_control_window(2**30)
        client.send()
        client.transport.sizes.clear()
        [streamID] = client.get()
        client.receive()
        self.assertEqual(len(client.bodies[streamID]), size)
        self.assertIn(streamID, client.ended)
        dataWrites = [n for n in client.transport.sizes if n > 1000]
        self.assertGreaterEqual(len(dataWrites), 2)
        self.assertLessEqual(max(dataWrites), FLUSH_BUDGET + 16384 + 1000)

    def test_transportPaused(self) -> None:
        """
        While the transport has paused the connection, no DATA is sent;
        it goes out when the transport resumes it.
        """
        client = _Client(_Body(2000))
        client.connection.pauseProducing()
        [streamID] = client.get()
        client.receive()
        self.assertNotIn(streamID, client.bodies)
        client.connection.resumeProducing()
        client.receive()
        self.assertEqual(client.bodies[streamID], b"x" * 2000)


class ProtectionTests(SynchronousTestCase):
    """
    What Twisted's server protects against stays protected.
    """

    def test_priorityFramesIgnored(self) -> None:
        """
        PRIORITY frames for streams that never open add no state.
        """
        client = _Client(_Body(1))
        for streamID in range(101, 2001, 2):
            client.h2.prioritize(streamID, weight=16)
        client.send()
        self.assertEqual(client.connection._ready, {})
        self.assertEqual(client.connection.streams, {})

    def test_controlBytesInHeaderValueRefused(self) -> None:
        """
        A request whose header value holds a control byte (other than
        HTAB; h2 itself refuses NUL, CR and LF) is reset with
        PROTOCOL_ERROR and never reaches the resource, as over HTTP/1.1;
        obs-text passes, and the connection goes on serving.
        """
        seen: list[bytes] = []

        class Recorder(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                seen.append(request.getHeader(b"x-name"))
                return b"ok"

        client = _Client(Recorder())
        for value in (b"a\x01b", b"a\x7fb", b"Jos\xc3\xa9"):
            streamID = client.h2.get_next_available_stream_id()
            client.h2.send_headers(
                streamID,
                [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"),
                 (b":path", b"/"), (b"x-name", value)],
                end_stream=True,
            )
            client.send()
            events = client.receive()
            resets = _frames(events, h2.events.StreamReset, streamID)
            if value.startswith(b"Jos"):
                self.assertEqual(resets, [])
            else:
                self.assertEqual([r.error_code for r in resets], [h2.errors.ErrorCodes.PROTOCOL_ERROR], value)
        self.assertEqual(seen, [b"Jos\xc3\xa9"])

    def test_resetWithQueuedData(self) -> None:
        """
        A stream the client resets while its response waits for window is
        forgotten, and the connection goes on serving others.
        """
        client = _Client(_Body(3000), {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        [streamID] = client.get()
        client.receive(autoAcknowledge=False)
        client.h2.reset_stream(streamID, h2.errors.ErrorCodes.CANCEL)
        client.send()
        self.assertNotIn(streamID, client.connection.streams)
        client.clock.advance(0)
        [other] = client.get()
        client.h2.acknowledge_received_data(1000, streamID)
        client.receive()
        self.assertEqual(client.bodies[other], b"x" * 1000)

    def test_rapidResetStillLimited(self) -> None:
        """
        A flood of stream resets (HTTP/2 Rapid Reset) ends the connection
        with GOAWAY ENHANCE_YOUR_CALM, as Twisted's server does.
        """
        client = _Client(_Body(None))
        for _ in range(ProxyH2Connection._resetTokenBurst + 5):
            [streamID] = client.get()
            client.h2.reset_stream(streamID, h2.errors.ErrorCodes.CANCEL)
        client.send()
        events = client.receive()
        goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        self.assertEqual(goaway[0].error_code, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertTrue(client.transport.disconnecting)

    def test_lostConnectionCancelsFlush(self) -> None:
        """
        Losing the connection with a flush pending cancels it and drops
        every stream.
        """
        resource = _Body(None)
        client = _Client(resource)
        client.get(3)
        client.receive()
        for request in resource.pending:
            request.write(b"partial")
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        client.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(client.clock.getDelayedCalls(), [])
        self.assertEqual(client.connection.streams, {})
        self.assertEqual(client.connection._ready, {})


class RobustnessTests(SynchronousTestCase):
    """
    Cases found by driving a real daemon over HTTP/2 (see
    tests/integration/test_http2.py), pinned down here.
    """

    def test_windowOpenedBySettings(self) -> None:
        """
        A client that starts with a zero stream window and opens it with
        SETTINGS (not WINDOW_UPDATE) gets its response.
        """
        client = _Client(_Body(3000), {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        [streamID] = client.get()
        client.receive()
        self.assertNotIn(streamID, client.bodies)
        client.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
        client.send()
        client.receive()
        self.assertEqual(client.bodies[streamID], b"x" * 3000)
        self.assertIn(streamID, client.ended)

    def test_idleTimeoutWaitsForOpenStreams(self) -> None:
        """
        The idle timeout does not end a connection whose request is still
        being answered (a slow target); once it is answered, it does.
        """
        resource = _Body(None)
        client = _Client(resource)
        client.connection.timeOut = 5
        client.connection.resetTimeout()
        [streamID] = client.get()
        client.receive()
        client.clock.advance(30)
        self.assertFalse(client.transport.disconnecting)
        [request] = resource.pending
        request.write(b"late")
        request.finish()
        client.receive()
        self.assertEqual(client.bodies[streamID], b"late")
        client.clock.advance(6)
        self.assertTrue(client.transport.disconnecting)

    def test_headersWhilePausedAreNotControlFrames(self) -> None:
        """
        Responses that become ready while the client is not reading do not
        count against the control-frame flood limit; they are sent, in
        order, when it reads again.
        """
        resource = _Body(None)
        client = _Client(resource)
        ids = client.get(90)
        client.receive()
        client.connection.pauseProducing()
        for request in resource.pending:
            request.setHeader(b"x-padding", os.urandom(200).hex().encode())  # unique: HPACK cannot shrink it
            request.write(b"ok")
            request.finish()
        client.clock.advance(0)
        self.assertTrue(client.transport.connected)
        self.assertFalse(client.transport.disconnecting)
        client.connection.resumeProducing()
        client.receive()
        self.assertEqual({i: client.bodies.get(i) for i in ids}, {i: b"ok" for i in ids})

    def test_abortResetsStream(self) -> None:
        """
        Aborting a response mid-body (a target that died) resets the stream
        with INTERNAL_ERROR, so the client does not take the truncated body
        for complete, and the request hears its connection is gone.
        """
        resource = _Body(None)
        client = _Client(resource)
        [streamID] = client.get()
        client.receive()
        [request] = resource.pending
        lost: list[Any] = []
        request.notifyFinish().addErrback(lost.append)
        request.write(b"partial")
        client.receive()
        request.channel.abortConnection()
        events = client.receive()
        [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
        self.assertEqual(reset.error_code, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.assertNotIn(streamID, client.ended)
        self.assertEqual(len(lost), 1)
        self.assertEqual(client.connection.streams, {})

    def test_refusedBeforeBody(self) -> None:
        """
        A stream refused before its body is read (e.g. 413) gets its page,
        then a NO_ERROR reset so the client stops sending; data still in
        flight for it is dropped and the connection keeps serving.
        """
        client = _Client(_Body(2))
        streamID = client.post()
        client.connection.streams[streamID].refuse(413, "too large")
        events = client.receive()
        self.assertEqual(dict(client.headers[streamID])[b":status"], b"413")
        self.assertIn(streamID, client.ended)
        [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
        self.assertEqual(reset.error_code, h2.errors.ErrorCodes.NO_ERROR)
        [other] = client.get()
        client.receive()
        self.assertEqual(client.bodies[other], b"xx")

    def test_refusedBodyWithinWindow(self) -> None:
        """
        A refused stream whose declared body fits the stream's initial
        window is not reset: the client may send that much anyway (and
        some clients fail a request reset before they have sent it all).
        The body is read and dropped, its window given back, and the
        connection keeps serving.
        """
        client = _Client(_Body(2))
        streamID = client.post(length=5000)
        client.connection.streams[streamID].refuse(413, "too large")
        events = client.receive()
        self.assertEqual(dict(client.headers[streamID])[b":status"], b"413")
        self.assertIn(streamID, client.ended)
        self.assertEqual([e for e in events if isinstance(e, h2.events.StreamReset)], [])
        client.h2.send_data(streamID, b"x" * 5000, end_stream=True)
        client.send()
        events = client.receive()
        self.assertEqual([e for e in events if isinstance(e, h2.events.StreamReset)], [])
        [other] = client.get()
        client.receive()
        self.assertEqual(client.bodies[other], b"xx")

    def test_refusedAfterResponseStarted(self) -> None:
        """
        A refusal that comes after the response has started (its headers
        sent) resets the stream instead of sending a second response.
        """
        resource = _Body(None)
        client = _Client(resource)
        [streamID] = client.get()
        client.receive()
        [request] = resource.pending
        request.write(b"started")
        client.receive()
        request.channel.refuse(413, "too large")
        events = client.receive()
        [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
        self.assertEqual(reset.error_code, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.assertEqual(dict(client.headers[streamID])[b":status"], b"200")


# Raw frames: what a conformance suite sends, bypassing the h2 client's
# own checks.

SETTINGS_ACK = hyperframe.frame.SettingsFrame(0, flags=["ACK"]).serialize()


def requestBlock(authority: bytes = b"a.test", method: bytes = b"GET", path: bytes = b"/") -> bytes:
    """
    A valid request's header block, HPACK-encoded by a fresh encoder (as
    the first block of a connection, whose decoder is fresh).
    """
    return hpack.Encoder().encode(
        [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path)]
    )


def headersFrame(block: bytes, streamID: int = 1) -> bytes:
    frame = hyperframe.frame.HeadersFrame(streamID, flags=["END_HEADERS", "END_STREAM"])
    frame.data = block
    return frame.serialize()


def rawFrame(kind: int, flags: int, streamID: int, payload: bytes) -> bytes:
    """
    A frame built byte by byte, for frames hyperframe refuses to build.
    """
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + streamID.to_bytes(4, "big") + payload


def parseFrames(data: bytes) -> list[Any]:
    """
    The frames in C{data}, parsed by hyperframe (no HPACK, no state).
    """
    frames = []
    while len(data) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def goAways(frames: list[Any]) -> list[tuple[int, int]]:
    """
    C{(error code, last stream ID)} of each GOAWAY frame in C{frames}.
    """
    return [
        (f.error_code, f.last_stream_id) for f in frames if isinstance(f, hyperframe.frame.GoAwayFrame)
    ]


INVALID_HEADER_BLOCKS = {
    # The header blocks of the HPACK cases of an HTTP/2 conformance suite
    # (h2spec's "hpack" group and http2 4.3), each a COMPRESSION_ERROR.
    "indexed field with an invalid index": b"\xc6",
    "literal field with an invalid name index": b"\x7f\x07\x00",
    "Huffman padding longer than 7 bits": b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x49\x50\x9f\xff",
    "Huffman padding by zero": b"\x00\x85\xf2\xb2\x4a\x84\xff\x83\x49\x50\x90",
    "Huffman string with EOS": b"\x00\x85\xf2\xb2\x4a\x84\xff\x87\x49\x51\xff\xff\xff\xfa\x7f",
    "indexed field with index 0": b"\x80",
    "truncated literal": b"\x40",
}


class ConnectionErrorTests(SynchronousTestCase):
    """
    A connection error is answered with a GOAWAY carrying RFC 9113's error
    code, and the connection is closed.
    """

    def raw(self, data: bytes, client: Optional[_Client] = None) -> tuple[_Client, list[Any]]:
        """
        Send C{data} as is on an h2c connection (a new one unless given) and
        return the frames the server wrote in answer.
        """
        if client is None:
            client = _Client(_Body(1))
            client.receive()
        client.protocol.dataReceived(data)
        client.clock.advance(0)
        written = client.transport.value()
        client.transport.clear()
        return client, parseFrames(written)

    def assertConnectionError(self, client: _Client, frames: list[Any], code: int, what: str) -> None:
        self.assertEqual([c for c, _ in goAways(frames)], [code], what)
        self.assertTrue(client.transport.disconnecting, what)

    def test_invalidHeaderBlocks(self) -> None:
        """
        A header block HPACK cannot decode (an invalid index, bad Huffman
        padding, EOS in a Huffman string, a truncated field, a dynamic
        table size update at the end of the block or above the size the
        server allows) is a COMPRESSION_ERROR (RFC 9113 section 4.3, RFC
        7541 sections 4.2 and 6.3), not h2's PROTOCOL_ERROR; a header list
        over the size limit stays ENHANCE_YOUR_CALM, though HPACK finds it.
        """
        blocks = {what: requestBlock() + bad for what, bad in INVALID_HEADER_BLOCKS.items()}
        blocks["table size update at the end"] = requestBlock() + b"\x21"
        blocks["table size update over the limit"] = b"\x3f\xe2\x1f" + requestBlock()
        for what, block in blocks.items():
            client, frames = self.raw(headersFrame(block))
            self.assertConnectionError(client, frames, h2.errors.ErrorCodes.COMPRESSION_ERROR, what)
        huge = hpack.Encoder().encode([(b"x-big", b"y" * 70000)], huffman=False)
        pieces = [huge[i : i + 16000] for i in range(0, len(huge), 16000)]
        oversized = rawFrame(0x1, 0, 1, pieces[0])
        for i, piece in enumerate(pieces[1:], 2):
            oversized += rawFrame(0x9, 0x4 if i == len(pieces) else 0, 1, piece)
        client, frames = self.raw(oversized)
        self.assertConnectionError(client, frames, h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "oversized")

    def test_frameErrors(self) -> None:
        """
        A SETTINGS frame with ACK and a payload is a FRAME_SIZE_ERROR (RFC
        9113 section 6.5), not h2's PROTOCOL_ERROR; errors h2 already names
        rightly keep their code (a PING of the wrong length, a SETTINGS
        frame on a stream).
        """
        for what, data, code in (
            ("SETTINGS ACK with a payload", rawFrame(0x4, 0x1, 0, b"\x00\x03\x00\x00\x00\x64"),
             h2.errors.ErrorCodes.FRAME_SIZE_ERROR),
            ("short PING", rawFrame(0x6, 0, 0, b"1234567"), h2.errors.ErrorCodes.FRAME_SIZE_ERROR),
            ("SETTINGS on a stream", rawFrame(0x4, 0, 1, b""), h2.errors.ErrorCodes.PROTOCOL_ERROR),
        ):
            client, frames = self.raw(data)
            self.assertConnectionError(client, frames, code, what)

    def test_invalidPrefaceOverTLS(self) -> None:
        """
        A connection that chose C{h2} by ALPN and then sends something else
        than the connection preface gets a GOAWAY PROTOCOL_ERROR and is
        closed (RFC 9113 section 3.4).
        """
        from zope.interface import alsoProvides
        from twisted.internet.interfaces import ISSLTransport

        site = ProxySite(_Body(3), MemoryReactorClock())
        protocol = site.buildProtocol(None)
        transport = _WriteCountingTransport()
        alsoProvides(transport, ISSLTransport)
        transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        protocol.dataReceived(b"INVALID CONNECTION PREFACE\r\n\r\n")
        frames = parseFrames(transport.value())
        self.assertEqual(goAways(frames), [(h2.errors.ErrorCodes.PROTOCOL_ERROR, 0)])
        self.assertTrue(transport.disconnecting)


class ClientGoAwayTests(SynchronousTestCase):
    """
    The client's GOAWAY (NO_ERROR) ends nothing at once: it opens no more
    streams, but those open are answered and control frames still are.
    """

    def test_pingAfterGoAwayAnswered(self) -> None:
        """
        A PING after the client's GOAWAY (NO_ERROR) is answered with a PING
        ACK, the connection stays open, and a stream in flight still gets
        its whole response.
        """
        resource = _Body(None)
        client = _Client(resource)
        client.get()
        client.receive()
        ping = hyperframe.frame.PingFrame(0)
        ping.opaque_data = b"h2spec\x00\x00"
        client.protocol.dataReceived(hyperframe.frame.GoAwayFrame(0).serialize() + ping.serialize())
        client.clock.advance(0)
        frames = parseFrames(client.transport.value())
        client.transport.clear()
        acks = [f.opaque_data for f in frames if isinstance(f, hyperframe.frame.PingFrame) and "ACK" in f.flags]
        self.assertEqual(acks, [b"h2spec\x00\x00"])
        self.assertEqual(goAways(frames), [])
        self.assertFalse(client.transport.disconnecting)
        [request] = resource.pending
        request.write(b"still here")
        request.finish()
        client.clock.advance(0)
        data = [f for f in parseFrames(client.transport.value()) if isinstance(f, hyperframe.frame.DataFrame)]
        self.assertEqual(b"".join(f.data for f in data), b"still here")
        self.assertIn("END_STREAM", data[-1].flags)

        # A GOAWAY that reports an error (known or not) ends the connection
        # at once: its streams are told, and the transport is closed.
        for code in (h2.errors.ErrorCodes.PROTOCOL_ERROR, 0xFF):
            resource = _Body(None)
            client = _Client(resource)
            client.get()
            client.receive()
            [request] = resource.pending
            lost: list[Any] = []
            request.notifyFinish().addErrback(lost.append)
            goAway = hyperframe.frame.GoAwayFrame(0)
            goAway.error_code = code
            client.protocol.dataReceived(goAway.serialize())
            self.assertEqual(len(lost), 1, code)
            self.assertTrue(client.transport.disconnecting, code)
            self.assertEqual(client.connection.streams, {}, code)


class GoneStreamTests(SynchronousTestCase):
    """
    Events for a stream the connection has already forgotten are no errors.
    """

    def test_loseConnectionAfterStreamGone(self) -> None:
        """
        Ending a stream that a connection error already dropped does
        nothing: a streamed upload's target connection, closed because the
        client went away, then stops its producer, which calls
        C{loseConnection} on the stream (that raised C{KeyError}).
        """
        resource = _Body(None)
        client = _Client(resource)
        [streamID] = client.get()
        client.receive()
        [request] = resource.pending
        stream = request.channel
        client.protocol.dataReceived(rawFrame(0x4, 0, 1, b""))  # a connection error
        self.assertNotIn(streamID, client.connection.streams)
        stream.loseConnection()
        client.clock.advance(0)

    def test_resetAfterResponse(self) -> None:
        """
        A client that resets a stream whose response was already sent (it
        was still sending the request body) causes no error, and the
        connection goes on serving (that raised C{KeyError}).
        """
        client = _Client(_Body(2))
        streamID = client.post()
        # The response, sent as a request's finish() sends it.
        connection = client.connection
        connection.writeHeaderList([(b":status", b"200")], streamID)
        connection.writeDataToStream(streamID, b"early")
        connection.endRequest(streamID)
        client.receive()
        self.assertIn(streamID, client.ended)
        self.assertNotIn(streamID, connection.streams)
        client.h2.reset_stream(streamID, h2.errors.ErrorCodes.CANCEL)
        client.send()
        [other] = client.get()
        client.receive()
        self.assertEqual(client.bodies[other], b"xx")


class _RawClient(Protocol):
    """
    The client side of an in-memory TLS connection: collects what it
    receives and whether the connection was closed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.lost = True


class TLSTests(SynchronousTestCase):
    """
    HTTP/2 over a real (in-memory) TLS connection, ALPN C{h2}.
    """

    def connect(self, resource: Resource) -> tuple[_RawClient, Any, MemoryReactorClock]:
        """
        A TLS connection from a L{_RawClient} to a L{ProxySite} serving
        C{resource}, handshake done; returns the client, the L{IOPump} and
        the site's clock.
        """
        certificatePEM, keyPEM = selfSigned("a.test")
        serverOptions = ssl.CertificateOptions(
            privateKey=serialization.load_pem_private_key(keyPEM, None),
            certificate=x509.load_pem_x509_certificate(certificatePEM),
            acceptableProtocols=[b"h2"],
        )
        clientOptions = ssl.optionsForClientTLS(
            "a.test", trustRoot=ssl.Certificate.loadPEM(certificatePEM), acceptableProtocols=[b"h2"]
        )
        clock = MemoryReactorClock()
        site = self.site = ProxySite(resource, clock)
        server = TLSMemoryBIOFactory(serverOptions, False, site, clock).buildProtocol(None)
        client = _RawClient()
        clientTLS = TLSMemoryBIOFactory(clientOptions, True, Factory.forProtocol(lambda: client), clock)
        clientSide = clientTLS.buildProtocol(None)
        serverTransport = FakeTransport(server, isServer=True)
        # A TCP transport is a push producer, so TLS relays the HTTP
        # channel's registration as the connection's producer to it.
        alsoProvides(serverTransport, IPushProducer)
        pump = connect(server, serverTransport, clientSide, FakeTransport(clientSide, isServer=False), clock=clock)
        clientSide.write(H2_PREFACE + hyperframe.frame.SettingsFrame(0).serialize())
        pump.flush()
        self.assertEqual(clientSide.negotiatedProtocol, b"h2")
        clientSide.write(SETTINGS_ACK)
        pump.flush()
        client.received = b""
        self.clientTransport = clientSide
        return client, pump, clock

    def test_connectionErrorCloses(self) -> None:
        """
        After a connection error the GOAWAY is sent and the TLS connection
        is closed, as over h2c: TLS waits for the connection's producer to
        be unregistered before it closes.
        """
        client, pump, _ = self.connect(_Body(1))
        self.clientTransport.write(headersFrame(requestBlock() + b"\xc6"))
        pump.flush()
        self.assertTrue(client.lost)
        frames = parseFrames(client.received)
        self.assertEqual(goAways(frames), [(h2.errors.ErrorCodes.COMPRESSION_ERROR, 0)])

    def test_idleTimeoutCloses(self) -> None:
        """
        The idle timeout's GOAWAY is followed by the close of the TLS
        connection, not by Twisted's abort 15 seconds later.
        """
        client, pump, clock = self.connect(_Body(1))
        clock.advance(self.site.timeOut + 1)
        pump.flush()
        self.assertTrue(client.lost)
        self.assertEqual(goAways(parseFrames(client.received)), [(h2.errors.ErrorCodes.NO_ERROR, 0)])

    def test_gracefulClose(self) -> None:
        """
        A shutdown's C{closeConnections} lets the response finished just
        before it reach the client, then sends GOAWAY NO_ERROR naming the
        last stream and closes the TLS connection.
        """
        resource = _Body(None)
        client, pump, _ = self.connect(resource)
        self.clientTransport.write(headersFrame(requestBlock()))
        pump.flush()
        [request] = resource.pending
        request.write(b"last words")
        request.finish()
        self.site.closeConnections(5)
        pump.flush()
        frames = parseFrames(client.received)
        data = [f for f in frames if isinstance(f, hyperframe.frame.DataFrame)]
        self.assertEqual(b"".join(f.data for f in data), b"last words")
        self.assertIn("END_STREAM", data[-1].flags)
        self.assertEqual(goAways(frames), [(h2.errors.ErrorCodes.NO_ERROR, 1)])
        self.assertIsInstance(frames[-1], hyperframe.frame.GoAwayFrame)
        self.assertTrue(client.lost)


class GracefulCloseTests(SynchronousTestCase):
    """
    A shutdown closes an HTTP/2 connection gracefully: the responses in
    flight end, then GOAWAY NO_ERROR names the last stream processed, then
    the connection closes.
    """

    def test_siteClosesConnections(self) -> None:
        """
        C{ProxySite.closeConnections}, called as a shutdown calls it (in
        the iteration where the last request finished), closes the HTTP/2
        connection that request came on, once its response has been sent.
        """
        resource = _Body(None)
        client = _Client(resource)
        client.transport.connected = True  # type: ignore[attr-defined]
        [streamID] = client.get()
        client.receive()
        [request] = resource.pending
        request.write(b"last words")
        request.finish()
        closed = client.connection.site.closeConnections(5)
        events = client.receive()
        self.assertEqual(client.bodies[streamID], b"last words")
        self.assertIn(streamID, client.ended)
        [goAway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        self.assertEqual((goAway.error_code, goAway.last_stream_id), (h2.errors.ErrorCodes.NO_ERROR, streamID))
        self.assertTrue(client.transport.disconnecting)
        client.transport.connected = False  # type: ignore[attr-defined]
        client.clock.advance(0.01)
        self.assertIsNone(self.successResultOf(closed))

    def test_newStreamsRefusedWhileClosing(self) -> None:
        """
        While a connection closes, streams the client opens are refused
        (REFUSED_STREAM: safe to retry elsewhere) and the GOAWAY names the
        last stream that was processed, sent once that stream has ended.
        """
        resource = _Body(None)
        client = _Client(resource)
        [first] = client.get()
        client.receive()
        client.connection.loseConnection()
        [second] = client.get()
        events = client.receive()
        [reset] = [e for e in events if isinstance(e, h2.events.StreamReset)]
        self.assertEqual((reset.stream_id, reset.error_code), (second, h2.errors.ErrorCodes.REFUSED_STREAM))
        self.assertFalse([e for e in events if isinstance(e, h2.events.ConnectionTerminated)])
        self.assertFalse(client.transport.disconnecting)
        [request] = resource.pending
        request.finish()
        events = client.receive()
        self.assertIn(first, client.ended)
        [goAway] = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
        self.assertEqual((goAway.error_code, goAway.last_stream_id), (h2.errors.ErrorCodes.NO_ERROR, first))
        self.assertTrue(client.transport.disconnecting)
