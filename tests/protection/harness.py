"""
The protection tests' harness, on top of L{tests.integration.harness}:

  - L{RecordingBackend}: a real web server on 127.0.0.1 that records every
    request it receives as soon as its head arrives (method, path, the body
    bytes as they come, whether the body was complete) and counts its open
    and busy connections;
  - L{RawClient} (and L{SlowReader}): misbehaving clients as small
    protocols on the real reactor;
  - L{DaemonProbe}: the daemon's resident memory and its temporary files,
    read from C{/proc};
  - L{GoodClient}: a treq loop of GETs running during an attack, checking
    every answer and its latency;
  - L{protectedProxy}: a daemon with short timeouts and a service deployed as
    Kamal does (C{--buffer-requests --buffer-responses}).

Nothing here sleeps to synchronise: waits are on events or bounded polls.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, Callable, Optional, Sequence

import attr
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from tests.integration.harness import (
    Daemon,
    bounded,
    ctl,
    fetch,
    httpPool,
    pollUntil,
    startDaemon,
    tempDir,
)

MiB = 1024 * 1024

RSS_GROWTH_LIMIT = 50 * MiB
"""How much the daemon's resident memory may grow during one attack."""

GOOD_LATENCY_LIMIT = 1.0
"""Seconds the well-behaved client may wait for any one answer."""

BIG_SIZE = 10 * MiB
"""The size of C{/big}'s answer."""


