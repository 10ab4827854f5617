"""
HTTP/2 end to end: a real daemon started with C{--h2c} (cleartext HTTP/2
with prior knowledge on its HTTP port), real backends on 127.0.0.1, and two
independent HTTP/2 clients in front of it: curl (nghttp2) and a strict
Python C{h2} client state machine over a plain socket, run in a thread so
that it can be as slow, as stingy with flow-control credit and as abrupt as
a test needs while the backends keep running on the reactor.

The C{h2} client validates what it receives (connection-specific header
fields, flow-control windows, frame sizes), so a stream that merely
"arrives" has also been well-formed HTTP/2.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import threading
import time
from functools import lru_cache
from io import BytesIO
from typing import Any, Callable, Iterable, Optional

import attr
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.protocols.basic import FileSender
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from kamalproxy.http.channel import H2_PREFACE
from tests.integration.harness import (
    Daemon,
    bounded,
    ctl,
    deployArgs,
    freePort,
    runCommand,
    startBackend,
    startDaemon,
    tempDir,
)
from tests.http.test_http2 import (
    INVALID_HEADER_BLOCKS,
    SETTINGS_ACK,
    goAways,
    headersFrame,
    parseFrames,
    rawFrame,
    requestBlock,
)
from tests.tls.test_sni import selfSigned

MiB = 1024 * 1024

CLIENT_TIMEOUT = 20.0
"""Seconds an h2 client conversation may take in all."""

CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}


@lru_cache(maxsize=8)
def payload(size: int) -> bytes:
    """
    C{size} deterministic, incompressible bytes (a shifted or dropped byte
    anywhere changes the digest).
    """
    return hashlib.shake_256(b"kamal-proxy h2 %d" % size).digest(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def smallBody(i: int) -> bytes:
    return (b"stream %d;" % i) * ((i * 37) % 500 + 1)


def token(i: int) -> bytes:
    """
    A distinct, incompressible response header value per stream (HPACK
    cannot index it away).
    """
    return hashlib.sha256(b"token %d" % i).hexdigest().encode() * 4


# Backends


class _App(Resource):
    """
    The application behind the proxy (a Twisted web server):

      - C{/up}: health check;
      - C{/echo}: JSON with the request body's length and SHA-256, and the
        framing headers it arrived with;
      - C{/big/N}: N deterministic bytes (L{payload}), sent with
        C{Content-Length} by a pull producer, so that the backend only
        writes as fast as the proxy reads;
      - C{/n/I}: a small body and unique headers for stream I; held while
        C{holding} is set, until L{release};
      - C{/status/C}: an empty response with status C (304 with an ETag).

    @ivar cut: the URIs whose response the proxy stopped reading (its
        connection to the backend closed before the response was written).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.seen: list[str] = []
        self.held: list[tuple[Any, bytes]] = []
        self.heldChanged: list[Callable[[], None]] = []
        self.cut: list[str] = []
        self.cutWaiters: list[tuple[str, Deferred]] = []

    def render(self, request: Any) -> Any:
        path: bytes = request.path
        if path == b"/up":
            return b"up\n"
        if path.startswith(b"/echo"):
            self.seen.append(request.uri.decode())
            body = request.content.read()
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(
                {
                    "method": request.method.decode(),
                    "length": len(body),
                    "sha256": sha(body),
                    "content-length": (request.getHeader(b"content-length") or b"").decode(),
                    "transfer-encoding": (request.getHeader(b"transfer-encoding") or b"").decode(),
                    "host": (request.getHeader(b"host") or b"").decode(),
                    "x-forwarded-for": (request.getHeader(b"x-forwarded-for") or b"").decode(),
                    "x-forwarded-proto": (request.getHeader(b"x-forwarded-proto") or b"").decode(),
                }
            ).encode()
        if path.startswith(b"/big/"):
            data = payload(int(path.split(b"/")[2]))
            request.setHeader(b"content-type", b"application/octet-stream")
            request.setHeader(b"content-length", b"%d" % len(data))
            if request.method == b"HEAD":
                return b""
            uri = request.uri.decode()
            sender = FileSender()
            sender.CHUNK_SIZE = 64 * 1024
            d = sender.beginFileTransfer(BytesIO(data), request)

            def sent(_: object) -> None:
                if not request._disconnected:
                    request.finish()

            d.addCallbacks(sent, lambda f: None)
            request.notifyFinish().addErrback(lambda f: self._cut(uri))
            return NOT_DONE_YET
        if path.startswith(b"/n/"):
            i = int(path.split(b"/")[2])
            request.setHeader(b"x-stream", b"%d" % i)
            request.setHeader(b"x-token", token(i))
            request.setHeader(b"content-type", b"text/plain")
            body = smallBody(i)
            if self.holding:
                self.held.append((request, body))
                for f in list(self.heldChanged):
                    f()
                return NOT_DONE_YET
            return body
        if path.startswith(b"/status/"):
            code = int(path.split(b"/")[2])
            request.setResponseCode(code)
            if code == 304:
                request.setHeader(b"etag", b'"v1"')
            return b""
        request.setResponseCode(404)
        return b"no such page\n"

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for request, body in held:
            if not request._disconnected:
                request.write(body)
                request.finish()

    def _cut(self, uri: str) -> None:
        self.cut.append(uri)
        for entry in list(self.cutWaiters):
            if entry[0] == uri:
                self.cutWaiters.remove(entry)
                entry[1].callback(uri)

    def waitForCut(self, uri: str, timeout: float = 10.0) -> Deferred:
        if uri in self.cut:
            d: Deferred = Deferred()
            d.callback(uri)
            return d
        d = Deferred()
        self.cutWaiters.append((uri, d))
        return bounded(d, timeout, f"the proxy to drop the backend response for {uri}")

    def waitForHeld(self, count: int, timeout: float = 10.0) -> Deferred:
        d: Deferred = Deferred()

        def check() -> None:
            if len(self.held) >= count and not d.called:
                self.heldChanged.remove(check)
                d.callback(None)

        self.heldChanged.append(check)
        check()
        return bounded(d, timeout, f"{count} requests held by the backend")


def startApp(testCase: TestCase) -> tuple[_App, int]:
    """
    A running L{_App} on 127.0.0.1; returns it and its port.
    """
    app = _App()
    site = Site(app, timeout=None)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]
    listening = reactor.listenTCP(0, site, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    return app, listening.getHost().port


HOP_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: keep-alive, X-Hop-Secret\r\n"
    b"Keep-Alive: timeout=5, max=1000\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Upgrade: h2c\r\n"
    b"TE: trailers\r\n"
    b"X-Hop-Secret: must not pass\r\n"
    b"X-Kept: yes\r\n"
)


def chunked(data: bytes, trailer: bytes = b"") -> bytes:
    """
    C{data} chunk-encoded in chunks of varying sizes, with C{trailer}
    fields after the last chunk.
    """
    out, i, size = [], 0, 1
    while i < len(data):
        piece = data[i : i + size]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += len(piece)
        size = size * 7 % 9973 + 1
    out.append(b"0\r\n" + trailer + b"\r\n")
    return b"".join(out)


