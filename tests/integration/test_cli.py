"""
The command line against a real daemon: C{kamal-proxy VERB} is a drop-in for
C{kamal-proxy-ctl VERB}, Kamal's own deploy command works unchanged, bad
input changes nothing (from our CLI or another control client), and a
missing daemon is reported plainly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from importlib import metadata

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.protocols import amp
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    CommandResult,
    ctl,
    deployArgs,
    executable,
    fetch,
    kamalProxy,
    runCommand,
    startBackend,
    startDaemon,
    tempDir,
)

USAGE_HINT = 'Run "{prog} --help" for usage.'


def assertOneLineError(testCase: TestCase, result: CommandResult, prog: str) -> str:
    """
    C{result} failed with exit code 1 and one C{Error: <reason>} line (and
    at most the usage hint); returns the reason.
    """
    testCase.assertEqual(result.code, 1, result)
    testCase.assertEqual(result.out, "")
    lines = result.err.splitlines()
    testCase.assertTrue(lines and lines[0].startswith("Error: "), result.err)
    testCase.assertIn(lines[1:], ([], [USAGE_HINT.format(prog=prog)]), result.err)
    return lines[0][len("Error: ") :]


class DropInTests(TestCase):
    """
    C{kamal-proxy deploy/list/remove} and C{kamal-proxy-ctl} are the same
    command line.
    """

    timeout = 40

    async def test_dropInBehavesAsCtl(self) -> None:
        """
        Deploys, listings, removals and every kind of refusal give the same
        exit code, output and error text from C{kamal-proxy --socket S VERB}
        as from C{kamal-proxy-ctl --socket S VERB} (up to the program name
        in the usage hint); C{KAMAL_PROXY_SOCKET} works for both.
        """
        daemon = await startDaemon(self)
        one = startBackend(self, "one")
        two = startBackend(self, "two")

        def both(*args: str) -> list:
            return [ctl(daemon.socket, *args), kamalProxy("--socket", daemon.socket, *args)]

        viaCtl = await ctl(daemon.socket, *deployArgs("by-ctl", one.address, "--host=ctl.test"))
        viaDropIn = await kamalProxy(
            "--socket", daemon.socket, *deployArgs("by-drop-in", two.address, "--host=dropin.test")
        )
        self.assertEqual(tuple(viaCtl), (0, "", ""))
        self.assertEqual(tuple(viaDropIn), (0, "", ""))

        listings = [await d for d in both("list")] + [await d for d in both("ls")]
        environ = {"KAMAL_PROXY_SOCKET": daemon.socket}
        listings.append(await ctl(None, "list", env=environ))
        listings.append(await kamalProxy("list", env=environ))
        for listing in listings:
            self.assertEqual(tuple(listing), tuple(listings[0]))
        self.assertEqual(listings[0].code, 0)
        self.assertEqual(
            [line.split() for line in listings[0].out.splitlines()],
            [
                ["Service", "Host", "Path", "Target", "State", "TLS"],
                ["by-ctl", "ctl.test", "/", one.address, "running", "no"],
                ["by-drop-in", "dropin.test", "/", two.address, "running", "no"],
            ],
        )

        refusals = [
            ["deploy", "x", f"--target={one.address}", "--bogus"],
            ["deploy", "x", f"--target={one.address}", "--deploy-timeout=soon"],
            ["deploy", "x"],
            ["deploy", "x", f"--target={one.address}", "--tls"],
            ["deploy", "x", "--target=http://nope"],
            ["deploy", "x", f"--target={one.address}", "--host=ctl.test"],
            ["remove", "nope"],
            ["frobnicate"],
        ]
        for args in refusals:
            fromCtl, fromDropIn = [await d for d in both(*args)]
            self.assertEqual(fromCtl.code, 1, args)
            self.assertEqual(
                (fromDropIn.code, fromDropIn.out, fromDropIn.err),
                (fromCtl.code, fromCtl.out, fromCtl.err.replace("kamal-proxy-ctl", "kamal-proxy")),
                args,
            )
            assertOneLineError(self, fromCtl, "kamal-proxy-ctl")

        after = await ctl(daemon.socket, "list")
        self.assertEqual(after.out, listings[0].out)

        removed = await kamalProxy("--socket", daemon.socket, "rm", "by-ctl")
        self.assertEqual(tuple(removed), (0, "", ""))
        removed = await ctl(daemon.socket, "remove", "by-drop-in")
        self.assertEqual(tuple(removed), (0, "", ""))
        empty = [await d for d in both("list")]
        self.assertEqual(empty[0].out, empty[1].out)
        self.assertEqual(empty[0].out.split(), ["Service", "Host", "Path", "Target", "State", "TLS"])
        status, _, _ = await fetch(daemon.url("/"), host="ctl.test")
        self.assertEqual(status, 404)

    async def test_kamalDeployCommand(self) -> None:
        """
        The exact argument list Kamal passes (C{--flag=value} with the shell
        quotes gone, repeated C{--log-request-header}, boolean buffer flags,
        the socket from the environment) deploys, and the request log line
        carries the logged headers as C{req_cache_control} etc.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        result = await kamalProxy(
            "deploy",
            "app-web",
            f"--target={app.address}",
            "--host=example.com",
            "--deploy-timeout=30s",
            "--buffer-requests",
            "--buffer-responses",
            "--log-request-header=Cache-Control",
            "--log-request-header=Last-Modified",
            "--log-request-header=User-Agent",
            env={"KAMAL_PROXY_SOCKET": daemon.socket},
        )
        self.assertEqual(tuple(result), (0, "", ""))

        status, headers, body = await fetch(
            daemon.url("/posts?page=2"),
            "POST",
            host="example.com",
            headers={"Cache-Control": "no-cache", "User-Agent": "kamal-test/1.0"},
            data=b"x" * 5000,
        )
        self.assertEqual((status, headers.get("x-version")), (200, "app"))
        self.assertEqual(json.loads(body)["length"], 5000)

        line = await daemon.waitForLog(
            lambda e: e.get("msg") == "Request" and e.get("path") == "/posts",
            what="the request log line",
        )
        self.assertEqual(line["service"], "app-web")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["query"], "page=2")
        self.assertEqual(line["req_cache_control"], "no-cache")
        self.assertEqual(line["req_last_modified"], "")
        self.assertEqual(line["req_user_agent"], "kamal-test/1.0")
        self.assertEqual(line["req_content_length"], 5000)

        listing = await kamalProxy("list", env={"KAMAL_PROXY_SOCKET": daemon.socket})
        self.assertEqual(
            listing.out.splitlines()[1].split(),
            ["app-web", "example.com", "/", app.address, "running", "no"],
        )

    async def test_badFlagChangesNothing(self) -> None:
        """
        A deploy with a bad flag, or a service name over 255 characters,
        exits non-zero with a one-line reason naming it, never reaches the
        target, and leaves C{list} unchanged.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        other = startBackend(self, "other")
        first = await ctl(daemon.socket, *deployArgs("app", app.address))
        self.assertEqual(first.code, 0, first.err)
        before = await ctl(daemon.socket, "list")

        for prog, run in (
            ("kamal-proxy-ctl", lambda *a: ctl(daemon.socket, *a)),
            ("kamal-proxy", lambda *a: kamalProxy("--socket", daemon.socket, *a)),
        ):
            result = await run("deploy", "app", f"--target={other.address}", "--drain-timeout=forever")
            reason = assertOneLineError(self, result, prog)
            self.assertIn("--drain-timeout", reason)
            result = await run("deploy", "app", f"--target={other.address}", "--no-such-flag")
            reason = assertOneLineError(self, result, prog)
            self.assertIn("--no-such-flag", reason)
            result = await run("deploy", "a" * 60000, f"--target={other.address}")
            reason = assertOneLineError(self, result, prog)
            self.assertEqual(reason, "invalid service name: longer than 255 characters")

        after = await ctl(daemon.socket, "list")
        self.assertEqual(after.out, before.out)
        self.assertEqual((other.requests, other.healthChecks), ([], 0))
        status, headers, _ = await fetch(daemon.url("/"))
        self.assertEqual((status, headers.get("x-version")), (200, "app"))


class MalformedCommandTests(TestCase):
    """
    Commands from a control client other than ours.
    """

    timeout = 30

    async def test_unreadableArguments(self) -> None:
        """
        A command whose argument is not UTF-8, or is missing, is answered
        with a declared error saying so; the daemon logs one line, no
        traceback, and keeps the connection.
        """
        daemon = await startDaemon(self)
        client = await connectProtocol(UNIXClientEndpoint(reactor, daemon.socket), amp.AMP())
        self.addCleanup(client.transport.loseConnection)
        answers = []
        for command, arguments in ((b"Remove", {"service": b"\xff"}), (b"Remove", {})):
            try:
                await client.callRemoteString(command, **arguments)
            except amp.RemoteAmpError as e:
                answers.append((e.errorCode, e.description))
        self.assertEqual(
            answers,
            [
                (b"INVALID_ARGUMENTS", "argument service is not valid UTF-8"),
                (b"INVALID_ARGUMENTS", "missing argument: service"),
            ],
        )
        await client.callRemoteString(b"List")
        await daemon.waitForMessage("Refused a Remove command: missing argument: service")
        refused = [e for e in daemon.logs() if e["msg"].startswith("Refused a Remove command")]
        self.assertEqual([e["level"] for e in refused], ["WARN", "WARN"])
        self.assertEqual([e for e in daemon.logs() if "error" in e or e["level"] == "ERROR"], [])


class PermissionTests(TestCase):
    """
    A user who may not use the control socket.
    """

    timeout = 30

    async def test_permissionDenied(self) -> None:
        """
        Commands from a user without permission on the socket say
        C{permission denied}, not that the daemon is not running. (Run as
        root giving the socket to another user and dropping root's power to
        override file permissions for the command.)
        """
        setpriv = shutil.which("setpriv")
        if setpriv is None or os.geteuid() != 0:
            self.skipTest("needs root and setpriv")
        daemon = await startDaemon(self)
        os.chown(daemon.socket, 65534, 65534)
        unprivileged = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
        result = await runCommand([*unprivileged, executable("kamal-proxy"), "--socket", daemon.socket, "list"])
        if result.err.startswith("setpriv:"):
            self.skipTest(f"setpriv cannot drop capabilities here: {result.err.strip()}")
        self.assertEqual(
            tuple(result),
            (1, "", f"Error: cannot connect to the kamal-proxy control socket at {daemon.socket}: permission denied\n"),
        )


class VersionTests(TestCase):
    """
    C{--version} of every command line.
    """

    timeout = 30

    async def test_version(self) -> None:
        """
        C{kamal-proxy --version}, C{kamal-proxy run --version}, C{twistd
        kamal-proxy --version} and C{kamal-proxy-ctl --version} print this
        package's version (its metadata's), not Twisted's.
        """
        version = metadata.version("kamal-proxy")
        for argv, prog in (
            ([executable("kamal-proxy"), "--version"], "kamal-proxy"),
            ([executable("kamal-proxy"), "run", "--version"], "kamal-proxy"),
            ([executable("twistd"), "kamal-proxy", "--version"], "kamal-proxy"),
            ([executable("kamal-proxy-ctl"), "--version"], "kamal-proxy-ctl"),
        ):
            result = await runCommand(argv)
            self.assertEqual(tuple(result), (0, f"{prog} version {version}\n", ""), argv)


class NoDaemonTests(TestCase):
    """
    Commands when nothing answers on the control socket.
    """

    timeout = 30

    async def test_noDaemon(self) -> None:
        """
        With no daemon (no socket file, or a dead socket file left behind)
        every command exits 1 saying it cannot connect to the socket at its
        path.
        """
        directory = tempDir(self)
        missing = os.path.join(directory, "missing.sock")
        dead = os.path.join(directory, "dead.sock")
        leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        leftover.bind(dead)
        leftover.close()

        for path in (missing, dead):
            expected = (
                f"Error: cannot connect to the kamal-proxy control socket at {path}: is it running?\n"
            )
            for result in (
                await ctl(path, "list"),
                await kamalProxy("--socket", path, "deploy", "web", "--target=127.0.0.1:9"),
                await kamalProxy("remove", "web", env={"KAMAL_PROXY_SOCKET": path}),
            ):
                self.assertEqual(tuple(result), (1, "", expected))

