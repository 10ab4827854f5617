"""
Tests for L{kamalproxy.thrust.runner} that need no reactor: the missing
command, the bad gateway page, the daemon's environment and the log.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import shutil
from typing import Any

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.control import cli
from kamalproxy.thrust import runner
from kamalproxy.thrust.config import ThrustConfig


class RunnerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def test_missingCommand(self) -> None:
        """
        No command: C{ERROR: missing upstream command} on standard error,
        status 1, nothing started.
        """
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(runner.thrust([], {}, reactor=object()), 1)
        self.assertEqual(err.getvalue(), "ERROR: missing upstream command\n")
        e = self.assertRaises(SystemExit, runner.main, [])
        self.assertEqual(e.code, 1)

    def test_cliVerb(self) -> None:
        """
        C{kamal-proxy thrust ARGS} runs L{runner.thrust} with ARGS and exits
        with its status.
        """
        calls: list[list[str]] = []
        self.patch(runner, "thrust", lambda argv: calls.append(argv) or 5)
        e = self.assertRaises(SystemExit, cli.main, ["thrust", "./bin/rails", "server"])
        self.assertEqual(e.code, 5)
        self.assertEqual(calls, [["./bin/rails", "server"]])

    def test_badGatewayPage(self) -> None:
        """
        An existing C{BAD_GATEWAY_PAGE} is copied as C{502.html} of a
        private error pages directory; a missing one gives none.
        """
        page = os.path.join(self.dir, "mine.html")
        with open(page, "wb") as f:
            f.write(b"<p>booting</p>")
        private = os.path.join(self.dir, "private")
        directory = runner.errorPagesDirectory(page, private)
        with open(os.path.join(directory, "502.html"), "rb") as f:
            self.assertEqual(f.read(), b"<p>booting</p>")
        self.assertEqual(os.listdir(directory), ["502.html"])
        self.assertEqual(runner.errorPagesDirectory(os.path.join(self.dir, "none.html"), private), "")

    def test_daemonEnvironment(self) -> None:
        """
        Only the daemon's own prefixed variables reach its options, not its
        socket or state directory.
        """
        self.assertEqual(
            runner.daemonEnvironment(
                {"KAMAL_PROXY_MAX_CONNECTIONS": "5", "KAMAL_PROXY_SOCKET": "/x", "HTTP_PORT": "1",
                 "KAMAL_PROXY_STATE_DIR": "/y"}
            ),
            {"KAMAL_PROXY_MAX_CONNECTIONS": "5"},
        )  # fmt: skip

    def test_logRequests(self) -> None:
        """
        With C{LOG_REQUESTS} false the request lines are left out of the
        log, other lines kept.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        events: list[dict[str, Any]] = [
            {"log_namespace": "kamalproxy.request", "log_level": LogLevel.info, "log_format": "{kamal_json}",
             "kamal_json": '{"msg":"Request"}', "log_time": 0.0},
            {"log_namespace": "kamalproxy.routing", "log_level": LogLevel.info, "log_format": "Deployed",
             "log_time": 0.0},
        ]  # fmt: skip
        for event in events:
            runner.logObserver(ThrustConfig(logRequests=False))(event)
        self.assertNotIn("Request", out.getvalue())
        self.assertIn("Deployed", out.getvalue())
        runner.logObserver(ThrustConfig())(events[0])
        self.assertIn("Request", out.getvalue())