HOP_BODY = payload(300_000)

RAW_RESPONSES: dict[bytes, tuple[bytes, bool]] = {
    # path: (response bytes, close the connection after it)
    b"/up": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nup\n", False),
    b"/hop": (HOP_HEAD + b"\r\n" + chunked(HOP_BODY), False),
    b"/hop-trailer": (
        HOP_HEAD + b"Trailer: X-Checksum\r\n\r\n" + chunked(HOP_BODY, b"X-Checksum: abc\r\n"),
        False,
    ),
    b"/eof": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\nX-Kept: yes\r\n\r\n" + HOP_BODY,
        True,
    ),
    b"/truncated": (HOP_HEAD + b"\r\n" + chunked(HOP_BODY)[:100_000], True),
    b"/truncated-length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(HOP_BODY)
        + HOP_BODY[:100_000],
        True,
    ),
    b"/odd-headers": (
        b"HTTP/1.1 200 OK\r\n"
        b"X-Pad:   padded value \t \r\n"
        b"X-Empty:\r\n"
        b"Set-Cookie: a=1; Path=/\r\n"
        b"Set-Cookie: b=2; Path=/\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"X-UPPER-Case: Value\r\n"
        b"Content-Length: 2\r\n\r\nok",
        False,
    ),
    b"/304": (
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\nConnection: keep-alive\r\n\r\n',
        False,
    ),
    b"/obs-text": (
        (
            b"HTTP/1.1 200 OK\r\n"
            b"X-Name: Jos\xc3\xa9\r\n"
            b"Set-Cookie: name=J\xc3\xb6rg; Path=/\r\n"
            b"X-Latin: caf\xe9 \x80\xff\r\n"
            b"Content-Length: 2\r\n\r\nok"
        ),
        False,
    ),
    b"/hints": (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n"
        b"Connection: keep-alive\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
        False,
    ),
}


