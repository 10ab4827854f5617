# -*- test-case-name: tests.control.test_ctl -*-
"""
Tests for L{kamalproxy.control.ctl}, L{kamalproxy.control.cli} and L{kamalproxy.daemon.paths}.

The round trips talk to a small recording AMP server over a real UNIX socket
in a temporary directory, as C{kamal-proxy-ctl} talks to the daemon.
"""

from __future__ import annotations

import errno
import io
from importlib import metadata
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import getConnectError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import kamalproxy
from kamalproxy.control import cli
from kamalproxy.control import ctl
from kamalproxy.control.tables import formatTable
from kamalproxy.control.commands import (
    CommandFailed,
    ControlError,
    Deploy,
    List,
    Pause,
    Remove,
    Resume,
    StateNotSaved,
    Stop,
)
from kamalproxy.routing.options import DeployOptions, fromJSON
from kamalproxy.daemon.paths import defaultSocketPath, defaultStateDir

SERVICES = [
    {
        "service": "web",
        "hosts": ["example.com", "www.example.com"],
        "path_prefixes": ["/"],
        "targets": ["172.1.0.2:80", "172.1.0.3:80"],
        "state": "running",
        "tls": True,
        "extra": "ignored",
    },
    {
        "service": "api",
        "hosts": [],
        "path_prefixes": ["/api"],
        "targets": ["api-1:3000"],
        "state": "paused",
        "tls": False,
    },
]


class PathsTests(SynchronousTestCase):
    """
    Tests for L{defaultSocketPath} and L{defaultStateDir}.
    """

    def test_explicitSocket(self) -> None:
        """
        C{$KAMAL_PROXY_SOCKET} wins.
        """
        environ = {"KAMAL_PROXY_SOCKET": "/s.sock", "XDG_RUNTIME_DIR": "/run/user/1"}
        self.assertEqual(defaultSocketPath(environ), "/s.sock")

    def test_runtimeDir(self) -> None:
        """
        Else the socket lives in C{$XDG_RUNTIME_DIR}; empty variables are
        unset.
        """
        environ = {"KAMAL_PROXY_SOCKET": "", "XDG_RUNTIME_DIR": "/run/user/1"}
        self.assertEqual(defaultSocketPath(environ), "/run/user/1/kamal-proxy.sock")

    def test_tempDir(self) -> None:
        """
        Else it lives in the temporary directory.
        """
        self.assertEqual(
            defaultSocketPath({}), os.path.join(tempfile.gettempdir(), "kamal-proxy.sock")
        )

    def test_stateDir(self) -> None:
        """
        The state directory is C{~/.config/kamal-proxy}, from C{$HOME} when
        set.
        """
        self.assertEqual(defaultStateDir({"HOME": "/home/k"}), "/home/k/.config/kamal-proxy")
        self.assertEqual(
            defaultStateDir({}),
            os.path.join(os.path.expanduser("~"), ".config", "kamal-proxy"),
        )


class TableTests(SynchronousTestCase):
    """
    Tests for the C{list} output.
    """

    def test_table(self) -> None:
        """
        Services are sorted by name, aligned in columns two spaces apart,
        hosts and targets comma-joined, C{*} for no host, TLS yes/no.
        """
        self.assertEqual(
            ctl.formatServiceTable(SERVICES),
            "Service  Host                         Path  Target                     State    TLS\n"
            "api      *                            /api  api-1:3000                 paused   no\n"
            "web      example.com,www.example.com  /     172.1.0.2:80,172.1.0.3:80"
            "  running  yes\n",
        )

    def test_empty(self) -> None:
        """
        With no service only the header is printed.
        """
        self.assertEqual(
            ctl.formatServiceTable([]), "Service  Host  Path  Target  State  TLS\n"
        )

    def test_missingKeys(self) -> None:
        """
        Missing keys give blank cells rather than an error.
        """
        self.assertEqual(ctl.serviceRows([{"service": "x"}]), [("x", "*", "", "", "", "no")])

    def test_readersInTargetColumn(self) -> None:
        """
        Read targets are listed in the Target column after the writers, as
        the original lists every target of the service.
        """
        [row] = ctl.serviceRows(
            [{"service": "x", "targets": ["w:80"], "read_targets": ["r1:80", "r2:80"]}]
        )
        self.assertEqual(row[3], "w:80,r1:80,r2:80")

    def test_formatTable(self) -> None:
        """
        L{formatTable} leaves no trailing spaces and handles no rows.
        """
        self.assertEqual(formatTable([("a", "bb"), ("ccc", "d")]), "a    bb\nccc  d\n")
        self.assertEqual(formatTable([]), "")

    def test_parseServiceList(self) -> None:
        """
        The C{List} answer must be a JSON list of objects.
        """
        self.assertEqual(ctl.parseServiceList(json.dumps(SERVICES)), SERVICES)
        self.assertRaises(ValueError, ctl.parseServiceList, "{}")
        self.assertRaises(ValueError, ctl.parseServiceList, "[1]")
        self.assertRaises(ValueError, ctl.parseServiceList, "nope")


