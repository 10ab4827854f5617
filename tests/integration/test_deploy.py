"""
Deploys against a real daemon: no request lost or misrouted under load,
requests in flight drained before C{deploy} returns, unhealthy targets
refused, changes that cannot be saved refused, and deployed services
surviving a restart.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
from typing import Optional

import attr
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    ctl,
    deployArgs,
    fetch,
    httpPool,
    parseTime,
    startBackend,
    startDaemon,
)

_TMPFS_SCRIPT = 'mkdir -p "$1" && mount -t tmpfs -o size=256k,mode=700 kp-state "$1" && shift && exec "$@"'


def _tmpfsWrapper(directory: str) -> Optional[list[str]]:
    """
    A command that runs a command line in a mount namespace of its own
    where C{directory} is a small tmpfs (a disk that can be filled), or
    L{None} where that cannot be done (not root, no C{unshare}).
    """
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return None
    wrapper = [unshare, "--mount", "--propagation", "private", "sh", "-c", _TMPFS_SCRIPT, "sh", directory]
    probe = tempfile.mkdtemp(prefix="kp-tmpfs-")
    try:
        done = subprocess.run([*wrapper[:-1], os.path.join(probe, "d"), "true"], capture_output=True)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return wrapper if done.returncode == 0 else None


def _fill(directory: str) -> str:
    """
    Fill the file system of C{directory} with a file, returning its path.
    """
    path = os.path.join(directory, "filler")
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return path

LOAD_SECONDS = 3.0
CLIENTS = 8
MIN_RATE = 200


@attr.s(auto_attribs=True, frozen=True)
class Outcome:
    """
    One request of the load: when it ran, what came back.
    """

    started: float
    ended: float
    method: str
    status: int
    version: Optional[str]
    ok: bool
    error: str = ""


class ZeroDowntimeTests(TestCase):
    """
    A deploy under steady load.
    """

    timeout = 30

    async def test_deployUnderLoadLosesNoRequest(self) -> None:
        """
        Eight clients send GETs and POSTs with bodies for three seconds (at
        least 200 requests a second) while v2 replaces v1 one second in:
        every response is a 200 with the right body; responses finished
        before the switch come from v1, requests sent after C{deploy}
        returned are answered by v2, and v1 gets no request once C{deploy}
        has returned, so stopping it then costs nothing.
        """
        daemon = await startDaemon(self)
        v1 = startBackend(self, "v1")
        v2 = startBackend(self, "v2")
        first = await ctl(daemon.socket, *deployArgs("web", v1.address))
        self.assertEqual((first.code, first.err), (0, ""))

        pool = httpPool(self, CLIENTS)
        url = daemon.url("/load")
        outcomes: list[Outcome] = []
        loadStart = reactor.seconds()
        deadline = loadStart + LOAD_SECONDS

        async def client(number: int) -> None:
            count = 0
            while reactor.seconds() < deadline:
                count += 1
                post = count % 2 == 0
                body = b"x" * (64 * ((number + count) % 32 + 1)) if post else None
                method = "POST" if post else "GET"
                started = reactor.seconds()
                try:
                    status, headers, answer = await fetch(url, method, data=body, pool=pool, timeout=5)
                except Exception as e:
                    outcomes.append(Outcome(started, reactor.seconds(), method, 0, None, False, repr(e)))
                    continue
                version = headers.get("x-version")
                try:
                    info = json.loads(answer)
                    ok = (
                        status == 200
                        and info["version"] == version
                        and info["method"] == method
                        and info["length"] == len(body or b"")
                    )
                except ValueError:
                    ok = False
                error = "" if ok else f"{status} {answer[:200]!r}"
                outcomes.append(Outcome(started, reactor.seconds(), method, status, version, ok, error))

        clients = gatherResults([Deferred.fromCoroutine(client(n)) for n in range(CLIENTS)])
        deploy = await deferLater(
            reactor, 1.0, ctl, daemon.socket, *deployArgs("web", v2.address, "--drain-timeout=5s")
        )
        deployReturned = deploy.ended
        await v1.stop()
        v1StoppedAt = reactor.seconds()
        await clients

        self.assertEqual((deploy.code, deploy.err), (0, ""))
        switched = await daemon.waitForLog(
            lambda e: e.get("msg") == f"Deployed web to {v2.address}", what="the switch"
        )
        switchTime = parseTime(switched["time"])
        self.assertTrue(deploy.started < switchTime < deployReturned)

        failures = [o for o in outcomes if not o.ok]
        self.assertEqual(failures, [], f"{len(failures)} of {len(outcomes)} requests failed")
        self.assertEqual({o.method for o in outcomes}, {"GET", "POST"})

        before = [o for o in outcomes if o.ended < switchTime]
        after = [o for o in outcomes if o.started > deployReturned]
        during = [o for o in outcomes if o.ended >= switchTime and o.started <= deployReturned]
        self.assertTrue(before and after, "the deploy was not in the middle of the load")
        self.assertEqual({o.version for o in before}, {"v1"})
        self.assertEqual({o.version for o in after}, {"v2"})
        self.assertEqual({o.version for o in outcomes if o.started > switchTime}, {"v2"})
        self.assertLessEqual({o.version for o in during}, {"v1", "v2"})
        self.assertTrue([o for o in outcomes if o.started > v1StoppedAt], "no request after v1 stopped")

        late = [r for r in v1.requests if r.time > deployReturned]
        self.assertEqual(late, [], "v1 received requests after deploy returned")

        perSecond = [0] * int(LOAD_SECONDS)
        for o in outcomes:
            second = int(o.ended - loadStart)
            if second < len(perSecond):
                perSecond[second] += 1
        self.assertTrue(
            all(n >= MIN_RATE for n in perSecond),
            f"requests per second {perSecond}, wanted at least {MIN_RATE} each",
        )


class DrainTests(TestCase):
    """
    Requests in flight on the old version when a deploy switches.
    """

    timeout = 30

    async def test_deployReturnsAfterRequestInFlightCompletes(self) -> None:
        """
        A 3-second request in flight on v1 when v2 is deployed completes
        with v1's 200, and C{deploy} exits only after v1 answered it; new
        requests meanwhile already go to v2.
        """
        daemon = await startDaemon(self)
        v1 = startBackend(self, "v1")
        v2 = startBackend(self, "v2")
        first = await ctl(daemon.socket, *deployArgs("web", v1.address))
        self.assertEqual(first.code, 0, first.err)

        slowDone: list[float] = []
        slow = Deferred.fromCoroutine(fetch(daemon.url("/slow?s=3"), timeout=10))
        slow.addCallback(lambda result: slowDone.append(reactor.seconds()) or result)
        arrived = await v1.waitForRequest(lambda r: r.uri.startswith("/slow"))

        deploying = ctl(daemon.socket, *deployArgs("web", v2.address, "--drain-timeout=10s"))
        await daemon.waitForMessage(f"Deployed web to {v2.address}")
        status, headers, _ = await fetch(daemon.url("/meanwhile"))
        self.assertEqual((status, headers.get("x-version")), (200, "v2"))
        self.assertFalse(deploying.called, "deploy returned while a request was in flight")

        deploy = await deploying
        status, headers, body = await slow
        self.assertEqual(deploy.code, 0, deploy.err)
        self.assertEqual((status, headers.get("x-version")), (200, "v1"))
        self.assertEqual(json.loads(body)["uri"], "/slow?s=3")

        [(answeredAt, uri)] = v1.answeredLater
        self.assertEqual(uri, "/slow?s=3")
        self.assertGreaterEqual(answeredAt - arrived.time, 2.9)
        self.assertGreater(deploy.ended, answeredAt, "deploy returned before the request finished")
        self.assertGreater(deploy.ended, slowDone[0] - 0.5)
        self.assertGreaterEqual(deploy.duration, 2.0)


class UnhealthyTargetTests(TestCase):
    """
    Deploying a target that never passes its health check.
    """

    timeout = 30

    async def test_unhealthyTargetFailsDeployAndKeepsOldVersion(self) -> None:
        """
        With C{--deploy-timeout 2s} and a target whose C{/up} answers 503,
        C{deploy} exits non-zero after about 2 seconds with the original's
        one-line error, and v1 keeps serving.
        """
        daemon = await startDaemon(self)
        v1 = startBackend(self, "v1")
        broken = startBackend(self, "v2", healthStatus=503)
        first = await ctl(daemon.socket, *deployArgs("web", v1.address))
        self.assertEqual(first.code, 0, first.err)

        deploy = await ctl(
            daemon.socket, *deployArgs("web", broken.address, "--deploy-timeout", "2s")
        )

        self.assertNotEqual(deploy.code, 0)
        self.assertTrue(1.0 <= deploy.duration <= 3.0, f"deploy took {deploy.duration:.2f}s")
        self.assertEqual(
            deploy.err.splitlines(),
            ["Error: target failed to become healthy within configured timeout (2s)"],
        )
        self.assertGreater(broken.healthChecks, 0)
        self.assertEqual(broken.requests, [])

        status, headers, _ = await fetch(daemon.url("/still"))
        self.assertEqual((status, headers.get("x-version")), (200, "v1"))
        listing = await ctl(daemon.socket, "list")
        self.assertIn(v1.address, listing.out)
        self.assertNotIn(broken.address, listing.out)


class FullDiskTests(TestCase):
    """
    A state directory whose disk is full: a real tmpfs filled up, in a
    mount namespace of the daemon's own (root only).
    """

    timeout = 30

    async def test_changeThatCannotBeSavedIsNotMade(self) -> None:
        """
        With the state disk full, C{deploy} and C{remove} exit 1 with one
        line saying why, and change nothing: the old target keeps serving,
        the state file keeps the old service. Once there is room, the same
        deploy works.
        """
        stateDir = os.path.join(tempfile.mkdtemp(prefix="kp-it-"), "state")
        self.addCleanup(shutil.rmtree, os.path.dirname(stateDir), ignore_errors=True)
        wrapper = _tmpfsWrapper(stateDir)
        if wrapper is None:
            self.skipTest("needs root and unshare to mount a small tmpfs")
        daemon = await startDaemon(self, stateDir=stateDir, wrapper=wrapper)
        v1 = startBackend(self, "v1")
        v2 = startBackend(self, "v2")
        first = await ctl(daemon.socket, *deployArgs("web", v1.address))
        self.assertEqual(first.code, 0, first.err)
        seen = f"/proc/{daemon.pid}/root{stateDir}"  # the daemon's tmpfs
        filler = _fill(seen)

        deploy = await ctl(daemon.socket, *deployArgs("web", v2.address))
        remove = await ctl(daemon.socket, "remove", "web")

        for result in (deploy, remove):
            self.assertEqual(result.code, 1)
            self.assertEqual(result.out, "")
            self.assertEqual(result.err, "Error: cannot save state: No space left on device\n")
        status, headers, _ = await fetch(daemon.url("/"))
        self.assertEqual((status, headers.get("x-version")), (200, "v1"))
        listing = await ctl(daemon.socket, "list")
        self.assertIn(v1.address, listing.out)
        self.assertNotIn(v2.address, listing.out)
        self.assertEqual(sorted(os.listdir(seen)), ["filler", "kamal-proxy.state"])
        with open(os.path.join(seen, "kamal-proxy.state")) as f:
            self.assertEqual([s["targets"] for s in json.load(f)], [[v1.address]])
        errors = [e["msg"] for e in daemon.logs() if e.get("level") == "ERROR"]
        self.assertEqual(
            errors,
            [
                "Deploy of web not made: cannot save state: No space left on device",
                "Remove of web not made: cannot save state: No space left on device",
            ],
        )

        os.remove(filler)
        again = await ctl(daemon.socket, *deployArgs("web", v2.address))
        self.assertEqual(again.code, 0, again.err)
        status, headers, _ = await fetch(daemon.url("/"))
        self.assertEqual((status, headers.get("x-version")), (200, "v2"))


class RestartTests(TestCase):
    """
    Stopping the daemon and starting it again on the same state directory.
    """

    timeout = 40

    async def test_restartRestoresServicesWithoutDeploy(self) -> None:
        """
        After SIGTERM (exit 0) and a new start on the same state directory,
        C{list} shows the same services and requests are routed as before,
        with no new deploy.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        api = startBackend(self, "api")
        for args in (
            deployArgs("app", app.address, "--host=app.example.com"),
            deployArgs("api", api.address, "--path-prefix=/api"),
        ):
            result = await ctl(daemon.socket, *args)
            self.assertEqual(result.code, 0, result.err)
        before = await ctl(daemon.socket, "list")
        self.assertEqual(len(before.out.splitlines()), 3, before.out)

        self.assertEqual(await daemon.stop(), 0)
        again = await startDaemon(
            self, port=daemon.port, stateDir=daemon.stateDir, socketPath=daemon.socket
        )

        after = await ctl(again.socket, "list")
        self.assertEqual(after.out, before.out)
        status, headers, body = await fetch(again.url("/page"), host="app.example.com")
        self.assertEqual((status, headers.get("x-version")), (200, "app"))
        status, headers, body = await fetch(again.url("/api/things?id=1"), host="other.example")
        self.assertEqual((status, headers.get("x-version")), (200, "api"))
        self.assertEqual(json.loads(body)["uri"], "/things?id=1")
        messages = [e.get("msg", "") for e in again.logs()]
        self.assertIn("Restored app", messages)
        self.assertIn("Restored api", messages)
        self.assertEqual([m for m in messages if m.startswith("Deployed")], [])

    async def test_startRemovesTemporaryFilesOfAKilledSave(self) -> None:
        """
        A daemon killed while saving leaves a C{.kamal-proxy.state.<hex>.tmp}
        file in the state directory; the next start removes it (and no
        other file) and says so.
        """
        stateDir = os.path.join(tempfile.mkdtemp(prefix="kp-it-"), "state")
        self.addCleanup(shutil.rmtree, os.path.dirname(stateDir), ignore_errors=True)
        os.makedirs(stateDir)
        stale = os.path.join(stateDir, ".kamal-proxy.state.5eb2c0ffee00.tmp")
        other = os.path.join(stateDir, ".kamal-proxy.state.mine.tmp")
        for path in (stale, other):
            with open(path, "w") as f:
                f.write('[{"name": "half')

        daemon = await startDaemon(self, stateDir=stateDir)

        self.assertEqual(os.listdir(stateDir), [os.path.basename(other)])
        messages = [e.get("msg", "") for e in daemon.logs()]
        self.assertIn(f"Removed {stale}, left by an interrupted save", messages)
