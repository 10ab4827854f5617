"""
The integration tests' harness: the daemon and the command line run as real
subprocesses (spawned on the global reactor, their output collected line by
line), backends are real Twisted web servers in the test process, and
clients are treq (or curl) on 127.0.0.1.

Synchronisation is always on an event: a log line, a process exit, a
request reaching a backend, or a bounded poll; every wait has a deadline.
Everything started here is stopped by the test's cleanups.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sys
import tempfile
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import attr
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from kamalproxy.control.commands import List

STARTUP_TIMEOUT = 15.0
"""Seconds a daemon has to open its control socket."""

STOP_TIMEOUT = 13.0
"""Seconds a daemon has to exit after SIGTERM (its own drain cap is 10 s) before SIGKILL."""

COMMAND_TIMEOUT = 30.0
"""Seconds a command line run may take before it is killed."""

READY_MARK = "Server started"
"""
The daemon's log line once its listeners and control socket are bound
(L{startDaemon} then waits for an answer on the socket).
"""

_DAEMON_ENVIRONMENT = (
    "HTTP_PORT", "HTTPS_PORT", "METRICS_PORT", "STATUS_PORT", "LOG_FORMAT", "CACHE_SIZE", "MAX_CACHE_ITEM_SIZE",
    "DEBUG", "BIND", "STATE_DIR",
)


def executable(name: str) -> str:
    """
    The console script C{name} of the Python running the tests (its venv's
    C{bin}), else the one on C{PATH}.
    """
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def _ephemeralPorts() -> tuple[int, int]:
    """
    The range the kernel takes the local ports of outgoing connections from.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(word) for word in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago, chosen below the
    ephemeral range when there is room (from 10000 up), so that no outgoing
    connection takes it as its local port before it is bound.
    """
    low = _ephemeralPorts()[0]
    candidates = [random.randrange(10000, low) for _ in range(20)] if low > 11000 else []
    for port in [*candidates, 0]:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(("127.0.0.1", port))
            return int(probe.getsockname()[1])
        except OSError:
            continue
        finally:
            probe.close()
    raise RuntimeError("no free port")


def tempDir(testCase: TestCase) -> str:
    """
    A new directory under the system temp dir (short, so a UNIX socket path
    inside it fits), removed when the test ends.
    """
    path = tempfile.mkdtemp(prefix="kp-it-")
    testCase.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def environment(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """
    The environment for a subprocess: ours without anything that would
    change the daemon's or the CLI's defaults, plus C{extra}.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KAMAL_PROXY_") and k not in _DAEMON_ENVIRONMENT
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def parseTime(value: str) -> float:
    """
    POSIX seconds of a log line's C{time} (C{2026-11-26T17:59:05.689160Z}).
    """
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def bounded(d: Deferred, timeout: float, what: str) -> Deferred:
    """
    C{d}, failing with an L{AssertionError} naming C{what} after C{timeout}
    seconds.
    """

    def timedOut(failure: Failure) -> Failure:
        if failure.check(TimeoutError):
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        return failure

    return d.addTimeout(timeout, reactor).addErrback(timedOut)


async def pollUntil(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """
    Check C{condition} every C{interval} seconds until it holds, at most
    C{timeout} seconds.

    @raise AssertionError: it never held.
    """
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, interval, lambda: None)


class ProcessExited(AssertionError):
    """
    A process ended while a test still waited for its output.
    """