class RecordingLocator(amp.CommandLocator):
    """
    A fake daemon: records each command it receives and answers with
    C{failure} if set.

    @ivar calls: C{(command name, arguments)} in the order received.
    @ivar pending: if set, the Deferred C{Deploy} answers with.
    @ivar failureType: the declared error C{failure} is sent as.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failure: str | None = None
        self.failureType: type[ControlError] = CommandFailed
        self.pending: Deferred[dict[str, Any]] | None = None

    def _answer(self, result: dict[str, Any]) -> Deferred[dict[str, Any]]:
        if self.failure is not None:
            return fail(self.failureType(self.failure))
        return succeed(result)

    @Deploy.responder
    def deploy(
        self, service: str, targets: list[str], options: str, readTargets: list[str] | None = None
    ) -> Deferred[dict[str, Any]]:
        arguments: dict[str, Any] = {"service": service, "targets": targets, "options": options}
        if readTargets is not None:
            arguments["readTargets"] = readTargets
        self.calls.append(("deploy", arguments))
        if self.pending is not None:
            return self.pending
        return self._answer({})

    @Remove.responder
    def remove(self, service: str) -> Deferred[dict[str, Any]]:
        self.calls.append(("remove", {"service": service}))
        return self._answer({})

    @Pause.responder
    def pause(self, service: str, drain_timeout: float, max_pause: float) -> Deferred[dict[str, Any]]:
        self.calls.append(("pause", {"service": service, "drain_timeout": drain_timeout, "max_pause": max_pause}))
        return self._answer({})

    @Stop.responder
    def stop(self, service: str, drain_timeout: float, message: str) -> Deferred[dict[str, Any]]:
        self.calls.append(("stop", {"service": service, "drain_timeout": drain_timeout, "message": message}))
        return self._answer({})

    @Resume.responder
    def resume(self, service: str) -> Deferred[dict[str, Any]]:
        self.calls.append(("resume", {"service": service}))
        return self._answer({})

    @List.responder
    def list(self) -> Deferred[dict[str, Any]]:
        self.calls.append(("list", {}))
        return self._answer({"services": json.dumps(SERVICES)})


class _ServerProtocol(amp.AMP):
    """
    A server connection that reports when it closes.
    """

    def __init__(self, locator: amp.CommandLocator, closed: Deferred[None]) -> None:
        super().__init__(locator=locator)
        self._closed = closed

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self._closed.callback(None)


class _ServerFactory(Factory):
    def __init__(self, locator: amp.CommandLocator) -> None:
        self.locator = locator
        self.closed: list[Deferred[None]] = []
        self.protocols: list[_ServerProtocol] = []

    def buildProtocol(self, addr: Any) -> _ServerProtocol:
        closed: Deferred[None] = Deferred()
        self.closed.append(closed)
        self.protocols.append(_ServerProtocol(self.locator, closed))
        return self.protocols[-1]


class LocatorRoundTrip(TestCase):
    """
    The base of a verb's round-trip tests: C{kamal-proxy ...} (L{ctl.run})
    against an AMP server on a UNIX socket answering with the locator
    L{makeLocator} makes.
    """

    def makeLocator(self) -> amp.CommandLocator:
        raise NotImplementedError()

    def setUp(self) -> Deferred[None]:
        directory = tempfile.mkdtemp(prefix="kp-ctl-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.socketPath = os.path.join(directory, "kamal-proxy.sock")
        self.locator: Any = self.makeLocator()
        factory = _ServerFactory(self.locator)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()

        def listened(port: Any) -> None:
            self.addCleanup(lambda: gatherResults([port.stopListening(), *factory.closed]))

        return serverFromString(reactor, f"unix:{self.socketPath}").listen(factory).addCallback(listened)

    def ctl(self, line: str) -> Deferred[int]:
        """
        Run C{kamal-proxy line} against the test server.
        """
        return Deferred.fromCoroutine(
            ctl.run(
                reactor,
                shlex.split(line),
                self.stdout,
                self.stderr,
                environ={"KAMAL_PROXY_SOCKET": self.socketPath},
                prog="kamal-proxy",
            )
        )


class RoundTripTests(TestCase):
    """
    L{ctl.run} against a recording AMP server on a UNIX socket.
    """

    def setUp(self) -> Deferred[None]:
        self.directory = tempfile.mkdtemp(prefix="kp-ctl-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.socketPath = os.path.join(self.directory, "kamal-proxy.sock")
        self.locator = RecordingLocator()
        self.factory = _ServerFactory(self.locator)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        endpoint = serverFromString(reactor, f"unix:{self.socketPath}")
        listening = endpoint.listen(self.factory)

        def listened(port: Any) -> None:
            self.addCleanup(self._stop, port)

        return listening.addCallback(listened)

    def _stop(self, port: Any) -> Deferred[Any]:
        return gatherResults([port.stopListening(), *self.factory.closed])

    def ctl(self, *argv: str, environ: dict[str, str] | None = None) -> Deferred[int]:
        """
        Run C{kamal-proxy-ctl argv} against the test server.
        """
        if environ is None:
            environ = {"KAMAL_PROXY_SOCKET": self.socketPath}
        return Deferred.fromCoroutine(
            ctl.run(reactor, list(argv), self.stdout, self.stderr, environ=environ)
        )

    async def test_deploy(self) -> None:
        """
        C{deploy} sends the service, the normalised targets and the options
        as JSON, prints nothing and exits 0.
        """
        code = await self.ctl(
            "deploy",
            "app-web",
            "--target=172.1.0.2:80,web-2",
            "--host=example.com",
            "--deploy-timeout=30s",
            "--buffer-requests",
        )
        self.assertEqual((code, self.stdout.getvalue(), self.stderr.getvalue()), (0, "", ""))
        [(name, args)] = self.locator.calls
        self.assertEqual(name, "deploy")
        self.assertEqual(args["service"], "app-web")
        self.assertEqual(args["targets"], ["172.1.0.2:80", "web-2:80"])
        options = fromJSON(DeployOptions, json.loads(args["options"]))
        self.assertEqual(options.service.hosts, ("example.com",))
        self.assertTrue(options.target.buffer_requests)
        self.assertTrue(options.target.forward_headers)
        self.assertEqual(options.deploy_timeout, 30.0)
        self.assertNotIn("readTargets", args)

    async def test_deployReaders(self) -> None:
        """
        C{deploy} with C{--read-target} sends the normalised readers, and the
        reader options (writer affinity, WebSockets to readers, the load
        balancing policy) in the options.
        """
        code = await self.ctl(
            "deploy",
            "app-web",
            "--target=web-1",
            "--read-target=web-2:3000",
            "--read-target",
            "web-3",
            "--writer-affinity-timeout=5s",
            "--read-target-websockets",
            "--load-balancing=least-requests",
        )
        self.assertEqual((code, self.stderr.getvalue()), (0, ""))
        [(name, args)] = self.locator.calls
        self.assertEqual(args["targets"], ["web-1:80"])
        self.assertEqual(args["readTargets"], ["web-2:3000", "web-3:80"])
        service = fromJSON(DeployOptions, json.loads(args["options"])).service
        self.assertEqual(service.writer_affinity_timeout, 5.0)
        self.assertTrue(service.read_targets_accept_websockets)
        self.assertEqual(service.load_balancing, "least-requests")

    async def test_deployWaits(self) -> None:
        """
        C{deploy} waits for the daemon's answer, however late.
        """
        self.locator.pending = Deferred()
        running = self.ctl("deploy", "s", "--target", "web")
        await self._untilCalled()
        self.assertNoResult(running)
        self.locator.pending.callback({})
        self.assertEqual(await running, 0)

    async def _untilCalled(self) -> None:
        while not self.locator.calls:
            waiting: Deferred[None] = Deferred()
            reactor.callLater(0, waiting.callback, None)
            await waiting

    async def test_timeout(self) -> None:
        """
        The client gives up after the deploy and drain timeouts plus
        L{ctl.CALL_MARGIN}, and says so.
        """
        self.patch(ctl, "CALL_MARGIN", 0.0)
        self.locator.pending = Deferred()
        code = await self.ctl(
            "deploy", "s", "--target", "web", "--deploy-timeout=0", "--drain-timeout=0"
        )
        self.assertEqual(code, 1)
        self.assertEqual(self.stderr.getvalue(), "Error: no answer from kamal-proxy after 0s\n")

    async def test_connectionLost(self) -> None:
        """
        If the daemon goes away during a command, the error says so.
        """
        self.locator.pending = Deferred()
        running = self.ctl("deploy", "s", "--target", "web")
        await self._untilCalled()
        self.factory.protocols[0].transport.loseConnection()
        self.assertEqual(await running, 1)
        [line] = self.stderr.getvalue().splitlines()
        self.assertTrue(line.startswith("Error: lost the connection to kamal-proxy: "), line)

    async def test_unhandledCommand(self) -> None:
        """
        A daemon that does not know the command answers with an error, which
        is reported in one line.
        """
        self.factory.locator = amp.CommandLocator()
        self.assertEqual(await self.ctl("list"), 1)
        [line] = self.stderr.getvalue().splitlines()
        self.assertEqual(
            line, "Error: kamal-proxy does not know the List command (an older version?)"
        )

    async def test_deployFails(self) -> None:
        """
        A L{CommandFailed} from the daemon is one C{Error:} line and exit 1.
        """
        self.locator.failure = "target failed to become healthy within configured timeout (30s)"
        code = await self.ctl("deploy", "s", "--target", "web")
        self.assertEqual(code, 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "Error: target failed to become healthy within configured timeout (30s)\n",
        )
        self.assertEqual(self.stdout.getvalue(), "")

    async def test_stateNotSaved(self) -> None:
        """
        A deploy or remove the daemon could not save is one C{Error:} line
        with the daemon's reason, and exit 1.
        """
        self.locator.failure = "cannot save state: No space left on device"
        self.locator.failureType = StateNotSaved
        self.assertEqual(await self.ctl("deploy", "s", "--target", "web"), 1)
        self.assertEqual(await self.ctl("remove", "s"), 1)
        self.assertEqual(
            self.stderr.getvalue(), "Error: cannot save state: No space left on device\n" * 2
        )

    async def test_deployRefusedLocally(self) -> None:
        """
        A bad target is refused before the daemon is contacted.
        """
        code = await self.ctl("deploy", "s", "--target", "172.1.0.2:80x")
        self.assertEqual(code, 1)
        self.assertEqual(self.stderr.getvalue(), "Error: 172.1.0.2:80x :invalid host pattern\n")
        self.assertEqual(self.locator.calls, [])

    async def test_flagError(self) -> None:
        """
        A flag error prints the reason, then a hint about C{--help}.
        """
        code = await self.ctl("deploy", "s", "--target", "web", "--scope-cookie-paths=maybe")
        self.assertEqual(code, 1)
        self.assertEqual(
            self.stderr.getvalue().splitlines(),
            [
                'Error: invalid argument "maybe" for "--scope-cookie-paths" flag: expected true or false',
                'Run "kamal-proxy-ctl --help" for usage.',
            ],
        )
        self.assertEqual(self.locator.calls, [])

    async def test_remove(self) -> None:
        """
        C{remove} (or C{rm}) sends the service name.
        """
        self.assertEqual(await self.ctl("remove", "app-web"), 0)
        self.assertEqual(await self.ctl("rm", "other"), 0)
        self.assertEqual(
            self.locator.calls,
            [("remove", {"service": "app-web"}), ("remove", {"service": "other"})],
        )

    async def test_removeFails(self) -> None:
        """
        C{remove} of an unknown service reports the daemon's reason.
        """
        self.locator.failure = "service not found"
        self.assertEqual(await self.ctl("remove", "nope"), 1)
        self.assertEqual(self.stderr.getvalue(), "Error: service not found\n")

    async def test_list(self) -> None:
        """
        C{list} (or C{ls}) prints the table.
        """
        self.assertEqual(await self.ctl("ls"), 0)
        self.assertEqual(self.locator.calls, [("list", {})])
        self.assertEqual(self.stdout.getvalue(), ctl.formatServiceTable(SERVICES))

    async def test_socketFlag(self) -> None:
        """
        C{--socket} overrides the environment.
        """
        code = await self.ctl(
            "--socket", self.socketPath, "list", environ={"KAMAL_PROXY_SOCKET": "/nonexistent"}
        )
        self.assertEqual(code, 0)

    async def test_noDaemon(self) -> None:
        """
        With nothing listening, the error says so and names the socket.
        """
        missing = os.path.join(self.directory, "missing.sock")
        code = await self.ctl("list", environ={"KAMAL_PROXY_SOCKET": missing})
        self.assertEqual(code, 1)
        self.assertEqual(
            self.stderr.getvalue(),
            f"Error: cannot connect to the kamal-proxy control socket at {missing}:"
            " is it running?\n",
        )

    async def test_staleSocket(self) -> None:
        """
        A socket file left behind by a dead daemon is "cannot connect" too.
        """
        stale = os.path.join(self.directory, "stale.sock")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(stale)
        sock.close()
        code = await self.ctl("remove", "s", environ={"KAMAL_PROXY_SOCKET": stale})
        self.assertEqual(code, 1)
        self.assertEqual(self.stderr.getvalue(), f"Error: {ctl.cannotConnect(stale)}\n")

    async def test_stopPauseResume(self) -> None:
        """
        Kamal's C{stop}, C{pause} and C{resume} command lines send the
        service with the drain timeout, message and maximum pause in
        seconds; the defaults are 30 s and an empty message.
        """
        self.assertEqual(await self.ctl("stop", "app-web", '--drain-timeout=10s', "--message=Hi"), 0)
        self.assertEqual(await self.ctl("pause", "app-web", "--drain-timeout=30s", "--max-pause=1m"), 0)
        self.assertEqual(await self.ctl("resume", "app-web"), 0)
        self.assertEqual(await self.ctl("stop", "app-web"), 0)
        self.assertEqual(await self.ctl("pause", "app-web"), 0)
        self.assertEqual(
            self.locator.calls,
            [
                ("stop", {"service": "app-web", "drain_timeout": 10.0, "message": "Hi"}),
                ("pause", {"service": "app-web", "drain_timeout": 30.0, "max_pause": 60.0}),
                ("resume", {"service": "app-web"}),
                ("stop", {"service": "app-web", "drain_timeout": 30.0, "message": ""}),
                ("pause", {"service": "app-web", "drain_timeout": 30.0, "max_pause": 30.0}),
            ],
        )
        self.assertEqual((self.stdout.getvalue(), self.stderr.getvalue()), ("", ""))

    async def test_stopPauseResumeFail(self) -> None:
        """
        The daemon's refusal of C{stop}, C{pause} or C{resume} is one
        C{Error:} line and exit 1.
        """
        self.locator.failure = "service not found"
        for argv in (["stop", "nope"], ["pause", "nope"], ["resume", "nope"]):
            self.assertEqual(await self.ctl(*argv), 1)
        self.assertEqual(self.stderr.getvalue(), "Error: service not found\n" * 3)
        self.locator.failure = "cannot save state: No space left on device"
        self.locator.failureType = StateNotSaved
        self.assertEqual(await self.ctl("resume", "app"), 1)
        self.assertTrue(self.stderr.getvalue().endswith("Error: cannot save state: No space left on device\n"))

    async def test_help(self) -> None:
        """
        C{--help} prints help on stdout and exits 0.
        """
        self.assertEqual(await self.ctl("deploy", "--help"), 0)
        self.assertIn("kamal-proxy-ctl deploy <service> [flags]", self.stdout.getvalue())
        self.assertEqual(self.stderr.getvalue(), "")


class ConnectFailureTests(SynchronousTestCase):
    """
    How a failed connection to the control socket is reported.
    """

    def failConnect(self, errorNumber: int) -> str:
        """
        Run C{kamal-proxy-ctl list} whose connection fails with
        C{errorNumber}; return what it wrote on stderr.
        """
        reactor = MemoryReactorClock()
        stdout, stderr = io.StringIO(), io.StringIO()
        running = Deferred.fromCoroutine(
            ctl.run(reactor, ["--socket", "/run/kp.sock", "list"], stdout, stderr)
        )
        [(_, factory, _, _)] = reactor.unixClients
        reason = getConnectError((errorNumber, os.strerror(errorNumber)))
        factory.clientConnectionFailed(reactor.connectors[0], Failure(reason))
        self.assertEqual(self.successResultOf(running), 1)
        self.assertEqual(stdout.getvalue(), "")
        return stderr.getvalue()

    def test_permissionDenied(self) -> None:
        """
        A socket the user may not use is reported as C{permission denied},
        not as a daemon that is not running.
        """
        expected = "Error: cannot connect to the kamal-proxy control socket at /run/kp.sock: permission denied\n"
        self.assertEqual(self.failConnect(errno.EACCES), expected)
        self.assertEqual(self.failConnect(errno.EPERM), expected)

    def test_notRunning(self) -> None:
        """
        No socket file, or one nobody listens on, is C{is it running?}.
        """
        for errorNumber in (errno.ENOENT, errno.ECONNREFUSED):
            self.assertEqual(
                self.failConnect(errorNumber),
                "Error: cannot connect to the kamal-proxy control socket at /run/kp.sock: is it running?\n",
            )

    def test_otherReason(self) -> None:
        """
        Any other failure names the system's reason.
        """
        self.assertEqual(
            self.failConnect(errno.EAGAIN),
            "Error: cannot connect to the kamal-proxy control socket at /run/kp.sock: "
            f"{os.strerror(errno.EAGAIN)}\n",
        )


class VersionTests(SynchronousTestCase):
    """
    C{--version} prints this package's version, from its metadata.
    """

    def test_version(self) -> None:
        """
        L{kamalproxy.version} is the installed distribution's version.
        """
        self.assertEqual(kamalproxy.version(), metadata.version("kamal-proxy"))
        self.assertEqual(kamalproxy.__version__, kamalproxy.version())
        self.assertEqual(
            kamalproxy.versionLine("kamal-proxy-ctl"),
            f"kamal-proxy-ctl version {metadata.version('kamal-proxy')}",
        )

    def test_notInstalled(self) -> None:
        """
        Without metadata the version is C{0+unknown}.
        """

        def missing(name: str) -> str:
            raise metadata.PackageNotFoundError(name)

        kamalproxy.version.cache_clear()
        self.addCleanup(kamalproxy.version.cache_clear)
        self.patch(metadata, "version", missing)
        self.assertEqual(kamalproxy.version(), "0+unknown")

    def test_ctl(self) -> None:
        """
        C{kamal-proxy-ctl --version} and C{kamal-proxy --version} print
        C{<prog> version <version>} and exit 0 without contacting a daemon.
        """
        reactor = MemoryReactorClock()
        for prog in ("kamal-proxy-ctl", "kamal-proxy"):
            stdout, stderr = io.StringIO(), io.StringIO()
            running = Deferred.fromCoroutine(ctl.run(reactor, ["--version"], stdout, stderr, prog=prog))
            self.assertEqual(self.successResultOf(running), 0)
            self.assertEqual(
                (stdout.getvalue(), stderr.getvalue()),
                (f"{prog} version {metadata.version('kamal-proxy')}\n", ""),
            )
        self.assertEqual(reactor.unixClients, [])


class MainTests(SynchronousTestCase):
    """
    Tests for the console scripts' C{main}, for what needs no reactor.
    """

    def test_runDelegatesToRunner(self) -> None:
        """
        C{kamal-proxy run ARGS} calls L{kamalproxy.daemon.runner.run} with ARGS and
        exits with its code.
        """
        calls: list[list[str]] = []

        class FakeRunner:
            @staticmethod
            def run(argv: list[str]) -> int:
                calls.append(argv)
                return 3

        self.patch(sys, "modules", {**sys.modules, "kamalproxy.daemon.runner": FakeRunner})
        e = self.assertRaises(SystemExit, cli.main, ["run", "--http-port", "8080"])
        self.assertEqual(e.code, 3)
        e = self.assertRaises(SystemExit, cli.main, ["help", "run"])
        self.assertEqual(calls, [["--http-port", "8080"], ["--help"]])

    def test_otherVerbsDelegateToCtl(self) -> None:
        """
        Every other C{kamal-proxy} verb is C{kamal-proxy-ctl}'s, with the
        drop-in's name in help texts.
        """
        calls: list[tuple[list[str], str]] = []
        self.patch(ctl, "main", lambda argv, prog: calls.append((argv, prog)))
        cli.main(["deploy", "s", "--target", "web"])
        self.assertEqual(calls, [(["deploy", "s", "--target", "web"], "kamal-proxy")])
