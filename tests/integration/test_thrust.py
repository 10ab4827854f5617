"""
C{kamal-proxy thrust COMMAND [ARGS...]} with a real app as its child, on
127.0.0.1: it serves through the proxy, answers 502 (the app's
C{public/502.html}) before the app listens, relays SIGTERM, and exits with
the app's status.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Optional, Sequence

from twisted.internet.task import deferLater

from twisted.internet import reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.trial.unittest import TestCase

from kamalproxy.tls.store import cacheDirectoryFor

from tests.integration.test_tls import curlRun, parseCurl, startPebble
from tests.integration.harness import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    OutputCollector,
    environment,
    executable,
    fetch,
    freePort,
    runCommand,
    tempDir,
)

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "thrustapp.py")


class Thrust:
    """
    A C{kamal-proxy thrust} subprocess in its own working directory.
    """

    def __init__(
        self,
        testCase: TestCase,
        command: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        port: Optional[int] = None,
    ) -> None:
        self.workDir = tempDir(testCase)
        self.port = freePort() if port is None else port
        self.appPort = freePort()
        self.output = OutputCollector("kamal-proxy thrust")
        settings = {
            "THRUSTER_HTTP_PORT": str(self.port),
            "HTTP_PORT": "1",  # the prefixed one wins
            "THRUSTER_BIND": "127.0.0.1",
            "TARGET_PORT": str(self.appPort),
            "STORAGE_PATH": os.path.join(self.workDir, "storage"),
            **(env or {}),
        }
        argv = [executable("kamal-proxy"), "thrust", *command]
        self.process = reactor.spawnProcess(
            self.output, argv[0], argv, env=environment(settings), path=self.workDir
        )
        testCase.addCleanup(self.cleanup)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def waitFor(self, fragment: str) -> Any:
        return self.output.waitForLine(lambda line: fragment in line, STARTUP_TIMEOUT, repr(fragment))

    def signal(self, name: str) -> None:
        try:
            self.process.signalProcess(name)
        except ProcessExitedAlready:
            pass

    async def cleanup(self) -> None:
        if not self.output.ended:
            self.signal("KILL")
            await self.output.waitForExit(5.0)


class ThrustTests(TestCase):
    """
    The app behind C{kamal-proxy thrust}.
    """

    timeout = 60

    async def test_servesAndRelaysSigterm(self) -> None:
        """
        The app (given C{PORT}) serves a file through the proxy; SIGTERM to
        thrust reaches the app, which exits 7, and thrust exits 7 after
        saying it stopped.
        """
        thrust = Thrust(self, [sys.executable, APP])
        with open(os.path.join(thrust.workDir, "hello.txt"), "w") as f:
            f.write("hello from the app\n")
        await thrust.waitFor(f"app listening on {thrust.appPort}")
        status, headers, body = await fetch(thrust.url("/hello.txt"))
        self.assertEqual((status, body), (200, b"hello from the app\n"))
        await thrust.waitFor('"msg":"Request"')
        thrust.signal("TERM")
        await thrust.waitFor("app got SIGTERM")
        self.assertEqual(await thrust.output.waitForExit(STOP_TIMEOUT), 7)
        self.assertTrue(any("Relaying signal to upstream process: SIGTERM" in line for line in thrust.output.lines))
        self.assertTrue(any("Server stopped" in line for line in thrust.output.lines))

    async def test_badGatewayBeforeTheAppListens(self) -> None:
        """
        Until the app listens, requests get the app's C{public/502.html};
        then they reach it.
        """
        thrust = Thrust(self, [sys.executable, APP, "--wait"], {"LOG_REQUESTS": "false"})
        os.makedirs(os.path.join(thrust.workDir, "public"))
        with open(os.path.join(thrust.workDir, "public", "502.html"), "w") as f:
            f.write("<h1>The app is booting</h1>")
        with open(os.path.join(thrust.workDir, "index.txt"), "w") as f:
            f.write("ready")
        await thrust.waitFor("app waiting")
        status, headers, body = await fetch(thrust.url("/index.txt"))
        self.assertEqual((status, body), (502, b"<h1>The app is booting</h1>"))
        thrust.process.write(b"go\n")
        await thrust.waitFor(f"app listening on {thrust.appPort}")
        status, headers, body = await fetch(thrust.url("/index.txt"))
        self.assertEqual((status, body), (200, b"ready"))
        self.assertFalse(any('"msg":"Request"' in line for line in thrust.output.lines))
        thrust.signal("TERM")
        self.assertEqual(await thrust.output.waitForExit(STOP_TIMEOUT), 7)

    async def test_appExitStatus(self) -> None:
        """
        thrust exits with the app's status, 128 + the signal when a signal
        killed it, and its listener is closed.
        """
        thrust = Thrust(self, ["sh", "-c", "exit 3"])
        self.assertEqual(await thrust.output.waitForExit(STOP_TIMEOUT), 3)
        killed = Thrust(self, ["sh", "-c", "kill -KILL $$"])
        self.assertEqual(await killed.output.waitForExit(STOP_TIMEOUT), 137)
        self.assertTrue(any("Server started" in line for line in killed.output.lines))

    async def test_missingCommand(self) -> None:
        """
        No command: the error on standard error, status 1.
        """
        code, out, err = await runCommand([executable("kamal-proxy"), "thrust"])
        self.assertEqual((code, out, err), (1, "", "ERROR: missing upstream command\n"))

    async def test_commandNotFound(self) -> None:
        """
        A command that cannot be run: an error line, status 1, the
        listeners stopped.
        """
        thrust = Thrust(self, ["/nonexistent/app"])
        self.assertEqual(await thrust.output.waitForExit(STOP_TIMEOUT), 1)
        self.assertTrue(any("Failed to start wrapped process /nonexistent/app" in line for line in thrust.output.lines))
        self.assertTrue(any("Server stopped" in line for line in thrust.output.lines))


class ThrustTLSTests(TestCase):
    """
    With C{TLS_DOMAIN}, thrust gets a certificate as C{deploy --tls} does.
    """

    timeout = 90

    async def test_certificateFromPebble(self) -> None:
        """
        C{TLS_DOMAIN=a.test} and C{ACME_DIRECTORY} naming Pebble: the app is
        served over HTTPS on C{HTTPS_PORT} with a Pebble certificate for
        a.test, kept in C{STORAGE_PATH}; plain HTTP is redirected.
        """
        pebble, root = await startPebble(self)
        httpsPort = freePort()
        thrust = Thrust(
            self,
            [sys.executable, APP],
            {
                "TLS_DOMAIN": "a.test",
                "THRUSTER_HTTPS_PORT": str(httpsPort),
                "ACME_DIRECTORY": pebble.directoryURL,
                "SSL_CERT_FILE": pebble.caBundle.path,  # trust Pebble's own HTTPS
            },
            port=pebble.httpPort,
        )
        with open(os.path.join(thrust.workDir, "hello.txt"), "w") as f:
            f.write("secure hello")
        await thrust.waitFor(f"app listening on {thrust.appPort}")
        url = f"https://a.test:{httpsPort}/hello.txt"
        args = ("--resolve", f"a.test:{httpsPort}:127.0.0.1", "--cacert", root.path, url)
        deadline = reactor.seconds() + 30
        while True:
            result = await curlRun(*args)
            if result.code == 0 or reactor.seconds() > deadline:
                break
            await deferLater(reactor, 0.2, lambda: None)
        status, _, body = parseCurl(result)
        self.assertEqual((status, body), (200, "secure hello"), result.err + thrust.output.describe())
        stored = cacheDirectoryFor(os.path.join(thrust.workDir, "storage"), pebble.directoryURL)
        self.assertTrue(stored.child("a.test.pem").exists())
        redirect = await curlRun("-H", "Host: a.test", f"http://127.0.0.1:{pebble.httpPort}/hello.txt")
        self.assertEqual(parseCurl(redirect)[0], 301)
        thrust.signal("TERM")
        self.assertEqual(await thrust.output.waitForExit(STOP_TIMEOUT), 7)