def bigBody() -> bytes:
    """
    The answer of C{/big}: L{BIG_SIZE} bytes of a recognisable pattern.
    """
    return (bytes(range(256)) * (BIG_SIZE // 256))[:BIG_SIZE]


_BIG = bigBody()


# The backend


@attr.s(auto_attribs=True, eq=False)
class SeenRequest:
    """
    A request as the backend received it, recorded when its head arrived.

    @ivar declared: its C{Content-Length}, L{None} when chunked.
    @ivar complete: whether its whole body arrived.
    @ivar aborted: whether its connection was lost before that.
    """

    method: str
    path: str
    headers: dict[str, str]
    declared: Optional[int]
    headAt: float
    body: bytearray = attr.ib(factory=bytearray)
    complete: bool = False
    completeAt: Optional[float] = None
    aborted: bool = False


class _RecordingRequest(Request):
    record: Optional[SeenRequest] = None

    def gotLength(self, length: Optional[int]) -> None:
        channel = self.channel
        path = channel._path.decode("latin-1")
        if path != "/up":
            self.record = SeenRequest(
                channel._command.decode("latin-1"),
                path,
                {
                    k.decode("latin-1").lower(): b",".join(v).decode("latin-1")
                    for k, v in self.requestHeaders.getAllRawHeaders()
                },
                length,
                reactor.seconds(),
            )
            backend: RecordingBackend = channel.site.backend
            self._backend = backend
            backend.seen.append(self.record)
            backend.busy += 1
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.record is not None:
            self.record.body += data
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.record is not None:
            self.record.complete = True
            self.record.completeAt = reactor.seconds()
        super().requestReceived(command, path, version)

    def _done(self) -> None:
        if self.record is not None and not getattr(self, "_counted", False):
            self._counted = True
            self._backend.busy -= 1

    def finish(self) -> None:
        super().finish()
        self._done()

    def connectionLost(self, reason: Failure) -> None:
        if self.record is not None and not self.record.complete:
            self.record.aborted = True
        super().connectionLost(reason)
        self._done()


@implementer(IPullProducer)
class _BigProducer:
    """
    Writes L{_BIG} 64 KiB at a time as the connection asks for more, so a
    request is busy until the last bytes are taken.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.offset = 0
        self.view = memoryview(_BIG)

    def resumeProducing(self) -> None:
        request = self.request
        if request is None:
            return
        piece = self.view[self.offset : self.offset + 65536]
        self.offset += len(piece)
        request.write(bytes(piece))
        if self.offset >= len(self.view):
            self.request = None
            request.unregisterProducer()
            request.finish()

    def stopProducing(self) -> None:
        self.request = None


class _Resource(Resource):
    isLeaf = True

    def render(self, request: Request) -> Any:
        path = request.path
        if path == b"/up":
            return b"up\n"
        if path.startswith(b"/good/"):
            return b"good " + path
        if path == b"/big":
            request.setHeader(b"content-length", b"%d" % BIG_SIZE)
            request.registerProducer(_BigProducer(request), False)
            return NOT_DONE_YET
        body = request.content.read()
        return b"ok %s %s %d" % (request.method, path, len(body))


class RecordingBackend:
    """
    A web server on 127.0.0.1 that records every request but health checks
    (L{seen}), answers C{/good/...} with C{good <path>}, C{/big} with
    L{BIG_SIZE} bytes and anything else with C{ok <method> <path> <body
    length>}.

    @ivar busy: requests received and not yet answered completely.
    """

    def __init__(self) -> None:
        self.seen: list[SeenRequest] = []
        self.busy = 0
        site = Site(_Resource(), timeout=None)
        site.requestFactory = _RecordingRequest
        site.backend = self  # type: ignore[attr-defined]
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        self._factory = WrappingFactory(site)
        self._factory.noisy = False
        self._listener: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def openConnections(self) -> int:
        return len(self._factory.protocols)

    def start(self) -> "RecordingBackend":
        self._listener = reactor.listenTCP(0, self._factory, interface="127.0.0.1")
        self.port = self._listener.getHost().port
        return self

    def attack(self) -> list[SeenRequest]:
        """
        What it received apart from the well-behaved client's GETs.
        """
        return [r for r in self.seen if not r.path.startswith("/good/")]

    def paths(self) -> list[str]:
        return [r.path for r in self.attack()]

    def assertNoPartialRequest(self, testCase: TestCase) -> None:
        """
        Every request that reached the backend arrived whole, with as many
        body bytes as it declared.
        """
        for r in self.seen:
            testCase.assertTrue(r.complete, f"{r.method} {r.path} reached the target incomplete")
            testCase.assertFalse(r.aborted, f"{r.method} {r.path} was cut off at the target")
            if r.declared is not None:
                testCase.assertEqual(len(r.body), r.declared, f"{r.method} {r.path} body size")

    async def stop(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stopListening()
        for wrapper in list(self._factory.protocols):
            wrapper.transport.abortConnection()
        await pollUntil(lambda: not self._factory.protocols, 5.0, "backend connections to close")


# Raw clients


class RawClient(Protocol):
    """
    A client that sends what it is told and keeps everything it receives.

    @ivar received: the bytes received so far.
    @ivar closed: fires when the connection is gone.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: Deferred = Deferred()
        self.isClosed = False
        self.closedAt: Optional[float] = None
        self.connectedAt: Optional[float] = None
        self.firstByteAt: Optional[float] = None

    def connectionMade(self) -> None:
        self.connectedAt = reactor.seconds()

    def dataReceived(self, data: bytes) -> None:
        if self.firstByteAt is None:
            self.firstByteAt = reactor.seconds()
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.isClosed = True
        self.closedAt = reactor.seconds()
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        if not self.isClosed:
            self.transport.write(data)

    @property
    def status(self) -> Optional[int]:
        """
        The status code of the first response, once its status line is in.
        """
        end = self.received.find(b"\r\n")
        if end == -1:
            return None
        parts = bytes(self.received[:end]).split(b" ")
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else -1

    @property
    def responses(self) -> int:
        """
        How many status lines were received (error pages and our bodies do
        not contain one).
        """
        data = bytes(self.received)
        return data.count(b"\r\nHTTP/1.") + int(data.startswith(b"HTTP/1."))

    def head(self) -> bytes:
        return bytes(self.received).partition(b"\r\n\r\n")[0]

    def body(self) -> bytes:
        return bytes(self.received).partition(b"\r\n\r\n")[2]

    def reset(self) -> None:
        """
        Close with a TCP RST (SO_LINGER 0), dropping anything unsent.
        """
        if self.isClosed:
            return
        handle = self.transport.getHandle()
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abortConnection()

    def waitClosed(self, timeout: float, what: str = "the proxy to close the connection") -> Deferred:
        if self.isClosed:
            d: Deferred = Deferred()
            d.callback(None)
            return d
        d = Deferred()
        self.closed.addBoth(lambda r: (d.called or d.callback(None), r)[1])
        return bounded(d, timeout, what)


async def connectRaw(testCase: TestCase, port: int, protocol: Optional[RawClient] = None) -> RawClient:
    """
    Connect C{protocol} (a new L{RawClient} by default) to 127.0.0.1:C{port};
    it is aborted in C{testCase}'s cleanup if still open.
    """
    proto = protocol if protocol is not None else RawClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    await bounded(connectProtocol(endpoint, proto), 5.0, "a connection to the proxy")
    testCase.addCleanup(lambda: None if proto.isClosed else proto.transport.abortConnection())
    return proto


class SlowReader(RawClient):
    """
    A client that reads at most C{rate} bytes a second (pausing its socket
    between reads), or not at all once L{stopReading} is called.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.throttled = True
        self._resume: Any = None

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.throttled and not self.isClosed:
            self.transport.pauseProducing()
            self._resume = reactor.callLater(len(data) / self.rate, self._resumeReading)

    def _resumeReading(self) -> None:
        self._resume = None
        if not self.isClosed:
            self.transport.resumeProducing()

    def stopReading(self) -> None:
        self.throttled = True
        self.rate = 1e-9
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self._resume = None
        if not self.isClosed:
            self.transport.pauseProducing()

    def fullSpeed(self) -> None:
        self.throttled = False
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self._resume = None
        if not self.isClosed:
            self.transport.resumeProducing()

    def connectionLost(self, reason: Failure) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        super().connectionLost(reason)


def connectSmallWindow(testCase: TestCase, port: int, protocol: RawClient, receiveBuffer: int = 32768) -> RawClient:
    """
    Connect C{protocol} over a socket whose receive buffer is only
    C{receiveBuffer} bytes (set before connecting, so the kernel cannot
    swallow a big answer on the client's behalf).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        sock.settimeout(5.0)
        sock.connect(("127.0.0.1", port))  # loopback: the handshake completes in the call
        sock.setblocking(False)
        factory = Factory.forProtocol(lambda: protocol)
        reactor.adoptStreamConnection(sock.fileno(), socket.AF_INET, factory)
    finally:
        sock.close()  # the reactor holds its own duplicate
    testCase.addCleanup(lambda: None if protocol.isClosed else protocol.transport.abortConnection())
    return protocol


async def sendPaced(
    client: RawClient,
    data: bytes,
    piece: int,
    interval: float,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """
    Send C{data} C{piece} bytes every C{interval} seconds until all is sent,
    the connection closes or C{stop()} holds; returns the bytes sent.
    """
    sent = 0
    while sent < len(data) and not client.isClosed and not stop():
        client.send(data[sent : sent + piece])
        sent += min(piece, len(data) - sent)
        if sent < len(data):
            await deferLater(reactor, interval, lambda: None)
    return sent


# The daemon's resources


class DaemonProbe:
    """
    The daemon's memory and temporary files, from C{/proc/PID}.

    @param tmpdir: the daemon's C{TMPDIR}, where its spilled bodies go.
    """

    def __init__(self, pid: int, tmpdir: str) -> None:
        self.pid = pid
        self.tmpdir = tmpdir

    def rss(self) -> int:
        """
        Resident memory in bytes (C{VmRSS}).
        """
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for {self.pid}")

    def tempFiles(self) -> list[str]:
        """
        The daemon's open file descriptors on temporary files: unnamed ones
        in its C{TMPDIR} (shown as deleted), and any named
        C{kamal-proxy-buffer-*} or deleted file anywhere.
        """
        found = []
        base = f"/proc/{self.pid}/fd"
        for fd in os.listdir(base):
            try:
                target = os.readlink(os.path.join(base, fd))
            except OSError:
                continue  # closed meanwhile
            if (
                target.startswith(self.tmpdir)
                or "kamal-proxy-buffer-" in target
                or (target.startswith("/") and target.endswith(" (deleted)"))
            ):
                found.append(target)
        return found

    def leftOnDisk(self) -> list[str]:
        """
        Files left in the daemon's C{TMPDIR}.
        """
        return os.listdir(self.tmpdir)


# The well-behaved client


class GoodClient:
    """
    GETs C{/good/N} in a loop on a keep-alive connection while an attack
    runs, checking each answer's status, body and latency.
    """

    def __init__(self, testCase: TestCase, daemon: Daemon, interval: float = 0.05) -> None:
        self.daemon = daemon
        self.pool = httpPool(testCase, 2)
        self.interval = interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._running = False
        self._done: Optional[Deferred] = None
        testCase.addCleanup(self.stop)

    def start(self) -> "GoodClient":
        self._running = True
        self._done = Deferred.fromCoroutine(self._loop())
        return self

    async def _loop(self) -> None:
        n = 0
        while self._running and n < 5000:
            n += 1
            path = f"/good/{n}"
            started = reactor.seconds()
            try:
                status, _, body = await fetch(self.daemon.url(path), pool=self.pool, timeout=5.0)
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                self.failures.append(f"GET {path}: {e!r}")
                self.latencies.append(reactor.seconds() - started)
            else:
                elapsed = reactor.seconds() - started
                self.latencies.append(elapsed)
                if status != 200 or body != b"good " + path.encode():
                    self.failures.append(f"GET {path}: {status} {body[:80]!r}")
                elif elapsed >= GOOD_LATENCY_LIMIT:
                    self.failures.append(f"GET {path}: took {elapsed:.3f}s")
            await deferLater(reactor, self.interval, lambda: None)

    async def stop(self) -> None:
        self._running = False
        if self._done is not None:
            await bounded(self._done, 10.0, "the well-behaved client to stop")

    async def check(self, testCase: TestCase, minimum: int = 5) -> None:
        """
        Once it has made at least C{minimum} requests (bounded wait), stop,
        then assert every answer was right and prompt.
        """
        await pollUntil(
            lambda: len(self.latencies) >= minimum or bool(self.failures),
            minimum * (GOOD_LATENCY_LIMIT + self.interval),
            f"{minimum} requests of the well-behaved client",
        )
        await self.stop()
        testCase.assertEqual(self.failures, [], "the well-behaved client was affected")
        testCase.assertGreaterEqual(len(self.latencies), minimum, "the well-behaved client made too few requests")
        testCase.assertLess(max(self.latencies), GOOD_LATENCY_LIMIT)


# The setup


@attr.s(auto_attribs=True)
class Protected:
    """
    A daemon serving one service on a L{RecordingBackend}.
    """

    daemon: Daemon
    backend: RecordingBackend
    probe: DaemonProbe
    good: GoodClient
    testCase: TestCase
    rssBefore: int = 0
    tempBefore: int = 0

    @property
    def port(self) -> int:
        return self.daemon.port

    def snapshot(self) -> None:
        """
        Note the daemon's memory and temporary files before an attack.
        """
        self.rssBefore = self.probe.rss()
        self.tempBefore = len(self.probe.tempFiles())

    async def assertResourcesBack(self, testCase: TestCase, label: str) -> int:
        """
        After an attack: the temporary files are all gone (bounded poll) and
        the resident memory grew less than L{RSS_GROWTH_LIMIT}; returns the
        growth (also printed, for the report).
        """
        await pollUntil(
            lambda: len(self.probe.tempFiles()) <= self.tempBefore,
            5.0,
            f"the daemon's temporary files to close: {self.probe.tempFiles()}",
        )
        testCase.assertEqual(self.probe.leftOnDisk(), [], "temporary files left on disk")
        after = self.probe.rss()
        growth = after - self.rssBefore
        print(
            f"\n[protection] {label}: RSS {self.rssBefore / MiB:.1f} MiB -> {after / MiB:.1f} MiB"
            f" (growth {growth / MiB:+.1f} MiB)"
        )
        testCase.assertLess(growth, RSS_GROWTH_LIMIT, f"{label}: the daemon's memory grew too much")
        return growth

    async def assertStillServes(self, testCase: TestCase) -> None:
        """
        A fresh client's POST still goes through whole.
        """
        status, _, body = await fetch(self.daemon.url("/after"), "POST", data=b"x" * 1000, timeout=5.0)
        testCase.assertEqual((status, body), (200, b"ok POST /after 1000"))


DEFAULT_DAEMON_ARGS = ("--http-read-timeout", "2s", "--http-write-timeout", "2s")


async def protectedProxy(
    testCase: TestCase,
    daemonArgs: Sequence[str] = DEFAULT_DAEMON_ARGS,
    deployArgs: Sequence[str] = (),
    bufferResponses: bool = True,
) -> Protected:
    """
    A daemon on 127.0.0.1 (C{daemonArgs}, its C{TMPDIR} a fresh directory)
    with a service C{web} on a new L{RecordingBackend}, deployed as Kamal
    does (C{--buffer-requests --buffer-responses}, plus C{deployArgs};
    without C{--buffer-responses} if not C{bufferResponses}, for controls);
    warmed up by one request, then snapshotted.  Everything is stopped in
    C{testCase}'s cleanup.
    """
    tmpdir = tempDir(testCase)
    daemon = await startDaemon(testCase, extraArgs=list(daemonArgs), env={"TMPDIR": tmpdir})
    backend = RecordingBackend().start()
    testCase.addCleanup(backend.stop)
    result = await ctl(
        daemon.socket,
        "deploy",
        "web",
        f"--target={backend.address}",
        "--health-check-interval=100ms",
        "--buffer-requests",
        *(["--buffer-responses"] if bufferResponses else []),
        *deployArgs,
    )
    testCase.assertEqual((result.code, result.err), (0, ""), "deploy")
    status, _, body = await fetch(daemon.url("/good/warmup"), timeout=5.0)
    testCase.assertEqual((status, body), (200, b"good /good/warmup"))
    protected = Protected(
        daemon, backend, DaemonProbe(daemon.pid, tmpdir), GoodClient(testCase, daemon), testCase
    )
    protected.snapshot()
    return protected


__all__ = [
    "BIG_SIZE",
    "DaemonProbe",
    "GoodClient",
    "MiB",
    "Protected",
    "RawClient",
    "RecordingBackend",
    "SeenRequest",
    "SlowReader",
    "bigBody",
    "connectRaw",
    "connectSmallWindow",
    "protectedProxy",
    "sendPaced",
]
