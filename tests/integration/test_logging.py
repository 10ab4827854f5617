"""
The daemon's standard output: JSON lines only, request lines with the
original's field names, and the error statuses they record.
"""

from __future__ import annotations

import json
import uuid

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    ctl,
    curl,
    deployArgs,
    fetch,
    hasCurl,
    parseTime,
    startBackend,
    startDaemon,
)

from tests.observe.test_requestlog import FIELDS as REQUEST_FIELDS  # the original's field names


class JSONLinesTests(TestCase):
    """
    What C{kamal-proxy run} writes on standard output.
    """

    timeout = 30

    async def test_stdoutIsJSONLines(self) -> None:
        """
        Every line the daemon writes from start to exit is a JSON object
        with C{time}, C{level} and C{msg}; each request gives one line with
        C{msg} "Request" and exactly the original's fields, filled in.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        deployed = await ctl(daemon.socket, *deployArgs("app", app.address, "--host=app.test"))
        self.assertEqual(deployed.code, 0, deployed.err)

        status, _, _ = await fetch(
            daemon.url("/things/1?a=1&b=two"),
            "POST",
            host="app.test",
            headers={"Content-Type": "text/plain", "User-Agent": "logging-test/2"},
            data=b"hello world",
        )
        self.assertEqual(status, 200)
        status, _, _ = await fetch(daemon.url("/nowhere"), host="unknown.test")
        self.assertEqual(status, 404)
        self.assertEqual(await daemon.stop(), 0)

        self.assertEqual(daemon.output.stderr, b"")
        self.assertTrue(daemon.output.lines)
        for line in daemon.output.lines:
            entry = json.loads(line)
            self.assertIsInstance(entry, dict, line)
            self.assertTrue({"time", "level", "msg"} <= entry.keys(), line)
            self.assertIn(entry["level"], {"DEBUG", "INFO", "WARN", "ERROR"}, line)
            parseTime(entry["time"])

        posted, missing = daemon.requestLogs()
        for entry in (posted, missing):
            self.assertEqual(set(entry), REQUEST_FIELDS)
            self.assertEqual(entry["level"], "INFO")
            self.assertEqual(entry["port"], daemon.port)
            self.assertEqual((entry["client_addr"], entry["remote_addr"]), ("127.0.0.1", "127.0.0.1"))
            self.assertIsInstance(entry["client_port"], int)
            self.assertIsInstance(entry["duration"], int)
            self.assertGreater(entry["duration"], 0)
            self.assertEqual((entry["proto"], entry["scheme"]), ("HTTP/1.1", "http"))

        self.assertEqual(
            {k: posted[k] for k in ("host", "path", "query", "method", "status", "service", "target")},
            {
                "host": "app.test",
                "path": "/things/1",
                "query": "a=1&b=two",
                "method": "POST",
                "status": 200,
                "service": "app",
                "target": app.address,
            },
        )
        self.assertEqual(uuid.UUID(posted["request_id"]).version, 4)
        self.assertEqual((posted["req_content_length"], posted["req_content_type"]), (11, "text/plain"))
        self.assertEqual(posted["resp_content_type"], "application/json")
        self.assertGreater(posted["resp_content_length"], 0)
        self.assertEqual(posted["user_agent"], "logging-test/2")
        self.assertEqual(
            {k: missing[k] for k in ("host", "path", "status", "service", "target")},
            {"host": "unknown.test", "path": "/nowhere", "status": 404, "service": "", "target": ""},
        )


class LogLevelTests(TestCase):
    """
    What C{kamal-proxy run} logs besides requests, with and without
    C{--debug}.
    """

    timeout = 40

    async def session(self, *flags: str) -> list[dict]:
        """
        Start a daemon with C{flags}, deploy, list, remove, stop it; return
        its log lines.
        """
        daemon = await startDaemon(self, extraArgs=flags)
        app = startBackend(self, "app")
        for args in (deployArgs("app", app.address), ["list"], ["remove", "app"]):
            result = await ctl(daemon.socket, *args)
            self.assertEqual(result.code, 0, result.err)
        self.assertEqual(await daemon.stop(), 0)
        self.assertEqual(daemon.output.stderr, b"")
        return daemon.logs()

    async def test_quietByDefault(self) -> None:
        """
        Without C{--debug} the log has the meaningful events only: start,
        target health, deploy, remove, stop; none of Twisted's details.
        """
        logs = await self.session()
        self.assertEqual({e["level"] for e in logs}, {"INFO"})
        expected = [
            "No previous state to restore",
            "Server started: HTTP on port ",
            "Target health updated: ",
            "Deployed app to ",
            "Removed app",
            "Server stopped",
        ]
        messages = [e["msg"] for e in logs]
        self.assertEqual(len(messages), len(expected), messages)
        for message, start in zip(messages, expected):
            self.assertTrue(message.startswith(start), (message, start))

    async def test_debug(self) -> None:
        """
        With C{--debug} the log also has Twisted's details (factories
        started and stopped, each control connection) and a line per control
        command, as DEBUG lines.
        """
        logs = await self.session("--debug")
        debug = [e["msg"] for e in logs if e["level"] == "DEBUG"]
        for fragment in (
            "Starting factory <kamalproxy.http.site.ProxySite object",
            "Stopping factory <kamalproxy.control.server.ControlFactory object",
            "connection established (HOST:UNIXAddress(",
            'Control command Deploy {"service": "app"',
            "Control command List {}",
            'Control command Remove {"service": "app"}',
        ):
            self.assertTrue(any(fragment in m for m in debug), (fragment, debug))
        info = [e["msg"].split(":")[0] for e in logs if e["level"] == "INFO"]
        self.assertIn("Deployed app", " ".join(info))


class ErrorStatusTests(TestCase):
    """
    Answers and log lines when the target fails.
    """

    timeout = 30

    async def test_targetDownGives502(self) -> None:
        """
        A request to a target that has gone away (its process killed, before
        a health check noticed) gets the 502 page, logged with status 502;
        once a health check has seen it down, requests get 503.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        deployed = await ctl(
            daemon.socket, "deploy", "app", f"--target={app.address}", "--health-check-interval=1m"
        )
        self.assertEqual(deployed.code, 0, deployed.err)
        status, _, _ = await fetch(daemon.url("/before"))
        self.assertEqual(status, 200)

        await app.stop()
        status, headers, body = await fetch(daemon.url("/after"))

        self.assertEqual(status, 502)
        self.assertIn("text/html", headers.get("content-type", ""))
        self.assertIn(b"502", body)
        line = await daemon.waitForLog(lambda e: e.get("msg") == "Request" and e.get("path") == "/after")
        self.assertEqual((line["status"], line["service"]), (502, "app"))

        other = startBackend(self, "other")
        deployed = await ctl(
            daemon.socket, "deploy", "other", f"--target={other.address}", "--host=other.test",
            "--health-check-interval=100ms",
        )
        self.assertEqual(deployed.code, 0, deployed.err)
        await other.stop()
        await daemon.waitForMessage(f"{other.address} is unhealthy")
        status, _, _ = await fetch(daemon.url("/later"), host="other.test")
        self.assertEqual(status, 503)

    async def test_slowTargetGives504(self) -> None:
        """
        A target slower than C{--target-timeout 1s} to answer gets the
        client a 504 after about a second, logged with status 504.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        deployed = await ctl(daemon.socket, *deployArgs("app", app.address, "--target-timeout=1s"))
        self.assertEqual(deployed.code, 0, deployed.err)

        started = reactor.seconds()
        if hasCurl():
            status, body = await curl(daemon.url("/slow?s=3"))
        else:  # pragma: no cover - curl is installed by .ci/run
            status, _, raw = await fetch(daemon.url("/slow?s=3"))
            body = raw.decode()
        elapsed = reactor.seconds() - started

        self.assertEqual(status, 504)
        self.assertIn("504", body)
        self.assertTrue(0.9 <= elapsed < 2.5, f"answered after {elapsed:.2f}s")
        line = await daemon.waitForLog(lambda e: e.get("msg") == "Request" and e.get("path") == "/slow")
        self.assertEqual((line["status"], line["query"]), (504, "s=3"))
        self.assertGreaterEqual(line["duration"], 900_000_000)
        self.assertEqual(app.answeredLater, [])
