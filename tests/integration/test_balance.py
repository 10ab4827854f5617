"""
Several targets end to end: readers and writer affinity, and failover when
a target is killed under load; a real daemon, real backends on 127.0.0.1
and real clients.
"""

from __future__ import annotations

import os
import sys
import uuid
from http.cookies import SimpleCookie

import attr
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    Daemon,
    OutputCollector,
    bounded,
    environment,
    fetch,
    httpPool,
    kamalProxy,
    pollUntil,
    startBackend,
    startDaemon,
)

_BACKEND_SCRIPT = os.path.join(os.path.dirname(__file__), "processbackend.py")


async def _kamalProxy(daemon: Daemon, *args: str) -> str:
    """
    Run C{kamal-proxy args...} against C{daemon} as Kamal does (the
    socket from the environment); return its output, failing unless it
    exits 0.
    """
    result = await kamalProxy(*args, env={"KAMAL_PROXY_SOCKET": daemon.socket})
    if result.code != 0:
        raise AssertionError(f"kamal-proxy {' '.join(args)} exited {result.code}: {result.err}")
    return result.out


class ReadersTests(TestCase):
    """
    C{--read-target} and writer affinity.
    """

    timeout = 60

    async def test_writerAffinity(self) -> None:
        """
        Reads go to the reader, writes to the writer, each with
        C{X-Kamal-Target}; after a POST, a GET carrying the cookie its
        response set goes to the writer until the cookie's time, then to
        the reader again. C{list} shows both targets.
        """
        daemon = await startDaemon(self)
        writer = startBackend(self, "writer")
        reader = startBackend(self, "reader")
        await _kamalProxy(
            daemon,
            "deploy",
            "app",
            f"--target={writer.address}",
            f"--read-target={reader.address}",
            "--writer-affinity-timeout=500ms",
            "--health-check-interval=100ms",
        )
        listing = await _kamalProxy(daemon, "list")
        self.assertIn(f"{writer.address},{reader.address}", listing)

        pool = httpPool(self)
        status, headers, _ = await fetch(daemon.url("/page"), pool=pool)
        self.assertEqual((status, headers["x-version"]), (200, "reader"))
        self.assertNotIn("set-cookie", headers)
        self.assertEqual(reader.requests[-1].headers["x-kamal-target"], reader.address)

        status, headers, _ = await fetch(daemon.url("/form"), "POST", data=b"x=1", pool=pool)
        self.assertEqual((status, headers["x-version"]), (200, "writer"))
        self.assertEqual(writer.requests[-1].headers["x-kamal-target"], writer.address)
        cookie = SimpleCookie(headers["set-cookie"])["kamal-writer"]
        self.assertEqual((cookie["path"], cookie["httponly"]), ("/", True))
        expiry = int(cookie.value) / 1000
        sendCookie = {"Cookie": f"kamal-writer={cookie.value}"}

        status, headers, _ = await fetch(daemon.url("/page"), headers=sendCookie, pool=pool)
        self.assertLess(reactor.seconds(), expiry, "the read came too late to test affinity")
        self.assertEqual((status, headers["x-version"]), (200, "writer"))

        await pollUntil(lambda: reactor.seconds() > expiry + 0.01, 5, "the cookie's time to pass")
        status, headers, _ = await fetch(daemon.url("/page"), headers=sendCookie, pool=pool)
        self.assertEqual((status, headers["x-version"]), (200, "reader"))


@attr.s(auto_attribs=True)
class _Outcome:
    """
    One request of the load run, as the client saw it.
    """

    requestId: str
    sent: float
    done: float = 0.0
    status: int = 0
    backend: str = ""
    error: str = ""


class _ProcessBackend:
    """
    A L{processbackend} subprocess, killed in the test's cleanup.
    """

    def __init__(self, testCase: TestCase, name: str) -> None:
        self.name = name
        self.output = OutputCollector(f"backend {name}")
        self.process = reactor.spawnProcess(
            self.output,
            sys.executable,
            [sys.executable, _BACKEND_SCRIPT, name],
            env=environment(),
        )
        testCase.addCleanup(self.kill)
        self.address = ""

    async def started(self) -> "_ProcessBackend":
        line = await self.output.waitForLine(lambda line: line.strip().isdigit(), 15, "its port")
        self.address = f"127.0.0.1:{int(line)}"
        return self

    def kill(self) -> Deferred:
        try:
            self.process.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        return self.output.waitForExit(5)