class OutputCollector(ProcessProtocol):
    """
    Collects a subprocess's standard output as lines and its standard error,
    and lets tests wait for a line or for the exit.

    @ivar lines: the complete stdout lines so far, decoded.
    @ivar exitCode: the exit status once ended; minus the signal number if a
        signal killed it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exitCode: Optional[int] = None
        self._partial = b""
        self._lineWaiters: list[tuple[Callable[[str], bool], Deferred]] = []
        self._endWaiters: list[Deferred] = []

    def outReceived(self, data: bytes) -> None:
        self.stdout += data
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            self._addLine(raw.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def _addLine(self, line: str) -> None:
        self.lines.append(line)
        for entry in list(self._lineWaiters):
            predicate, d = entry
            if predicate(line):
                self._lineWaiters.remove(entry)
                d.callback(line)

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self._addLine(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        value = reason.value
        code = getattr(value, "exitCode", None)
        self.exitCode = code if code is not None else -(getattr(value, "signal", 0) or 0)
        waiters, self._lineWaiters = self._lineWaiters, []
        for _, d in waiters:
            d.errback(ProcessExited(f"{self.name} exited with {self.exitCode}\n{self.describe()}"))
        ends, self._endWaiters = self._endWaiters, []
        for d in ends:
            d.callback(self.exitCode)

    @property
    def ended(self) -> bool:
        return self.exitCode is not None

    def describe(self) -> str:
        """
        The output so far, for failure messages.
        """
        out = "\n".join(self.lines[-40:])
        err = self.stderr.decode("utf-8", "replace")[-4000:]
        return f"--- stdout (last lines) ---\n{out}\n--- stderr ---\n{err}"

    def waitForLine(self, predicate: Callable[[str], bool], timeout: float, what: str) -> Deferred:
        """
        Fires with the first line (already seen or to come) that satisfies
        C{predicate}.

        @raise AssertionError: after C{timeout} seconds.
        @raise ProcessExited: the process ends first.
        """
        for line in self.lines:
            if predicate(line):
                d: Deferred = Deferred()
                d.callback(line)
                return d
        if self.ended:
            d = Deferred()
            d.errback(ProcessExited(f"{self.name} exited before {what}\n{self.describe()}"))
            return d
        d = Deferred(lambda d: self._cancelLineWait(d))
        self._lineWaiters.append((predicate, d))
        return bounded(d, timeout, f"{what} from {self.name}\n{self.describe()}")

    def _cancelLineWait(self, d: Deferred) -> None:
        self._lineWaiters[:] = [(p, w) for p, w in self._lineWaiters if w is not d]

    def waitForExit(self, timeout: float) -> Deferred:
        """
        Fires with the exit code.

        @raise AssertionError: after C{timeout} seconds.
        """
        d: Deferred = Deferred()
        if self.ended:
            d.callback(self.exitCode)
            return d
        d = Deferred(lambda d: self._endWaiters.remove(d) if d in self._endWaiters else None)
        self._endWaiters.append(d)
        return bounded(d, timeout, f"{self.name} to exit\n{self.describe()}")


class Daemon:
    """
    A C{kamal-proxy run} (or C{twistd kamal-proxy}) subprocess.

    @ivar port: its HTTP port on 127.0.0.1.
    @ivar socket: its control socket path.
    @ivar stateDir: its state directory.
    @ivar output: its L{OutputCollector}.
    """

    def __init__(
        self, port: int, socketPath: str, stateDir: str, output: OutputCollector, process: Any
    ) -> None:
        self.port = port
        self.socket = socketPath
        self.stateDir = stateDir
        self.output = output
        self.process = process
        self.pid: int = process.pid
        self.httpsPort = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> list[dict[str, Any]]:
        """
        Every stdout line that is a JSON object, parsed.
        """
        parsed = []
        for line in self.output.lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                parsed.append(value)
        return parsed

    def requestLogs(self) -> list[dict[str, Any]]:
        """
        The C{"msg": "Request"} lines so far.
        """
        return [entry for entry in self.logs() if entry.get("msg") == "Request"]

    def waitForLog(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0, what: str = "a log line"
    ) -> Deferred:
        """
        Fires with the first JSON log line (parsed) satisfying C{predicate}.
        """

        def matches(line: str) -> bool:
            try:
                value = json.loads(line)
            except ValueError:
                return False
            return isinstance(value, dict) and predicate(value)

        return self.output.waitForLine(matches, timeout, what).addCallback(json.loads)

    def waitForRequestLogs(
        self, predicate: Callable[[dict[str, Any]], bool], count: int, timeout: float = 10.0
    ) -> Deferred:
        """
        Fires once C{count} request lines satisfying C{predicate} have been
        written (a client may read its response before the daemon's log
        line reaches us).
        """
        seen = 0

        def counted(entry: dict[str, Any]) -> bool:
            nonlocal seen
            if entry.get("msg") == "Request" and predicate(entry):
                seen += 1
            return seen >= count

        return self.waitForLog(counted, timeout, f"{count} request lines")

    def waitForMessage(self, fragment: str, timeout: float = 10.0) -> Deferred:
        """
        Fires with the first stdout line containing C{fragment}.
        """
        return self.output.waitForLine(lambda line: fragment in line, timeout, repr(fragment))

    def signal(self, name: str) -> None:
        """
        Send signal C{name} (C{"TERM"}, C{"KILL"}) unless it has exited.
        """
        try:
            self.process.signalProcess(name)
        except ProcessExitedAlready:
            pass

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """
        SIGTERM, wait for the exit (SIGKILL after C{timeout} seconds) and
        return the exit code.
        """
        if self.output.ended:
            return self.output.exitCode  # type: ignore[return-value]
        self.signal("TERM")
        try:
            return await self.output.waitForExit(timeout)  # type: ignore[no-any-return]
        except AssertionError:
            self.signal("KILL")
            await self.output.waitForExit(5.0)
            raise

    async def cleanup(self) -> None:
        """
        Make sure the process is gone (test cleanup).
        """
        if self.output.ended:
            return
        try:
            await self.stop()
        except AssertionError:
            pass


async def startDaemon(
    testCase: TestCase,
    *,
    port: Optional[int] = None,
    stateDir: Optional[str] = None,
    socketPath: Optional[str] = None,
    twistd: bool = False,
    extraArgs: Sequence[str] = (),
    waitReady: bool = True,
    env: Optional[Mapping[str, str]] = None,
    wrapper: Sequence[str] = (),
) -> Daemon:
    """
    Spawn a daemon on 127.0.0.1 with its own port, socket and state dir
    (unless given), stopped in C{testCase}'s cleanup.

    @param twistd: run it as C{twistd -n --pidfile= kamal-proxy} instead of
        C{kamal-proxy run}.
    @param waitReady: wait for its listeners to be open (L{READY_MARK}).
    @param wrapper: a command (its first word a path) that runs the daemon's
        command line given after it, replacing itself with it (C{exec}), so
        the daemon keeps its process ID.
    """
    workDir = tempDir(testCase)
    stateDir = os.path.join(workDir, "state") if stateDir is None else stateDir
    socketPath = os.path.join(workDir, "kp.sock") if socketPath is None else socketPath
    # A port free a moment ago can be taken (as the local port of some
    # outgoing connection) before the daemon binds it: with ports of our
    # own choosing, try again with new ones.
    attempts = 3 if port is None and waitReady else 1
    for attempt in range(attempts):
        daemon = _spawnDaemon(
            testCase, workDir, freePort() if port is None else port, stateDir, socketPath, twistd, extraArgs, env, wrapper
        )
        if not waitReady:
            return daemon
        try:
            await daemon.waitForMessage(READY_MARK, STARTUP_TIMEOUT)
        except ProcessExited as e:
            if attempt + 1 < attempts and "Address already in use" in str(e):
                continue
            raise
        await _waitForControl(daemon, STARTUP_TIMEOUT)
        return daemon
    raise AssertionError("unreachable")


def _spawnDaemon(
    testCase: TestCase,
    workDir: str,
    port: int,
    stateDir: str,
    socketPath: str,
    twistd: bool,
    extraArgs: Sequence[str],
    env: Optional[Mapping[str, str]],
    wrapper: Sequence[str],
) -> Daemon:
    """
    Spawn the daemon L{startDaemon} describes, stopped in C{testCase}'s
    cleanup, without waiting for it.
    """
    httpsPort = freePort()
    flags = [
        "--http-port", str(port),
        "--https-port", str(httpsPort),  # extraArgs may override it
        "--bind", "127.0.0.1",
        "--state-dir", stateDir,
        "--socket", socketPath,
        *extraArgs,
    ]
    if twistd:
        program = executable("twistd")
        argv = [program, "-n", "--pidfile=", "kamal-proxy", *flags]
    else:
        program = executable("kamal-proxy")
        argv = [program, "run", *flags]
    output = OutputCollector(" ".join(os.path.basename(a) for a in argv[:2]))
    if wrapper:
        program, argv = wrapper[0], [*wrapper, *argv]
    process = reactor.spawnProcess(output, program, argv, env=environment(env), path=workDir)
    daemon = Daemon(port, socketPath, stateDir, output, process)
    daemon.httpsPort = httpsPort
    testCase.addCleanup(daemon.cleanup)
    return daemon


async def _waitForControl(daemon: Daemon, timeout: float) -> None:
    """
    Wait for an answer on the daemon's control socket. Its "Server started"
    line comes once the listeners are bound, before the reactor runs
    (twistd binds them even earlier), so only an answer means it serves,
    with its signal handlers installed.
    """
    deadline = reactor.seconds() + timeout
    while True:
        try:
            client = await connectProtocol(UNIXClientEndpoint(reactor, daemon.socket), amp.AMP())
        except ConnectError:
            if daemon.output.ended:
                raise ProcessExited(f"the daemon exited while starting\n{daemon.output.describe()}") from None
            if reactor.seconds() >= deadline:
                raise AssertionError(f"nothing answers on {daemon.socket}\n{daemon.output.describe()}") from None
            await deferLater(reactor, 0.02, lambda: None)
            continue
        try:
            await bounded(client.callRemote(List), max(1.0, deadline - reactor.seconds()), "an answer on the control socket")
        finally:
            client.transport.loseConnection()
        return


@attr.s(auto_attribs=True, frozen=True)
class CommandResult:
    """
    How a command line run ended; unpacks as C{(code, out, err)}.

    @ivar started: C{reactor.seconds()} when it was spawned.
    @ivar ended: C{reactor.seconds()} when its exit was seen.
    """

    code: int
    out: str
    err: str
    started: float
    ended: float

    def __iter__(self) -> Iterator[Any]:
        return iter((self.code, self.out, self.err))

    @property
    def duration(self) -> float:
        return self.ended - self.started


async def runCommand(
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    timeout: float = COMMAND_TIMEOUT,
) -> CommandResult:
    """
    Run C{argv} (C{argv[0]} a path) to completion, killing it after
    C{timeout} seconds.
    """
    output = OutputCollector(os.path.basename(argv[0]))
    started = reactor.seconds()
    process = reactor.spawnProcess(output, argv[0], list(argv), env=environment(env))
    try:
        code = await output.waitForExit(timeout)
    except AssertionError:
        try:
            process.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        await output.waitForExit(5.0)
        raise
    return CommandResult(
        code,
        output.stdout.decode("utf-8", "replace"),
        output.stderr.decode("utf-8", "replace"),
        started,
        reactor.seconds(),
    )


def ctl(socketPath: Optional[str], *args: str, **kwargs: Any) -> Deferred:
    """
    C{kamal-proxy-ctl --socket socketPath args...} (no C{--socket} flag if
    C{socketPath} is L{None}); fires with a L{CommandResult}.
    """
    socketFlag = [] if socketPath is None else ["--socket", socketPath]
    argv = [executable("kamal-proxy-ctl"), *socketFlag, *args]
    return Deferred.fromCoroutine(runCommand(argv, **kwargs))


def kamalProxy(*args: str, env: Optional[Mapping[str, str]] = None, **kwargs: Any) -> Deferred:
    """
    C{kamal-proxy args...} (the drop-in command line); fires with a
    L{CommandResult}.
    """
    argv = [executable("kamal-proxy"), *args]
    return Deferred.fromCoroutine(runCommand(argv, env=env, **kwargs))


def deployArgs(service: str, target: str, *extra: str) -> list[str]:
    """
    C{deploy} arguments with quick health checks, for tests.
    """
    return ["deploy", service, f"--target={target}", "--health-check-interval=100ms", *extra]


# Backends


@attr.s(auto_attribs=True, frozen=True)
class SeenRequest:
    """
    A request a backend received (health checks excluded).
    """

    time: float
    method: str
    uri: str
    headers: dict[str, str]
    length: int


class _BackendResource(Resource):
    isLeaf = True

    def __init__(self, backend: "Backend") -> None:
        super().__init__()
        self.backend = backend

    def render(self, request: Any) -> Any:
        backend = self.backend
        request.setHeader(b"x-version", backend.version.encode())
        if request.path == b"/up":
            backend.healthChecks += 1
            request.setResponseCode(backend.healthStatus)
            return b"up\n" if backend.healthStatus < 300 else b"down\n"
        body = request.content.read()
        seen = SeenRequest(
            reactor.seconds(),
            request.method.decode(),
            request.uri.decode("latin-1"),
            {k.decode().lower(): b",".join(v).decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()},
            len(body),
        )
        backend.requests.append(seen)
        answer = json.dumps(
            {
                "version": backend.version,
                "method": seen.method,
                "uri": seen.uri,
                "length": seen.length,
                "host": seen.headers.get("host", ""),
            }
        ).encode()
        backend._notify(seen)
        if request.path == b"/sendfile":  # hands the file over, as Rack::Sendfile does
            request.setHeader(b"x-sendfile", request.args.get(b"path", [b""])[0])
            request.setHeader(b"cache-control", b"public, max-age=60")
            request.defaultContentType = request.args.get(b"type", [None])[0]
            return b"the app's own body, never sent"
        request.setHeader(b"content-type", b"application/json")
        if request.path == b"/cookie":
            request.setHeader(b"set-cookie", b"session=abc; Path=/; HttpOnly")
        if request.path == b"/slow":
            seconds = float(request.args.get(b"s", [b"1"])[0])
            return backend._answerLater(request, seconds, answer)
        return answer


class Backend:
    """
    A web server on 127.0.0.1 standing in for one version of an app.

    Every answer has the header C{X-Version: <version>} and a JSON body
    C{{"version", "method", "uri", "length" (of the request body), "host"}}.
    C{/up} answers C{healthStatus}; C{/slow?s=N} answers after N seconds;
    C{/sendfile?path=P[&type=T]} answers C{X-Sendfile: P} (and a body of its own),
    with no C{Content-Type} unless C{T}.

    @ivar requests: what it received, health checks excluded.
    @ivar answeredLater: C{(time, uri)} of each delayed answer sent.
    """

    def __init__(self, version: str, healthStatus: int = 200) -> None:
        self.version = version
        self.healthStatus = healthStatus
        self.healthChecks = 0
        self.requests: list[SeenRequest] = []
        self.answeredLater: list[tuple[float, str]] = []
        self._waiters: list[tuple[Callable[[SeenRequest], bool], Deferred]] = []
        self._pending: set[Any] = set()
        site = Site(_BackendResource(self), timeout=None)
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]
        self._factory = WrappingFactory(site)
        self._factory.noisy = False
        self._listener: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> "Backend":
        """
        Listen on C{port} (default: any free port).
        """
        self._listener = reactor.listenTCP(port, self._factory, interface="127.0.0.1")
        self.port = self._listener.getHost().port
        return self

    def _notify(self, seen: SeenRequest) -> None:
        for entry in list(self._waiters):
            predicate, d = entry
            if predicate(seen):
                self._waiters.remove(entry)
                d.callback(seen)

    def waitForRequest(
        self, predicate: Callable[[SeenRequest], bool] = lambda r: True, timeout: float = 10.0
    ) -> Deferred:
        """
        Fires with the first request (seen or to come) satisfying
        C{predicate}.
        """
        for seen in self.requests:
            if predicate(seen):
                d: Deferred = Deferred()
                d.callback(seen)
                return d
        d = Deferred(lambda d: self._waiters.remove((predicate, d)) if (predicate, d) in self._waiters else None)
        self._waiters.append((predicate, d))
        return bounded(d, timeout, f"a request to backend {self.version}")

    def _answerLater(self, request: Any, seconds: float, answer: bytes) -> Any:
        def finish() -> None:
            self._pending.discard(call)
            if not request._disconnected:
                self.answeredLater.append((reactor.seconds(), request.uri.decode("latin-1")))
                request.write(answer)
                request.finish()

        call = reactor.callLater(seconds, finish)
        self._pending.add(call)

        def gone(_: Any) -> None:
            if call.active():
                call.cancel()
            self._pending.discard(call)

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET

    async def stop(self) -> None:
        """
        Stop listening, cut every open connection (as a killed process
        would), and wait until they are closed.
        """
        for call in list(self._pending):
            if call.active():
                call.cancel()
        self._pending.clear()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stopListening()
        for wrapper in list(self._factory.protocols):
            wrapper.transport.abortConnection()
        await pollUntil(lambda: not self._factory.protocols, 5.0, f"backend {self.version} connections to close")
        for _, d in self._waiters:
            d.cancel()


def startBackend(testCase: TestCase, version: str, healthStatus: int = 200, port: int = 0) -> Backend:
    """
    A running L{Backend} (on C{port}, if given), stopped in C{testCase}'s
    cleanup.
    """
    backend = Backend(version, healthStatus).start(port)
    testCase.addCleanup(backend.stop)
    return backend


# Clients


def hasCurl() -> bool:
    return shutil.which("curl") is not None


async def curl(url: str, *args: str, timeout: float = 10.0) -> tuple[int, str]:
    """
    C{curl} C{url} (no proxy, extra C{args}); returns C{(status, body)}.
    """
    program = shutil.which("curl")
    if program is None:
        raise RuntimeError("curl is not installed")
    result = await runCommand(
        [program, "-sS", "--noproxy", "*", "--max-time", str(timeout), "-w", "\n%{http_code}", *args, url],
        timeout=timeout + 5,
    )
    if result.code != 0:
        raise AssertionError(f"curl {url} failed ({result.code}): {result.err}")
    body, _, status = result.out.rpartition("\n")
    return int(status), body


def httpPool(testCase: TestCase, size: int = 16) -> HTTPConnectionPool:
    """
    A persistent connection pool for treq, closed in C{testCase}'s cleanup.
    Failed requests are never retried (a retry would hide a failure).
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = size
    pool.retryAutomatically = False
    testCase.addCleanup(pool.closeCachedConnections)
    return pool