class _RawHTTP(Protocol):
    """
    A backend that writes canned HTTP/1.1 responses byte for byte (with
    the connection-specific fields HTTP/2 forbids), keeping the connection
    alive unless the response is framed by closing it.
    """

    def connectionMade(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.factory.heads.append(head)
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].split(b"?")[0]
            response, close = RAW_RESPONSES.get(
                target, (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", False)
            )
            self.transport.write(response)
            if close:
                self.transport.loseConnection()
                return


def startRawBackend(testCase: TestCase, heads: Optional[list[bytes]] = None) -> int:
    """
    A running L{_RawHTTP} backend; returns its port.  The request heads it
    receives (as sent, without the blank line) go to C{heads}.
    """
    factory = Factory.forProtocol(_RawHTTP)
    factory.heads = [] if heads is None else heads  # type: ignore[attr-defined]
    factory.noisy = False
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    return listening.getHost().port


# Clients


class Response:
    """
    What one stream received.
    """

    def __init__(self, streamID: int) -> None:
        self.streamID = streamID
        self.status: Optional[int] = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.informational: list[list[tuple[bytes, bytes]]] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.ended = False
        self.reset: Optional[int] = None
        self.largestFrame = 0

    def header(self, name: bytes) -> Optional[bytes]:
        values = [v for k, v in self.headers if k == name]
        return values[-1] if values else None

    def names(self) -> set[bytes]:
        return {k for k, _ in self.headers}

    def __repr__(self) -> str:
        return (
            f"<stream {self.streamID} status={self.status} body={len(self.body)}B "
            f"ended={self.ended} reset={self.reset}>"
        )


def certificateFiles(testCase: TestCase, host: str) -> tuple[str, str]:
    """
    A self-signed certificate for C{host} and its key, written to files
    removed with C{testCase}: their paths.
    """
    work = tempDir(testCase)
    paths = os.path.join(work, f"{host}.crt"), os.path.join(work, f"{host}.key")
    for path, data in zip(paths, selfSigned(host)):
        with open(path, "wb") as f:
            f.write(data)
    return paths


def connectH2(port: int, timeout: float, cafile: Optional[str] = None, serverName: bytes = b"") -> socket.socket:
    """
    A blocking socket to the daemon on 127.0.0.1:C{port}: plain (h2c), or
    with C{cafile} TLS with ALPN C{h2}, verified against C{cafile} for
    C{serverName}.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if cafile is None:
        return sock
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    tls = context.wrap_socket(sock, server_hostname=serverName.decode())
    assert tls.selected_alpn_protocol() == "h2", tls.selected_alpn_protocol()
    return tls


class H2Client:
    """
    A blocking HTTP/2 client (prior knowledge) over a plain socket, for use
    in a thread. Every wait is bounded by the client's deadline.

    @param window: C{SETTINGS_INITIAL_WINDOW_SIZE} to announce (each
        stream's receive window).
    @param connectionWindow: the connection's receive window (65535 unless
        raised).
    @param stingy: credit flow-control windows only once exhausted
        (stream and connection alike), the least a correct client may do;
        else credit every DATA frame at once.
    @param recvSize: bytes read from the socket at a time.
    @param cafile: talk TLS (ALPN C{h2}, SNI C{authority}) and trust the
        certificates in this file; else cleartext (h2c).
    """

    def __init__(
        self,
        port: int,
        *,
        window: Optional[int] = None,
        connectionWindow: Optional[int] = None,
        stingy: bool = False,
        recvSize: int = 65536,
        timeout: float = CLIENT_TIMEOUT,
        authority: bytes = b"app.test",
        cafile: Optional[str] = None,
    ) -> None:
        self.deadline = time.monotonic() + timeout
        self.sock = connectH2(port, timeout, cafile, authority)
        self.authority = authority
        self.scheme = b"http" if cafile is None else b"https"
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        initial = {
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
        }
        if window is not None:
            initial[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = window
        # Current at once (not pending an ACK), so the client holds the
        # server to them from the first frame.
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values=initial)
        self.conn.initiate_connection()
        self.streamWindow = window if window is not None else 65535
        self.connectionWindow = 65535
        if connectionWindow is not None and connectionWindow > 65535:
            self.conn.increment_flow_control_window(connectionWindow - 65535)
            self.connectionWindow = connectionWindow
        self.stingy = stingy
        self.recvSize = recvSize
        self.responses: dict[int, Response] = {}
        self.unackedStream: dict[int, int] = {}
        self.unackedConnection = 0
        self.terminated: Optional[h2.events.ConnectionTerminated] = None
        self.onData: Optional[Callable[[Response], None]] = None
        self.pingAcks = 0
        self.flush()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        method: bytes,
        path: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: Optional[bytes] = None,
        authority: Optional[bytes] = None,
        endStream: Optional[bool] = None,
        **priority: Any,
    ) -> int:
        """
        Open a stream with a request (its body sent within the server's
        flow-control windows; left open for the caller to send with
        C{endStream=False}); returns the stream ID.
        """
        streamID = self.conn.get_next_available_stream_id()
        fields = [
            (b":method", method),
            (b":scheme", self.scheme),
            (b":authority", authority or self.authority),
            (b":path", path),
            *headers,
        ]
        self.responses[streamID] = Response(streamID)
        if endStream is None:
            endStream = body is None
        self.conn.send_headers(streamID, fields, end_stream=endStream, **priority)
        self.flush()
        if body is not None:
            self.sendBody(streamID, body)
        return streamID

    def sendBody(self, streamID: int, body: bytes) -> None:
        """
        Send C{body} within the windows, then end the stream; stop early if
        the server resets the stream (e.g. NO_ERROR after answering before
        the whole body, RFC 9113 section 8.1), as a browser does.
        """
        view = memoryview(body)
        try:
            while view:
                if self.responses[streamID].reset is not None:
                    return
                window = self.conn.local_flow_control_window(streamID)
                if window <= 0:
                    self.receiveOnce()
                    continue
                size = min(window, self.conn.max_outbound_frame_size, len(view))
                self.conn.send_data(streamID, view[:size].tobytes())
                view = view[size:]
                self.flush()
            self.conn.end_stream(streamID)
        except h2.exceptions.StreamClosedError:
            return
        self.flush()

    def reset(self, streamID: int) -> None:
        self.conn.reset_stream(streamID, h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def ping(self) -> None:
        self.conn.ping(b"12345678")
        self.flush()

    def receiveOnce(self) -> None:
        if time.monotonic() > self.deadline:
            raise AssertionError(f"the h2 client timed out; streams: {sorted(self.responses.items())}")
        try:
            data = self.sock.recv(self.recvSize)
        except socket.timeout:
            raise AssertionError(f"nothing received in time; streams: {sorted(self.responses.items())}") from None
        if not data:
            raise ConnectionError(
                f"the server closed the connection (GOAWAY: {self.terminated}); "
                f"streams: {sorted(self.responses.items())}"
            )
        for event in self.conn.receive_data(data):
            self._handle(event)
        self.flush()

    def pump(self, done: Callable[[], bool]) -> None:
        """
        Receive until C{done()}.
        """
        while not done():
            if self.terminated is not None:
                raise ConnectionError(
                    f"GOAWAY {self.terminated}; streams: {sorted(self.responses.items())}"
                )
            self.receiveOnce()

    def finished(self, *streamIDs: int) -> Callable[[], bool]:
        return lambda: all(
            self.responses[s].ended or self.responses[s].reset is not None for s in streamIDs
        )

    def fetch(self, method: bytes, path: bytes, **kwargs: Any) -> Response:
        """
        One request, received to its end.
        """
        streamID = self.request(method, path, **kwargs)
        self.pump(self.finished(streamID))
        return self.responses[streamID]

    def _handle(self, event: Any) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            response = self.responses[event.stream_id]
            response.headers = list(event.headers)
            response.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self.responses[event.stream_id].informational.append(list(event.headers))
        elif isinstance(event, h2.events.TrailersReceived):
            self.responses[event.stream_id].trailers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            response = self.responses[event.stream_id]
            response.body += event.data
            response.largestFrame = max(response.largestFrame, event.flow_controlled_length)
            self._credit(event.stream_id, event.flow_controlled_length)
            if self.onData is not None:
                self.onData(response)
        elif isinstance(event, h2.events.StreamEnded):
            self.responses[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.responses[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.PingAckReceived):
            self.pingAcks += 1
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    def _credit(self, streamID: int, length: int) -> None:
        if not length or self.conn.state_machine.state is h2.connection.ConnectionState.CLOSED:
            return  # nothing to credit, or the server's GOAWAY came in the same read
        if not self.stingy:
            self.conn.increment_flow_control_window(length)
            if not self.responses[streamID].ended:
                try:
                    self.conn.increment_flow_control_window(length, stream_id=streamID)
                except h2.exceptions.StreamClosedError:
                    pass
            return
        # Only what is exhausted, and only then.
        self.unackedConnection += length
        if self.unackedConnection >= self.connectionWindow:
            self.conn.increment_flow_control_window(self.unackedConnection)
            self.unackedConnection = 0
        unacked = self.unackedStream.get(streamID, 0) + length
        if unacked >= self.streamWindow:
            try:
                self.conn.increment_flow_control_window(unacked, stream_id=streamID)
            except h2.exceptions.StreamClosedError:
                pass
            unacked = 0
        self.unackedStream[streamID] = unacked


def inThread(scenario: Callable[..., Any], *args: Any) -> Deferred:
    """
    Run the blocking C{scenario} in a thread (the backends keep running on
    the reactor meanwhile), bounded.
    """
    return bounded(deferToThread(scenario, *args), CLIENT_TIMEOUT + 10, scenario.__name__)


def _curlProgram() -> str:
    path = shutil.which("curl")
    if path is None:
        raise SkipTest("curl is not installed")
    return path


async def curlH2(
    testCase: TestCase, url: str, *args: str, timeout: float = 15.0
) -> tuple[int, str, str, bytes]:
    """
    C{curl --http2-prior-knowledge} C{url}: C{(status, http_version,
    response head as lower-case text, body bytes)}; curl must succeed.
    """
    work = tempDir(testCase)
    bodyPath, headPath = os.path.join(work, "body"), os.path.join(work, "head")
    result = await runCommand(
        [_curlProgram(), "-sS", "--noproxy", "*", "--http2-prior-knowledge", "--max-time", str(timeout),
         "-o", bodyPath, "-D", headPath, "-w", "%{http_code} %{http_version}", *args, url],
        timeout=timeout + 5,
    )
    assert result.code == 0, f"curl {url} failed ({result.code}): {result.err}"
    status, version = result.out.split()
    with open(headPath, "rb") as f:
        head = f.read().decode("latin-1").lower()
    body = b""
    if os.path.exists(bodyPath):
        with open(bodyPath, "rb") as f:
            body = f.read()
    return int(status), version, head, body


class HTTP2Tests(TestCase):
    """
    HTTP/2 clients through a real daemon (h2c) to real backends.
    """

    timeout = 40

    async def startProxy(self, *deploys: list[str], daemonArgs: Iterable[str] = ()) -> Daemon:
        """
        A daemon with C{--h2c} (and C{daemonArgs}), and each of C{deploys}
        (C{deploy} arguments) deployed on it.
        """
        self.daemon = await startDaemon(self, extraArgs=["--h2c", *daemonArgs])
        for args in deploys:
            result = await ctl(self.daemon.socket, *args)
            self.assertEqual(result.code, 0, result.err)
        return self.daemon

    async def converse(self, scenario: Callable[[], Any]) -> Any:
        """
        Run the blocking client C{scenario} in a thread (L{inThread}); a
        failure carries the daemon's output.
        """
        try:
            return await inThread(scenario)
        except Exception as e:
            raise AssertionError(f"{type(e).__name__}: {e}\n{self.daemon.output.describe()}") from e

    def client(self, **kwargs: Any) -> H2Client:
        """
        An L{H2Client} connected to the daemon (call in the client thread).
        """
        return H2Client(self.daemon.port, **kwargs)

    async def fetchAlone(self, method: bytes, path: bytes, **clientArgs: Any) -> Response:
        """
        One request on a connection of its own, closed afterwards.
        """

        def scenario() -> Response:
            client = self.client(**clientArgs)
            try:
                return client.fetch(method, path)
            finally:
                client.close()

        return await self.converse(scenario)

    def assertWellFormed(self, response: Response, status: int = 200) -> None:
        """
        C{response} ended normally with C{status} and carries no
        connection-specific field (the h2 client would have refused them
        anyway); a RST_STREAM with NO_ERROR after the end is allowed (the
        server answered before reading the whole request body).
        """
        self.assertTrue(response.ended, response)
        self.assertIn(response.reset, (None, h2.errors.ErrorCodes.NO_ERROR), response)
        self.assertEqual(response.status, status, (response, response.headers))
        self.assertFalse(response.names() & CONNECTION_SPECIFIC, response.headers)

    async def test_largeRequestBody(self) -> None:
        """
        A 1 MiB POST over HTTP/2 reaches the backend intact, whether the
        service buffers requests or not: from curl, and from an h2 client
        that sends it with and without C{content-length} and with C{expect:
        100-continue}, several uploads interleaved on one connection.
        """
        app, port = startApp(self)
        await self.startProxy(
            deployArgs("plain", f"127.0.0.1:{port}", "--host=plain.test"),
            deployArgs("buffered", f"127.0.0.1:{port}", "--host=buffered.test", "--buffer-requests"),
        )
        body = payload(MiB + 13)
        expected = {"method": "POST", "length": len(body), "sha256": sha(body)}
        path = os.path.join(tempDir(self), "body")
        with open(path, "wb") as f:
            f.write(body)

        for host in ("plain.test", "buffered.test"):
            status, version, _, raw = await curlH2(
                self, self.daemon.url("/echo"), "-H", f"Host: {host}", "--data-binary", f"@{path}"
            )
            answer = json.loads(raw)
            self.assertEqual((status, version), (200, "2"), host)
            self.assertEqual({k: answer[k] for k in expected}, expected, host)

        def scenario() -> list[tuple[bytes, bytes, Response]]:
            client = self.client()
            try:
                streams = []
                for host in (b"plain.test", b"buffered.test"):
                    for headers in (
                        [(b"content-length", b"%d" % len(body))],
                        [],
                        [(b"content-length", b"%d" % len(body)), (b"expect", b"100-continue")],
                    ):
                        label = b",".join(k for k, _ in headers) or b"no length"
                        streamID = client.request(b"POST", b"/echo", headers, authority=host, endStream=False)
                        streams.append((host, label, streamID))
                # The bodies go out interleaved, each within the server's
                # windows; the responses come back on the same connection.
                views = {s: memoryview(body) for _, _, s in streams}
                while views:
                    progressed = False
                    for streamID, view in list(views.items()):
                        window = client.conn.local_flow_control_window(streamID)
                        if window <= 0:
                            continue
                        size = min(window, client.conn.max_outbound_frame_size, len(view))
                        client.conn.send_data(streamID, view[:size].tobytes())
                        views[streamID] = view = view[size:]
                        if not view:
                            client.conn.end_stream(streamID)
                            del views[streamID]
                        progressed = True
                    client.flush()
                    if not progressed:
                        client.receiveOnce()
                client.pump(client.finished(*(s for _, _, s in streams)))
                return [(h, label, client.responses[s]) for h, label, s in streams]
            finally:
                client.close()

        for host, label, response in await self.converse(scenario):
            self.assertWellFormed(response)
            answer = json.loads(bytes(response.body))
            self.assertEqual({k: answer[k] for k in expected}, expected, (host, label))
            self.assertEqual(
                (answer["host"], answer["x-forwarded-for"], answer["x-forwarded-proto"]),
                (host.decode(), "127.0.0.1", "http"),
            )
            if b"expect" in label:
                self.assertEqual([dict(h)[b":status"] for h in response.informational], [b"100"])
        await self.daemon.waitForRequestLogs(lambda e: e["path"] == "/echo", 8)
        logged = [e for e in self.daemon.requestLogs() if e["path"] == "/echo"]
        self.assertEqual({(e["proto"], e["status"]) for e in logged}, {("HTTP/2", 200)})
        self.assertEqual(len(logged), 8)

    async def test_largeResponseSmallWindow(self) -> None:
        """
        A 5 MB response arrives intact to a client that announces a 1 KiB
        stream window and credits it only once it is used up (and the
        connection window likewise): the proxy never overruns a window,
        never stalls, and sends frames no larger than the window allows;
        likewise two such downloads on one connection whose 64 KiB
        connection window, not the streams', is the limit.
        """
        app, port = startApp(self)
        await self.startProxy(deployArgs("app", f"127.0.0.1:{port}"))
        size = 5_000_000

        def smallStreamWindow() -> Response:
            client = self.client(window=1024, stingy=True, recvSize=1024)
            try:
                return client.fetch(b"GET", b"/big/%d" % size)
            finally:
                client.close()

        def smallConnectionWindow() -> list[Response]:
            client = self.client(window=8 * MiB, stingy=True, recvSize=4096)
            try:
                a = client.request(b"GET", b"/big/%d" % (2 * MiB))
                b = client.request(b"GET", b"/big/%d" % (2 * MiB + 1))
                client.pump(client.finished(a, b))
                return [client.responses[a], client.responses[b]]
            finally:
                client.close()

        response = await self.converse(smallStreamWindow)
        self.assertWellFormed(response)
        self.assertEqual(response.header(b"content-length"), b"%d" % size)
        self.assertEqual(len(response.body), size)
        self.assertEqual(sha(bytes(response.body)), sha(payload(size)))
        self.assertLessEqual(response.largestFrame, 1024)

        for response, expected in zip(await self.converse(smallConnectionWindow), (2 * MiB, 2 * MiB + 1)):
            self.assertWellFormed(response)
            self.assertEqual(sha(bytes(response.body)), sha(payload(expected)))

    async def test_manyConcurrentStreams(self) -> None:
        """
        100 requests open at once on one connection (the server's stream
        limit), some with RFC 7540 priorities or reprioritised in flight,
        are all answered, each with its own status, headers and body;
        h2load's 1000 requests over one connection, 100 at a time,
        all succeed.
        """
        app, port = startApp(self)
        await self.startProxy(deployArgs("app", f"127.0.0.1:{port}"))

        def scenario() -> list[Response]:
            client = self.client()
            try:
                streams: list[int] = []
                for i in range(100):
                    # RFC 7540 priorities, which the proxy accepts and ignores.
                    priority = (
                        {"priority_weight": 1 + i % 256, "priority_depends_on": streams[i // 2],
                         "priority_exclusive": i % 3 == 0}
                        if i % 2 and streams else {}
                    )
                    streams.append(client.request(b"GET", b"/n/%d" % i, **priority))
                client.conn.prioritize(streams[10], weight=256, depends_on=streams[60], exclusive=True)
                client.flush()
                client.pump(client.finished(*streams))
                return [client.responses[s] for s in streams]
            finally:
                client.close()

        responses = await self.converse(scenario)
        for i, response in enumerate(responses):
            self.assertWellFormed(response)
            self.assertEqual(response.header(b"x-stream"), b"%d" % i)
            self.assertEqual(response.header(b"x-token"), token(i))
            self.assertEqual(bytes(response.body), smallBody(i))

        program = shutil.which("h2load")
        if program is None:
            return
        result = await runCommand(
            [program, "-n", "1000", "-c", "1", "-m", "100", self.daemon.url("/n/7")],
            timeout=30,
        )
        self.assertEqual(result.code, 0, result.err)
        self.assertIn("1000 succeeded, 0 failed, 0 errored", result.out, result.out)
        self.assertIn("status codes: 1000 2xx", result.out, result.out)

    async def test_manyStreamsBehindASlowReader(self) -> None:
        """
        A client that is slow to read (a big download filling the socket)
        while 100 other responses, each with its own headers, become ready
        on the same connection gets all of them, and the download, intact
        once it reads: a phone on a slow link loading a page's assets next
        to a video.
        """
        app, port = startApp(self)
        await self.startProxy(deployArgs("app", f"127.0.0.1:{port}"))
        size = 16 * MiB
        app.holding = True
        requestsSent = threading.Event()
        mayRead = threading.Event()

        def scenario() -> list[Response]:
            client = self.client(window=2**31 - 1, connectionWindow=2**31 - 1)
            try:
                big = client.request(b"GET", b"/big/%d" % size)
                small = [client.request(b"GET", b"/n/%d" % i) for i in range(99)]
                requestsSent.set()
                if not mayRead.wait(CLIENT_TIMEOUT):
                    raise AssertionError("never told to read")
                client.pump(client.finished(big, *small))
                return [client.responses[s] for s in [big, *small]]
            finally:
                client.close()

        running = Deferred.fromCoroutine(self.converse(scenario))
        try:
            await app.waitForHeld(99)
            # The proxy has the whole download from the backend: the client
            # has read nothing, so it is queued at the proxy.
            await self.daemon.waitForLog(lambda e: e.get("path") == f"/big/{size}", what="the download logged")
            app.release()
            await self.daemon.waitForLog(
                lambda e: e.get("path") == "/n/98", what="the small responses logged"
            )
        finally:
            mayRead.set()
        responses = await running
        self.assertWellFormed(responses[0])
        self.assertEqual(sha(bytes(responses[0].body)), sha(payload(size)))
        for i, response in enumerate(responses[1:]):
            self.assertWellFormed(response)
            self.assertEqual(response.header(b"x-token"), token(i))
            self.assertEqual(bytes(response.body), smallBody(i))

    async def test_noBodyResponses(self) -> None:
        """
        HEAD, 204 and 304 responses end their stream with no DATA (a HEAD
        keeps the backend's C{content-length}), over the h2 client and over
        curl (including a 304 that carries C{Content-Length}), and the
        connection goes on serving.
        """
        app, port = startApp(self)
        rawPort = startRawBackend(self)
        await self.startProxy(
            deployArgs("app", f"127.0.0.1:{port}"),
            deployArgs("raw", f"127.0.0.1:{rawPort}", "--host=raw.test"),
        )

        def scenario() -> list[Response]:
            client = self.client()
            try:
                return [
                    client.fetch(b"HEAD", b"/big/5000000"),
                    client.fetch(b"GET", b"/status/204"),
                    client.fetch(b"GET", b"/status/304", headers=[(b"if-none-match", b'"v1"')]),
                    client.fetch(b"HEAD", b"/status/204"),
                    client.fetch(b"GET", b"/n/3"),
                ]
            finally:
                client.close()

        head, noContent, notModified, headNoContent, after = await self.converse(scenario)
        for response, status in ((head, 200), (noContent, 204), (notModified, 304), (headNoContent, 204)):
            self.assertWellFormed(response, status)
            self.assertEqual(bytes(response.body), b"", response)
        self.assertEqual(head.header(b"content-length"), b"5000000")
        self.assertEqual(notModified.header(b"etag"), b'"v1"')
        self.assertWellFormed(after)
        self.assertEqual(bytes(after.body), smallBody(3))

        url = self.daemon.url
        status, version, head, _ = await curlH2(self, url("/big/5000000"), "-I")
        self.assertEqual((status, version), (200, "2"))
        self.assertIn("content-length: 5000000", head)
        for path, host, code in (("/status/204", "app.test", 204), ("/status/304", "app.test", 304),
                                 ("/304", "raw.test", 304)):
            status, version, _, body = await curlH2(self, url(path), "-H", f"Host: {host}")
            self.assertEqual((status, version, body), (code, "2", b""), path)

    async def test_resetStreamMidResponse(self) -> None:
        """
        A client that cancels a download (RST_STREAM) halfway: the proxy
        stops reading the backend's response and logs the request as 499,
        while another download on the same connection completes intact, and
        the connection then serves new requests and answers a PING.
        """
        app, port = startApp(self)
        await self.startProxy(deployArgs("app", f"127.0.0.1:{port}"))
        cancelled, kept = 16 * MiB, 5 * MiB

        def scenario() -> tuple[Response, Response, Response]:
            client = self.client()
            try:
                a = client.request(b"GET", b"/big/%d" % cancelled)
                b = client.request(b"GET", b"/big/%d" % kept)

                def onData(response: Response) -> None:
                    if response.streamID == a and len(response.body) >= 256 * 1024 and response.reset is None:
                        response.reset = -1  # by us
                        client.reset(a)

                client.onData = onData
                client.pump(lambda: client.responses[a].reset is not None)
                client.pump(client.finished(b))
                client.onData = None
                c = client.fetch(b"GET", b"/n/5")
                client.ping()
                client.pump(lambda: client.pingAcks >= 1)
                return client.responses[a], client.responses[b], c
            finally:
                client.close()

        cancelledResponse, keptResponse, after = await self.converse(scenario)
        self.assertFalse(cancelledResponse.ended)
        self.assertLess(len(cancelledResponse.body), cancelled)
        self.assertWellFormed(keptResponse)
        self.assertEqual(sha(bytes(keptResponse.body)), sha(payload(kept)))
        self.assertWellFormed(after)
        self.assertEqual(bytes(after.body), smallBody(5))
        await app.waitForCut(f"/big/{cancelled}")
        entry = await self.daemon.waitForLog(
            lambda e: e.get("path") == f"/big/{cancelled}", what="the cancelled request logged"
        )
        self.assertEqual((entry["status"], entry["proto"]), (499, "HTTP/2"))
        self.assertNotIn(f"/big/{kept}", app.cut)

    async def test_connectionSpecificResponseHeaders(self) -> None:
        """
        A backend answering with C{Connection}, C{Keep-Alive},
        C{Proxy-Connection}, C{Upgrade}, C{TE}, a field its C{Connection}
        names, and a chunked body (with or without trailers), or a body
        delimited by closing the connection: HTTP/2 clients get the body
        intact and none of those fields (h2 and nghttp2 would reset the
        stream or the connection otherwise), the other fields kept, and the
        connection keeps serving.  Padded, empty, repeated, upper-case and
        non-ASCII field values arrive as HTTP/2 allows them.
        """
        rawPort = startRawBackend(self)
        await self.startProxy(deployArgs("raw", f"127.0.0.1:{rawPort}"))

        def scenario() -> list[Response]:
            client = self.client()
            try:
                return [client.fetch(b"GET", path) for path in (b"/hop", b"/hop-trailer", b"/eof", b"/hop")]
            finally:
                client.close()

        for response in await self.converse(scenario):
            self.assertWellFormed(response)
            self.assertEqual(len(response.body), len(HOP_BODY), response)
            self.assertEqual(sha(bytes(response.body)), sha(HOP_BODY))
            names = response.names() | {k for k, _ in response.trailers}
            self.assertFalse(names & {b"te", b"x-hop-secret", b"trailer"}, response.headers)
            self.assertEqual(response.header(b"content-type"), b"text/plain")
        for path in ("/hop", "/hop-trailer", "/eof"):
            status, version, head, body = await curlH2(self, self.daemon.url(path))
            self.assertEqual((status, version), (200, "2"), path)
            self.assertEqual(sha(body), sha(HOP_BODY), path)
            self.assertIn("\nx-kept: yes", head)
            for name in ("connection", "keep-alive", "transfer-encoding", "upgrade", "x-hop-secret", "te"):
                self.assertNotIn("\n" + name + ":", head, path)

        response = await self.fetchAlone(b"GET", b"/odd-headers")
        self.assertWellFormed(response)
        self.assertEqual(bytes(response.body), b"ok")
        fields = [(k, v) for k, v in response.headers if not k.startswith(b":") and k != b"date"]
        for field in ((b"x-pad", b"padded value"), (b"x-empty", b""), (b"set-cookie", b"a=1; Path=/"),
                      (b"set-cookie", b"b=2; Path=/"), (b"x-latin", b"caf\xe9"), (b"x-upper-case", b"Value")):
            self.assertIn(field, fields)

    async def test_obsTextHeaderValues(self) -> None:
        """
        Request header values with bytes 0x80-0xFF (UTF-8 or not) reach the
        target byte for byte over HTTP/2, and response header values with
        such bytes reach the HTTP/2 client unchanged.
        """
        heads: list[bytes] = []
        rawPort = startRawBackend(self, heads)
        await self.startProxy(deployArgs("raw", f"127.0.0.1:{rawPort}"))
        sent = [
            (b"x-name", "Jos\u00e9".encode("utf-8")),
            (b"cookie", "name=J\u00f6rg; snow=\u2603".encode("utf-8")),
            (b"x-latin", b"caf\xe9 \x80\xff"),
        ]

        def scenario() -> Response:
            client = self.client()
            try:
                return client.fetch(b"GET", b"/obs-text", headers=sent)
            finally:
                client.close()

        response = await self.converse(scenario)
        self.assertWellFormed(response)
        self.assertEqual(bytes(response.body), b"ok")
        for field in ((b"x-name", b"Jos\xc3\xa9"), (b"set-cookie", b"name=J\xc3\xb6rg; Path=/"),
                      (b"x-latin", b"caf\xe9 \x80\xff")):
            self.assertIn(field, response.headers)
        [head] = [h for h in heads if h.startswith(b"GET /obs-text ")]
        received = [tuple(line.split(b": ", 1)) for line in head.split(b"\r\n")[1:]]
        received = [(name.lower(), value) for name, value in received]
        for field in sent:
            self.assertIn(field, received)
    async def test_earlyHints(self) -> None:
        """
        A backend's C{103 Early Hints} reaches HTTP/2 clients as an
        informational HEADERS frame on the stream before the final
        response (the h2 client would reject one after it), with its
        C{Link} and without connection-specific fields; the backend's C{100
        Continue} does not; curl (nghttp2) takes it too.
        """
        rawPort = startRawBackend(self)
        await self.startProxy(deployArgs("raw", f"127.0.0.1:{rawPort}"))

        def scenario() -> list[Response]:
            client = self.client()
            try:
                return [client.fetch(b"GET", b"/hints"), client.fetch(b"GET", b"/hints")]
            finally:
                client.close()

        for response in await self.converse(scenario):
            self.assertWellFormed(response)
            self.assertEqual(bytes(response.body), b"ok")
            self.assertEqual(
                response.informational,
                [[(b":status", b"103"), (b"link", b"</style.css>; rel=preload; as=style")]],
            )
        status, version, head, body = await curlH2(self, self.daemon.url("/hints"))
        self.assertEqual((status, version, body), (200, "2", b"ok"))
        self.assertIn("link: </style.css>; rel=preload; as=style", head)

    async def test_backendDown502(self) -> None:
        """
        A target that refuses connections (its health checks still pass)
        gives each HTTP/2 request, GET or POST, a complete 502 page on its
        stream, the connection staying usable; logged as HTTP/2 502.
        """
        healthy = startBackend(self, "health")
        deadPort = freePort()
        await self.startProxy(
            deployArgs("down", f"127.0.0.1:{deadPort}", f"--health-check-port={healthy.port}")
        )

        def scenario() -> list[Response]:
            client = self.client()
            try:
                return [
                    client.fetch(b"GET", b"/a"),
                    client.fetch(b"POST", b"/b", body=payload(200_000)),
                    client.fetch(b"GET", b"/c"),
                ]
            finally:
                client.close()

        for response in await self.converse(scenario):
            self.assertWellFormed(response, 502)
            self.assertTrue(response.header(b"content-type").startswith(b"text/html"), response.headers)
            self.assertIn(b"502", bytes(response.body))
            length = response.header(b"content-length")
            if length is not None:
                self.assertEqual(int(length), len(response.body))
        status, version, _, body = await curlH2(self, self.daemon.url("/d"))
        self.assertEqual((status, version), (502, "2"))
        self.assertIn(b"502", body)
        await self.daemon.waitForRequestLogs(lambda e: e["path"] in ("/a", "/b", "/c", "/d"), 4)
        logged = [(e["path"], e["status"], e["proto"]) for e in self.daemon.requestLogs()]
        for path in ("/a", "/b", "/c", "/d"):
            self.assertIn((path, 502, "HTTP/2"), logged)

    async def test_truncatedBackendResponse(self) -> None:
        """
        A backend that dies in the middle of a response body: over HTTP/1.1
        the proxy closes the connection, so the client knows the body is
        incomplete; over HTTP/2 the stream must be reset (not ended with
        END_STREAM as if complete), and the connection keeps serving.
        """
        rawPort = startRawBackend(self)
        await self.startProxy(deployArgs("raw", f"127.0.0.1:{rawPort}"))

        def scenario() -> tuple[Response, Response]:
            client = self.client()
            try:
                return client.fetch(b"GET", b"/truncated"), client.fetch(b"GET", b"/hop")
            finally:
                client.close()

        truncated, after = await self.converse(scenario)
        self.assertEqual(truncated.status, 200)
        self.assertLess(len(truncated.body), len(HOP_BODY))
        self.assertFalse(
            truncated.ended and truncated.reset is None,
            f"a truncated body ({len(truncated.body)} of {len(HOP_BODY)} bytes) ended as if complete",
        )
        self.assertWellFormed(after)
        self.assertEqual(sha(bytes(after.body)), sha(HOP_BODY))

    async def test_maxRequestBody(self) -> None:
        """
        C{--max-request-body} holds over HTTP/2 as over HTTP/1.1: a larger
        body is answered with 413 and never reaches the backend.
        """
        app, port = startApp(self)
        await self.startProxy(
            deployArgs("limited", f"127.0.0.1:{port}", "--host=limited.test", "--buffer-requests",
                       "--max-request-body=1000")
        )
        path = os.path.join(tempDir(self), "body")
        with open(path, "wb") as f:
            f.write(payload(5000))
        result = await runCommand(
            [_curlProgram(), "-sS", "--noproxy", "*", "--http1.1", "--max-time", "10", "-o", "/dev/null",
             "-w", "%{http_code}", "-H", "Host: limited.test", "--data-binary", f"@{path}",
             self.daemon.url("/echo/1")],
            timeout=15,
        )
        self.assertEqual(result.out, "413", result.err)
        status, version, _, _ = await curlH2(
            self, self.daemon.url("/echo/2"), "-H", "Host: limited.test", "--data-binary", f"@{path}"
        )
        self.assertEqual((status, version), (413, "2"))
        self.assertEqual(app.seen, [])

    async def test_windowOpenedBySettings(self) -> None:
        """
        A client that opens its stream windows by raising
        SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 section 6.9.2; here from 0)
        rather than with WINDOW_UPDATE gets the response data that was
        waiting for window.
        """
        app, port = startApp(self)
        await self.startProxy(deployArgs("app", f"127.0.0.1:{port}"))
        queued = threading.Event()

        def scenario() -> Response:
            client = self.client(window=0, timeout=5.0)
            try:
                streamID = client.request(b"GET", b"/n/3")
                if not queued.wait(CLIENT_TIMEOUT):
                    raise AssertionError("the response never reached the proxy")
                client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
                client.flush()
                client.pump(client.finished(streamID))
                return client.responses[streamID]
            finally:
                client.close()

        running = Deferred.fromCoroutine(self.converse(scenario))
        try:
            # Logged once the whole response is in the proxy, queued behind
            # the stream's empty window.
            await self.daemon.waitForLog(lambda e: e.get("path") == "/n/3", what="the response logged")
        finally:
            queued.set()
        response = await running
        self.assertWellFormed(response)
        self.assertEqual(bytes(response.body), smallBody(3))

    async def test_slowResponseOutlastsIdleTimeout(self) -> None:
        """
        C{--http-idle-timeout} closes connections waiting for a request; an
        HTTP/2 connection whose request the backend takes longer than that
        to answer is not idle, and gets its response (as HTTP/1.1 does).
        """
        backend = startBackend(self, "slow")
        await self.startProxy(deployArgs("slow", backend.address), daemonArgs=["--http-idle-timeout", "1s"])

        response = await self.fetchAlone(b"GET", b"/slow?s=2", timeout=10.0)
        self.assertWellFormed(response)
        self.assertEqual(json.loads(bytes(response.body))["uri"], "/slow?s=2")


# Connection errors, as an HTTP/2 conformance suite (h2spec) sends them


@attr.s(auto_attribs=True, frozen=True)
class RawOutcome:
    """
    What the server answered to raw bytes: its frames, whether it closed
    the connection (rather than leaving it open past the wait), and when.
    """

    frames: list[Any]
    closed: bool
    seconds: float

    def goAways(self) -> list[tuple[int, int]]:
        return goAways(self.frames)

    def pingAcks(self) -> list[bytes]:
        return [
            f.opaque_data for f in self.frames if isinstance(f, hyperframe.frame.PingFrame) and "ACK" in f.flags
        ]


def rawConversation(
    port: int,
    data: bytes,
    *,
    cafile: Optional[str] = None,
    serverName: bytes = b"",
    handshake: bool = True,
    until: Callable[[RawOutcome], bool] = lambda outcome: False,
    wait: float = 5.0,
) -> RawOutcome:
    """
    Connect (h2c, or TLS with C{cafile}), exchange prefaces and SETTINGS
    unless told not to, send C{data} as is, then read until the server
    closes the connection, C{until} holds, or C{wait} seconds pass.
    """
    sock = connectH2(port, wait, cafile, serverName)
    received = b""

    def frames() -> list[Any]:
        complete, rest = received, b""
        while len(complete) >= 9:
            length = int.from_bytes(complete[:3], "big") + 9
            if len(complete) < length:
                break
            rest += complete[:length]
            complete = complete[length:]
        return parseFrames(rest)

    def read() -> bool:
        nonlocal received
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            return False
        received += chunk
        return bool(chunk)

    try:
        if handshake:
            sock.sendall(H2_PREFACE + hyperframe.frame.SettingsFrame(0).serialize())
            while not any(isinstance(f, hyperframe.frame.SettingsFrame) for f in frames()):
                if not read():
                    raise AssertionError(f"closed during the handshake: {frames()}")
            sock.sendall(SETTINGS_ACK)
            received = b""
        sock.sendall(data)
        started = time.monotonic()
        sock.settimeout(wait)
        open_ = True
        while open_ and not until(RawOutcome(frames(), False, 0)):
            try:
                open_ = read()
            except (socket.timeout, TimeoutError):
                break
        return RawOutcome(frames(), not open_, time.monotonic() - started)
    finally:
        sock.close()


def conformanceCases() -> dict[str, tuple[bytes, int]]:
    """
    The connection errors whose code or close went wrong, each C{(bytes
    sent after the handshake, the GOAWAY's expected error code)}.
    """
    cases = {
        what: (headersFrame(requestBlock() + bad), h2.errors.ErrorCodes.COMPRESSION_ERROR)
        for what, bad in INVALID_HEADER_BLOCKS.items()
    }
    cases["table size update at the end"] = (
        headersFrame(requestBlock() + b"\x21"), h2.errors.ErrorCodes.COMPRESSION_ERROR
    )
    cases["SETTINGS ACK with a payload"] = (
        rawFrame(0x4, 0x1, 0, b"\x00\x03\x00\x00\x00\x64"), h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    )
    cases["PING of 7 bytes"] = (rawFrame(0x6, 0, 0, b"1234567"), h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
    return cases


class ConnectionErrorTests(TestCase):
    """
    Connection errors against a real daemon, over h2c and over TLS (ALPN
    C{h2}) alike: a GOAWAY with RFC 9113's error code, then the connection
    closes at once (it stayed open over TLS); a client's GOAWAY is not one.
    """

    timeout = 60

    async def startProxy(self) -> str:
        """
        A daemon with C{--h2c} and a service on C{tls.test} with a custom
        certificate; returns the certificate's path.
        """
        certificate, key = certificateFiles(self, "tls.test")
        _, port = startApp(self)
        self.daemon = await startDaemon(self, extraArgs=["--h2c"])
        for args in (
            deployArgs("secure", f"127.0.0.1:{port}", "--host=tls.test", "--tls",
                       f"--tls-certificate-path={certificate}", f"--tls-private-key-path={key}"),
            deployArgs("sink", f"127.0.0.1:{startSink(self).port}", "--host=sink.test"),
        ):
            result = await ctl(self.daemon.socket, *args)
            self.assertEqual(result.code, 0, result.err)
        return certificate

    async def converseAll(self, **connection: Any) -> dict[str, RawOutcome]:
        """
        Each of L{conformanceCases} on a connection of its own, all at once.
        """
        cases = conformanceCases()
        outcomes = await gatherResults(
            [inThread(lambda data=data: rawConversation(data=data, **connection)) for data, _ in cases.values()]
        )
        return dict(zip(cases, outcomes))

    def assertNoErrorLogged(self) -> None:
        errors = [e for e in self.daemon.logs() if e.get("level") in ("ERROR", "CRITICAL")]
        self.assertEqual(errors, [])

    def assertClosedWith(self, outcomes: dict[str, RawOutcome], transport: str) -> None:
        expected = {what: ([code], True) for what, (_, code) in conformanceCases().items()}
        actual = {what: ([c for c, _ in o.goAways()], o.closed) for what, o in outcomes.items()}
        self.assertEqual(actual, expected, f"over {transport}\n{self.daemon.output.describe()}")
        for what, outcome in outcomes.items():
            self.assertLess(outcome.seconds, 2.0, f"{what} over {transport}: closed after {outcome.seconds:.2f}s")

    async def test_connectionErrors(self) -> None:
        """
        Invalid header blocks (COMPRESSION_ERROR), a SETTINGS ACK with a
        payload and a short PING (FRAME_SIZE_ERROR) get a GOAWAY with that
        code and a closed connection, over h2c and over TLS; so does an
        invalid connection preface over TLS (PROTOCOL_ERROR; over h2c the
        plain port reads it as HTTP/1.1).  The daemon logs no error.
        """
        certificate = await self.startProxy()
        self.assertClosedWith(await self.converseAll(port=self.daemon.port), "h2c")
        tls = {"port": self.daemon.httpsPort, "cafile": certificate, "serverName": b"tls.test"}
        self.assertClosedWith(await self.converseAll(**tls), "TLS")
        preface = await inThread(
            lambda: rawConversation(data=b"INVALID CONNECTION PREFACE\r\n\r\n", handshake=False, **tls)
        )
        self.assertEqual((preface.goAways(), preface.closed), ([(h2.errors.ErrorCodes.PROTOCOL_ERROR, 0)], True))
        self.assertNoErrorLogged()

    async def test_pingAfterGoAway(self) -> None:
        """
        A PING after the client's GOAWAY (NO_ERROR) is answered with a PING
        ACK, over h2c and over TLS, and the connection is left to the
        client to close.
        """
        certificate = await self.startProxy()
        ping = hyperframe.frame.PingFrame(0)
        ping.opaque_data = b"h2spec\x00\x00"
        data = hyperframe.frame.GoAwayFrame(0).serialize() + ping.serialize()
        for transport, connection in (
            ("h2c", {"port": self.daemon.port}),
            ("TLS", {"port": self.daemon.httpsPort, "cafile": certificate, "serverName": b"tls.test"}),
        ):
            outcome = await inThread(
                lambda connection=connection: rawConversation(  # type: ignore[misc]
                    data=data, until=lambda o: bool(o.pingAcks()), **connection
                )
            )
            self.assertEqual(
                (outcome.pingAcks(), outcome.goAways(), outcome.closed), ([b"h2spec\x00\x00"], [], False), transport
            )
        self.assertNoErrorLogged()

    async def test_connectionErrorDuringStreamedUpload(self) -> None:
        """
        A connection error while a request body is being streamed to its
        target closes the target connection, and nothing fails on the way:
        the target connection's producer, stopped as it closes, ends the
        stream the connection error already dropped (that raised
        C{KeyError} in C{endRequest}, logged as an unhandled error).
        """
        await self.startProxy()
        block = requestBlock(b"sink.test", b"POST", b"/upload")
        upload = rawFrame(0x1, 0x4, 1, block) + rawFrame(0x0, 0, 1, b"x" * 100)
        sock = await inThread(lambda: connectH2(self.daemon.port, 10))
        self.addCleanup(sock.close)
        await inThread(lambda: sock.sendall(H2_PREFACE + hyperframe.frame.SettingsFrame(0).serialize() + upload))
        sink = self.sink
        await sink.waitFor(lambda: b"x" * 100 in sink.received, "the body's start at the target")
        await inThread(lambda: sock.sendall(headersFrame(requestBlock() + b"\xc6", streamID=3)))
        try:
            await sink.waitFor(lambda: sink.lost, "the target connection to close")
        finally:
            sock.close()
        # Every line logged before this request's is in.
        status, _, _, _ = await curlH2(self, f"http://127.0.0.1:{self.daemon.port}/marker", "-H", "Host: none.test")
        await self.daemon.waitForLog(lambda e: e.get("path") == "/marker", what="the marker request")
        self.assertEqual(status, 404)
        self.assertNoErrorLogged()


class _Sink(Protocol):
    """
    A target that answers health checks and reads every other request
    forever, recording what it received and when its connection closes.
    """

    def __init__(self, sink: "Sink") -> None:
        self.sink = sink
        self.request = False  # a request other than a health check came

    def dataReceived(self, data: bytes) -> None:
        if not self.request and data.startswith(b"GET /up "):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nup\n")
            return
        self.request = True
        self.sink.received += data
        self.sink.changed()

    def connectionLost(self, reason: Any) -> None:
        if self.request:
            self.sink.lost = True
            self.sink.changed()


class Sink:
    """
    A running L{_Sink} target.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost = False
        self.port = 0
        self._waiters: list[tuple[Callable[[], bool], Deferred]] = []

    def changed(self) -> None:
        for entry in list(self._waiters):
            if entry[0]():
                self._waiters.remove(entry)
                entry[1].callback(None)

    def waitFor(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> Deferred:
        d: Deferred = Deferred()
        if condition():
            d.callback(None)
            return d
        self._waiters.append((condition, d))
        return bounded(d, timeout, what)


def startSink(testCase: TestCase) -> Sink:
    """
    A L{Sink} on 127.0.0.1, kept as C{testCase.sink}.
    """
    sink = testCase.sink = Sink()  # type: ignore[attr-defined]
    factory = Factory.forProtocol(lambda: _Sink(sink))
    factory.noisy = False
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    sink.port = listening.getHost().port
    return sink