RATE = 300
"""Requests per second of the load run."""

DURATION = 3.0
"""Seconds the load run lasts."""

KILL_AT = 1.5
"""Seconds into the run when one target is killed."""


class FailoverTests(TestCase):
    """
    A target killed under load costs only the requests already sent to it.
    """

    timeout = 90

    async def test_killedUnderLoad(self) -> None:
        """
        Three targets get ~300 GET requests a second for 3 s; one of them is
        killed with C{kill -9} halfway. The only requests that may fail are
        those in flight when it died, and each of those was sent to it (the
        daemon's log says so); every request sent after its death is
        answered 200 by the two others, at once, although its health check
        (every 30 s) has not noticed yet.
        """
        daemon = await startDaemon(self)
        backends = [await _ProcessBackend(self, name).started() for name in ("one", "two", "three")]
        victim = backends[1]
        await _kamalProxy(
            daemon,
            "deploy",
            "app",
            *(f"--target={b.address}" for b in backends),
            "--health-check-interval=30s",
        )
        pool = httpPool(self, size=64)
        outcomes: list[_Outcome] = []
        pending: list[Deferred] = []
        total = int(RATE * DURATION)
        started = reactor.seconds()
        killed: list[float] = []  # when the kill was sent, when the death was seen

        async def one(outcome: _Outcome) -> None:
            try:
                response = await treq.get(
                    daemon.url("/work"), headers={"X-Request-ID": outcome.requestId}, pool=pool
                )
                await treq.content(response)
                outcome.status = response.code
                outcome.backend = (response.headers.getRawHeaders(b"x-backend") or [b""])[0].decode()
            except Exception as e:
                outcome.error = repr(e)
            outcome.done = reactor.seconds()

        def issue() -> None:
            due = min(total, int((reactor.seconds() - started) * RATE) + 1)
            while len(outcomes) < due:
                outcome = _Outcome(str(uuid.uuid4()), reactor.seconds())
                outcomes.append(outcome)
                pending.append(Deferred.fromCoroutine(one(outcome)))
            if len(outcomes) >= total:
                loop.stop()

        async def killVictim() -> None:
            await deferLater(reactor, KILL_AT, lambda: None)
            killed.append(reactor.seconds())
            victim.process.signalProcess("KILL")
            await victim.output.waitForExit(5)
            killed.append(reactor.seconds())

        loop = LoopingCall(issue)
        killing = Deferred.fromCoroutine(killVictim())
        await bounded(loop.start(0.005), DURATION + 10, "the load run")
        await killing
        await bounded(DeferredList(pending), 30, "the last answers")
        killSent, deathSeen = killed
        self.assertEqual(len(outcomes), total)
        self.assertLess(killSent - started, DURATION - 0.5, "the run was too slow to kill mid-run")

        failed = [o for o in outcomes if o.status != 200]
        inFlightAtDeath = [o for o in outcomes if o.sent < deathSeen and o.done > killSent]
        after = [o for o in outcomes if o.sent > deathSeen]
        before = [o for o in outcomes if o.done < killSent]
        self.assertEqual({o.backend for o in before}, {"one", "two", "three"})
        self.assertGreater(len(after), RATE * 0.5)
        self.assertEqual([o for o in after if o.status != 200], [])
        self.assertEqual({o.backend for o in after}, {"one", "three"})
        # Only requests in flight when it died failed, each with the 502 page ...
        self.assertEqual([o for o in failed if o not in inFlightAtDeath], [])
        self.assertEqual({(o.status, o.error) for o in failed} - {(502, "")}, set())
        self.assertLessEqual(len(failed), len(inFlightAtDeath))
        # ... and the daemon had sent each of them to the killed target.
        ids = {o.requestId for o in failed}
        await daemon.waitForRequestLogs(lambda e: True, total, timeout=20)
        logged = {e["request_id"]: e for e in daemon.requestLogs() if e["request_id"] in ids}
        self.assertEqual({(e["status"], e["target"]) for e in logged.values()} - {(502, victim.address)}, set())
        self.assertEqual(len(logged), len(failed))
        succeeded = len(outcomes) - len(failed)
        self.assertEqual(succeeded, len([o for o in outcomes if o.status == 200]))
        self.addCleanup(
            lambda: sys.stderr.write(
                f"\nkill -9 under load: {total} requests, {len(failed)} failed,"
                f" {len(inFlightAtDeath)} in flight at the kill\n"
            )
        )