async def fetch(
    url: str,
    method: str = "GET",
    *,
    host: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    data: Optional[bytes] = None,
    pool: Optional[HTTPConnectionPool] = None,
    timeout: float = 10.0,
) -> tuple[int, Mapping[str, str], bytes]:
    """
    One request with treq; returns C{(status, headers, body)}, the header
    names lower-cased (last value of each).
    """
    sendHeaders = dict(headers or {})
    if host is not None:
        sendHeaders["Host"] = host
    kwargs: dict[str, Any] = {"headers": sendHeaders}
    if pool is not None:
        kwargs["pool"] = pool
    else:
        kwargs["persistent"] = False
    if data is not None:
        kwargs["data"] = data
    response = await bounded(treq.request(method, url, **kwargs), timeout, f"{method} {url}")
    body = await bounded(treq.content(response), timeout, f"the body of {method} {url}")
    received = {
        k.decode().lower(): v[-1].decode("latin-1") for k, v in response.headers.getAllRawHeaders()
    }
    return response.code, received, body


__all__ = [
    "Backend",
    "CommandResult",
    "Daemon",
    "OutputCollector",
    "ProcessExited",
    "READY_MARK",
    "bounded",
    "ctl",
    "curl",
    "deployArgs",
    "environment",
    "executable",
    "fetch",
    "freePort",
    "hasCurl",
    "httpPool",
    "kamalProxy",
    "parseTime",
    "pollUntil",
    "runCommand",
    "startBackend",
    "startDaemon",
    "tempDir",
]
