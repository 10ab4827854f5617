"""
Tests for L{kamalproxy.routing.rollout} (the split: FNV-1a, the cookie, the
rule) and for the router's rollout API (C{rollout deploy}, C{set}, C{stop}):
errors, persistence, restore and redeploys.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.daemon.state import SaveFailed
from kamalproxy.routing import rollout
from kamalproxy.routing.options import DeployOptions, HealthCheckConfig, InvalidOptions, TargetOptions
from kamalproxy.routing.rollout import (
    RolloutSlot,
    RolloutSplit,
    checkPercentage,
    describeSplit,
    fnv1a32,
    rolloutCookie,
    splitPoint,
)
from kamalproxy.routing.router import DeployError, Router
from kamalproxy.upstream.targets import HEALTHY

from .._helpers import FakeTargets

MAIN = "10.0.0.1:3000"
ROLLOUT = "10.0.0.2:3000"
NEXT = "10.0.0.3:3000"
DISK_FULL = "cannot save state: No space left on device"


def _values(count: int) -> list[bytes]:
    return [b"%05d" % i for i in range(count)]


def _share(split: RolloutSplit, values: list[bytes]) -> int:
    return sum(split.usesRollout(v) for v in values)


def _mainSide(percentage: int) -> bytes:
    """
    A cookie value whose hash sends it to the main group at C{percentage}.
    """
    return next(v for v in _values(1000) if fnv1a32(v) > splitPoint(percentage))


class FNVTests(SynchronousTestCase):
    """
    L{fnv1a32} is the 32-bit FNV-1a hash (Go's C{hash/fnv} C{New32a}).
    """

    def test_vectors(self) -> None:
        """
        The reference vectors of the FNV test suite.
        """
        self.assertEqual(fnv1a32(b""), 0x811C9DC5)
        self.assertEqual(fnv1a32(b"a"), 0xE40C292C)
        self.assertEqual(fnv1a32(b"foobar"), 0xBF9CF968)
        self.assertLess(fnv1a32(b"\xff" * 100), 1 << 32)

    def test_splitPoint(self) -> None:
        """
        The split point is the share of the whole 32-bit range, computed
        in floating point as the original does.
        """
        self.assertEqual(splitPoint(0), 0.0)
        self.assertEqual(splitPoint(25), 4294967295 * 0.25)
        self.assertEqual(splitPoint(100), 4294967295.0)


class SplitTests(SynchronousTestCase):
    """
    L{RolloutSplit.usesRollout}: the allowlist, then the hash of the cookie
    value under the percentage's split point; no cookie, main group.
    """

    def test_quarterOfTenThousandValues(self) -> None:
        """
        At 25 %, between 23 % and 27 % of 10,000 distinct values go to the
        rollout group: numbers, C{user-<n>} names and UUIDs (as session or
        user IDs look) alike.
        """
        uuids = [
            str(uuid.UUID(bytes=hashlib.sha256(b"%d" % i).digest()[:16])).encode()
            for i in range(10_000)
        ]
        for family in (_values(10_000), [b"user-%d" % i for i in range(10_000)], uuids):
            with self.subTest(first=family[0]):
                used = _share(RolloutSplit(25), family)
                self.assertTrue(2300 <= used <= 2700, used)

    def test_originalsCases(self) -> None:
        """
        The original's own cases: 60 % of 1,000 values is 600 within 20;
        10 % with two allowlisted values is 100 within 20, and the listed
        values go to the rollout group.
        """
        self.assertLessEqual(abs(_share(RolloutSplit(60), _values(1000)) - 600), 20)
        split = RolloutSplit(10, ["00001", "00002"])
        self.assertLessEqual(abs(_share(split, _values(1000)) - 100), 20)
        self.assertTrue(split.usesRollout(b"00001"))
        self.assertTrue(split.usesRollout(b"00002"))

    def test_hashComparedWithSplitPoint(self) -> None:
        """
        A value goes to the rollout group exactly when its hash is at most
        the split point.
        """
        split = RolloutSplit(40)
        for value in _values(500):
            self.assertEqual(split.usesRollout(value), fnv1a32(value) <= 0xFFFFFFFF * 0.4)

    def test_deterministic(self) -> None:
        """
        The same value always lands on the same side, in any split object
        with the same percentage.
        """
        values = _values(200)
        first = [RolloutSplit(30).usesRollout(v) for v in values]
        self.assertEqual([RolloutSplit(30).usesRollout(v) for v in values], first)
        self.assertIn(True, first)
        self.assertIn(False, first)

    def test_decisionsRememberedBounded(self) -> None:
        """
        A split remembers the side of at most L{rollout.DECISIONS_KEPT}
        values, and remembered or not, a value gets the same side.
        """
        self.patch(rollout, "DECISIONS_KEPT", 3)
        split = RolloutSplit(50, ["00007"])
        values = _values(10)
        first = [split.usesRollout(v) for v in values]
        self.assertLessEqual(len(split._decided), 3)
        self.assertEqual([split.usesRollout(v) for v in reversed(values)], first[::-1])
        self.assertEqual(first, [v == b"00007" or fnv1a32(v) <= splitPoint(50) for v in values])

    def test_zeroAndHundred(self) -> None:
        """
        0 % sends no value (of these) to the rollout group, 100 % every
        value; without a cookie (or with an empty one) a request stays on
        the main group even at 100 %.
        """
        values = _values(10_000)
        self.assertEqual(_share(RolloutSplit(0), values), 0)
        self.assertEqual(_share(RolloutSplit(100), values), len(values))
        self.assertFalse(RolloutSplit(100).usesRollout(None))
        self.assertFalse(RolloutSplit(100).usesRollout(b""))

    def test_allowlistWins(self) -> None:
        """
        A listed value goes to the rollout group whatever its hash, also at
        0 %; an unlisted one does not.
        """
        value = _mainSide(25)
        self.assertFalse(RolloutSplit(25).usesRollout(value))
        self.assertTrue(RolloutSplit(25, [value.decode()]).usesRollout(value))
        self.assertTrue(RolloutSplit(0, ["staff"]).usesRollout(b"staff"))
        self.assertFalse(RolloutSplit(0, ["staff"]).usesRollout(b"staff2"))

    def test_percentageChecked(self) -> None:
        """
        The percentage is 0 to 100.
        """
        self.assertEqual(checkPercentage(0), 0)
        self.assertEqual(checkPercentage(100), 100)
        for bad in (-1, 101):
            with self.assertRaises(InvalidOptions) as caught:
                RolloutSplit(bad)
            self.assertEqual(
                str(caught.exception), f"invalid percent: {bad} (must be between 0 and 100)"
            )

    def test_json(self) -> None:
        """
        A split is saved as the original's C{rollout_controller} and read
        back equal.
        """
        split = RolloutSplit(25, ["a", "b"])
        saved = json.loads(json.dumps(split.toJSON()))
        self.assertEqual(
            saved,
            {"percentage": 25, "percentage_split_point": 4294967295 * 0.25, "allowlist": ["a", "b"]},
        )
        self.assertEqual(RolloutSplit.fromJSON(saved), split)
        self.assertEqual(RolloutSplit.fromJSON({"percentage": 5, "allowlist": None}), RolloutSplit(5))

    def test_jsonRefused(self) -> None:
        """
        A saved split of the wrong shape cannot be read.
        """
        for bad in ([], {"percentage": "25"}, {"percentage": True}, {"percentage": 120}, {"allowlist": [1]}):
            with self.subTest(saved=bad):
                self.assertRaises(InvalidOptions, RolloutSplit.fromJSON, bad)  # type: ignore[arg-type]

    def test_describe(self) -> None:
        """
        A split in a few words, for C{list}.
        """
        self.assertEqual(RolloutSplit(25).describe(), "25%")
        self.assertEqual(describeSplit(0, ["a", "b"]), "0%, list a,b")


class CookieTests(SynchronousTestCase):
    """
    L{rolloutCookie} reads the C{kamal-rollout} cookie as Go's
    C{Request.Cookie} does.
    """

    def test_found(self) -> None:
        """
        The value among other cookies, across several C{Cookie} lines, with
        spaces around the parts and the name.
        """
        self.assertEqual(rolloutCookie([b"kamal-rollout=u1"]), b"u1")
        self.assertEqual(rolloutCookie([b"a=1; kamal-rollout=u2; b=2"]), b"u2")
        self.assertEqual(rolloutCookie([b"a=1", b"b=2;kamal-rollout=u3"]), b"u3")
        self.assertEqual(rolloutCookie([b"  kamal-rollout =u4 ;"]), b"u4")

    def test_absent(self) -> None:
        """
        No such cookie: L{None}; a cookie whose name merely contains it
        does not count.
        """
        self.assertIsNone(rolloutCookie([]))
        self.assertIsNone(rolloutCookie([b"a=1; b=2"]))
        self.assertIsNone(rolloutCookie([b"x-kamal-rollout=1; kamal-rollout-2=3"]))

    def test_quotesRemoved(self) -> None:
        """
        Surrounding double quotes are not part of the value.
        """
        self.assertEqual(rolloutCookie([b'kamal-rollout="u5"']), b"u5")

    def test_firstValidWins(self) -> None:
        """
        The first cookie of that name with a valid value is taken; one with
        a byte Go refuses (a backslash, a quote inside, non-ASCII) is
        skipped. An empty value is a valid one.
        """
        self.assertEqual(rolloutCookie([b"kamal-rollout=a; kamal-rollout=b"]), b"a")
        self.assertEqual(rolloutCookie([b"kamal-rollout=a\\b; kamal-rollout=ok"]), b"ok")
        self.assertEqual(rolloutCookie([b'kamal-rollout=a"b', b"kamal-rollout=ok"]), b"ok")
        self.assertEqual(rolloutCookie([b"kamal-rollout=\xc3\xa9; kamal-rollout=ok"]), b"ok")
        self.assertEqual(rolloutCookie([b"kamal-rollout=; kamal-rollout=late"]), b"")


class _Store:
    """
    A router's C{persist}: records each snapshot with the service's
    rollout at that moment, or fails as a full disk does while C{full}.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self.full = False
        self.seen: list[tuple[list[dict[str, Any]], Any]] = []

    def save(self, snapshot: list[dict[str, Any]]) -> None:
        service = self.router.services.get("app")
        self.seen.append((snapshot, None if service is None else service.rollout))
        if self.full:
            raise SaveFailed(DISK_FULL)


class RouterRolloutTests(SynchronousTestCase):
    """
    L{Router.rolloutDeploy}, L{Router.rolloutSet} and L{Router.rolloutStop}.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.changes: list[list[dict[str, Any]]] = []
        self.router = Router(self.clock, self.targets.connectorFor, self.changes.append)
        self.store = _Store(self.router)
        self.router.persist = self.store.save
        self.addCleanup(self.router.stop)

    def deploy(self, targets: list[str], options: DeployOptions = DeployOptions()) -> Deferred:
        return Deferred.fromCoroutine(self.router.deploy("app", targets, options))

    def rolloutDeploy(self, name: str = "app", targets: tuple[str, ...] = (ROLLOUT,), **kwargs: Any) -> Deferred:
        return Deferred.fromCoroutine(self.router.rolloutDeploy(name, targets, **kwargs))

    def deployed(self) -> Any:
        """
        The service C{app} with C{MAIN} as main group and C{ROLLOUT}
        installed in its rollout slot.
        """
        self.successResultOf(self.deploy([MAIN]))
        self.successResultOf(self.rolloutDeploy())
        return self.router.services["app"]

    def entry(self) -> dict[str, Any]:
        [entry] = self.router.snapshot()
        return entry

    def test_deployUnknownService(self) -> None:
        """
        A rollout for a service not deployed fails with C{"service not
        found"} and probes nothing.
        """
        failure = self.failureResultOf(self.rolloutDeploy("nope"), DeployError)
        self.assertEqual(failure.getErrorMessage(), "service not found")
        self.assertEqual(self.targets.probes, [])

    def test_deployInstallsWithoutMovingTraffic(self) -> None:
        """
        Once healthy, the rollout targets are installed in the rollout slot
        without a split: the main group still gets every request. The
        state is saved with them.
        """
        service = self.deployed()
        self.assertEqual(service.group.addresses, [MAIN])
        self.assertEqual(service.rollout.group.addresses, [ROLLOUT])
        self.assertIsNone(service.rollout.split)
        self.assertEqual(service.groups, [service.group, service.rollout.group])
        self.assertEqual(self.entry()["rollout_targets"], [ROLLOUT])
        self.assertNotIn("rollout_controller", self.entry())
        self.assertEqual(self.changes[-1], self.router.snapshot())

    def test_deployWaitsForHealth(self) -> None:
        """
        The rollout is installed only once its targets are healthy.
        """
        self.successResultOf(self.deploy([MAIN]))
        self.targets.health[ROLLOUT] = 503
        d = self.rolloutDeploy()
        self.assertNoResult(d)
        self.assertIsNone(self.router.services["app"].rollout)
        self.targets.health[ROLLOUT] = 200
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(self.router.services["app"].rollout.group.addresses, [ROLLOUT])

    def test_deployTimeout(self) -> None:
        """
        Targets still unhealthy after the deploy timeout fail the command
        with deploy's message; nothing changes and they stop being probed.
        """
        self.successResultOf(self.deploy([MAIN]))
        saves = len(self.store.seen)
        self.targets.health[ROLLOUT] = None
        d = self.rolloutDeploy(deployTimeout=5)
        self.clock.advance(5)
        failure = self.failureResultOf(d, DeployError)
        self.assertEqual(
            failure.getErrorMessage(),
            "target failed to become healthy within configured timeout (5s)",
        )
        self.assertIsNone(self.router.services["app"].rollout)
        self.assertEqual(len(self.store.seen), saves)
        probes = len(self.targets.probes)
        self.clock.advance(30)
        self.assertNotIn(ROLLOUT, self.targets.probes[probes:])

    def test_deployRefusesBadArguments(self) -> None:
        """
        Bad targets or read targets, no target and negative timeouts are
        refused with one line; nothing is probed.
        """
        self.successResultOf(self.deploy([MAIN]))
        probes = len(self.targets.probes)
        for kwargs, message in [
            ({"targets": ("bad target",)}, "bad target :invalid host pattern"),
            ({"targets": ()}, "at least one target is required"),
            ({"readTargets": ("bad reader",)}, "bad reader :invalid host pattern"),
            ({"deployTimeout": -1}, "deploy timeout must not be negative"),
            ({"drainTimeout": -1}, "drain timeout must not be negative"),
        ]:
            with self.subTest(**kwargs):
                failure = self.failureResultOf(self.rolloutDeploy(**kwargs), InvalidOptions)
                self.assertEqual(failure.getErrorMessage(), message)
        self.assertEqual(self.targets.probes[probes:], [])
        self.assertIsNone(self.router.services["app"].rollout)

    def test_deployReaders(self) -> None:
        """
        A rollout group may have readers: they are waited for, saved as
        C{rollout_readers}, restored, and described.
        """
        reader = "10.0.0.7:3000"
        self.successResultOf(self.deploy([MAIN]))
        self.targets.health[reader] = 503
        d = self.rolloutDeploy(readTargets=(reader,))
        self.assertNoResult(d)
        self.targets.health[reader] = 200
        self.clock.advance(1)
        self.successResultOf(d)
        group = self.router.services["app"].rollout.group
        self.assertEqual((group.addresses, group.readerAddresses), ([ROLLOUT], [reader]))
        [entry] = self.router.snapshot()
        self.assertEqual((entry["rollout_targets"], entry["rollout_readers"]), ([ROLLOUT], [reader]))
        self.assertEqual(self.router.describe()[0]["rollout"]["read_targets"], [reader])
        restored = Router(MemoryReactorClock(), FakeTargets().connectorFor)
        self.addCleanup(restored.stop)
        restored.restore(self.router.snapshot())
        self.assertEqual(restored.services["app"].rollout.group.readerAddresses, [reader])

    def test_deployUsesServiceTargetOptions(self) -> None:
        """
        The rollout targets are probed as the service's targets are (its
        health check interval here).
        """
        options = DeployOptions(target=TargetOptions(health_check=HealthCheckConfig(interval=5)))
        self.successResultOf(self.deploy([MAIN], options))
        self.successResultOf(self.rolloutDeploy())
        self.targets.probes.clear()
        self.clock.advance(4)
        self.assertEqual(self.targets.probes, [])
        self.clock.advance(1)
        self.assertEqual(sorted(self.targets.probes), [MAIN, ROLLOUT])

    def test_serviceRemovedWhileWaiting(self) -> None:
        """
        A service removed while its rollout targets were being checked
        fails the rollout with C{"service not found"}; they stop being
        probed.
        """
        self.successResultOf(self.deploy([MAIN]))
        self.targets.health[ROLLOUT] = 503
        d = self.rolloutDeploy()
        self.router.remove("app")
        self.targets.health[ROLLOUT] = 200
        self.clock.advance(1)
        self.assertEqual(self.failureResultOf(d, DeployError).getErrorMessage(), "service not found")
        probes = len(self.targets.probes)
        self.clock.advance(10)
        self.assertEqual(self.targets.probes[probes:], [])

    def test_secondDeployDrainsPreviousAndKeepsSplit(self) -> None:
        """
        A new rollout deploy replaces the rollout group, keeps the split,
        and returns once the replaced group has drained.
        """
        service = self.deployed()
        self.router.rolloutSet("app", 25, ["staff"])
        previous = service.rollout.group.targets[0]

        class Inflight:
            def cancelForDrain(self) -> None:
                pass

        request = Inflight()
        previous.started(request)
        d = self.rolloutDeploy(targets=(NEXT,), drainTimeout=10)
        self.assertNoResult(d)
        self.assertEqual(service.rollout.group.addresses, [NEXT])
        self.assertEqual(service.rollout.split, RolloutSplit(25, ["staff"]))
        self.assertTrue(previous.draining)
        previous.finished(request)
        self.successResultOf(d)
        self.assertEqual(self.entry()["rollout_targets"], [NEXT])

    def test_setUnknownServiceAndNoRollout(self) -> None:
        """
        C{rolloutSet} fails with the original's messages: C{"service not
        found"}, and C{"rollout target not set"} before a rollout deploy;
        nothing is saved.
        """
        with self.assertRaises(DeployError) as caught:
            self.router.rolloutSet("nope", 10)
        self.assertEqual(str(caught.exception), "service not found")
        self.successResultOf(self.deploy([MAIN]))
        saves = len(self.store.seen)
        with self.assertRaises(DeployError) as caught:
            self.router.rolloutSet("app", 10)
        self.assertEqual(str(caught.exception), "rollout target not set")
        self.assertEqual(len(self.store.seen), saves)

    def test_setBadPercent(self) -> None:
        """
        A percentage outside 0 to 100 is refused; the split is unchanged.
        """
        service = self.deployed()
        self.router.rolloutSet("app", 10)
        with self.assertRaises(InvalidOptions):
            self.router.rolloutSet("app", 101)
        self.assertEqual(service.rollout.split, RolloutSplit(10))

    def test_setSavedBeforeApplied(self) -> None:
        """
        The split is saved (as the original's C{rollout_controller}) before
        it applies, and C{onChange} hears of it after.
        """
        service = self.deployed()
        before = service.rollout
        self.router.rolloutSet("app", 25, ["a"])
        snapshot, rolloutWhenSaved = self.store.seen[-1]
        self.assertIs(rolloutWhenSaved, before)
        self.assertEqual(snapshot, self.router.snapshot())
        self.assertEqual(
            snapshot[0]["rollout_controller"],
            {"percentage": 25, "percentage_split_point": splitPoint(25), "allowlist": ["a"]},
        )
        self.assertEqual(service.rollout, RolloutSlot(before.group, RolloutSplit(25, ["a"])))
        self.assertEqual(self.changes[-1], snapshot)

    def test_notSavedChangesNothing(self) -> None:
        """
        When the state cannot be saved, rollout deploy, set and stop fail
        with the save's error and leave the rollout as it was; the targets
        of a refused rollout deploy stop being probed.
        """
        service = self.deployed()
        self.router.rolloutSet("app", 25)
        kept = service.rollout
        self.store.full = True
        failure = self.failureResultOf(self.rolloutDeploy(targets=(NEXT,)), SaveFailed)
        self.assertEqual(failure.getErrorMessage(), DISK_FULL)
        self.assertRaises(SaveFailed, self.router.rolloutSet, "app", 50)
        self.assertRaises(SaveFailed, self.router.rolloutStop, "app")
        self.assertIs(service.rollout, kept)
        self.assertFalse(kept.group.targets[0].draining)
        probes = len(self.targets.probes)
        self.clock.advance(10)
        self.assertNotIn(NEXT, self.targets.probes[probes:])

    def test_stop(self) -> None:
        """
        C{rolloutStop} removes the split only: the rollout group stays
        installed, probed and saved.
        """
        service = self.deployed()
        self.router.rolloutSet("app", 100)
        group = service.rollout.group
        self.router.rolloutStop("app")
        self.assertEqual(service.rollout, RolloutSlot(group))
        self.assertTrue(group.targets[0].healthCheck.running)
        self.assertFalse(group.targets[0].draining)
        self.assertEqual(self.entry()["rollout_targets"], [ROLLOUT])
        self.assertNotIn("rollout_controller", self.entry())
        self.assertEqual(self.store.seen[-1][0], self.router.snapshot())

    def test_stopUnknownService(self) -> None:
        """
        C{rolloutStop} of a service not deployed fails with C{"service not
        found"}; of one without a rollout, it does nothing harmful.
        """
        with self.assertRaises(DeployError) as caught:
            self.router.rolloutStop("nope")
        self.assertEqual(str(caught.exception), "service not found")
        self.successResultOf(self.deploy([MAIN]))
        self.router.rolloutStop("app")
        self.assertIsNone(self.router.services["app"].rollout)

    def test_redeployKeepsRollout(self) -> None:
        """
        Deploying the service's main group again keeps its rollout group
        and split (saved with the deploy).
        """
        service = self.deployed()
        self.router.rolloutSet("app", 25, ["staff"])
        slot = service.rollout
        self.successResultOf(self.deploy([NEXT]))
        redeployed = self.router.services["app"]
        self.assertIsNot(redeployed, service)
        self.assertEqual(redeployed.group.addresses, [NEXT])
        self.assertIs(redeployed.rollout, slot)
        self.assertFalse(slot.group.targets[0].draining)
        self.assertEqual(self.entry()["rollout_targets"], [ROLLOUT])
        self.assertEqual(self.entry()["rollout_controller"]["percentage"], 25)

    def test_removeStopsRolloutGroup(self) -> None:
        """
        Removing the service stops probing its rollout targets too.
        """
        service = self.deployed()
        self.router.remove("app")
        self.assertFalse(service.rollout.group.targets[0].healthCheck.running)

    def test_restore(self) -> None:
        """
        A snapshot, through JSON, brings back the rollout group (healthy at
        once, probed) and the split.
        """
        self.deployed()
        self.router.rolloutSet("app", 25, ["staff"])
        snapshot = json.loads(json.dumps(self.router.snapshot()))
        restored = Router(MemoryReactorClock(), FakeTargets(defaultHealth=None).connectorFor)
        self.addCleanup(restored.stop)
        restored.restore(snapshot)
        self.assertEqual(restored.snapshot(), snapshot)
        rollout = restored.services["app"].rollout
        self.assertEqual(rollout.split, RolloutSplit(25, ["staff"]))
        [target] = rollout.group.targets
        self.assertEqual((target.address, target.state), (ROLLOUT, HEALTHY))
        self.assertTrue(target.healthCheck.running)

    def test_restoreBadRollout(self) -> None:
        """
        A saved rollout that cannot be read is dropped; the service is
        restored without it.
        """
        base = {"name": "app", "targets": [MAIN], "options": {}}
        for extra in (
            {"rollout_targets": ["bad target"]},
            {"rollout_targets": [ROLLOUT], "rollout_controller": {"percentage": 300}},
            {"rollout_targets": 5},
        ):
            with self.subTest(**extra):
                router = Router(MemoryReactorClock(), self.targets.connectorFor)
                self.addCleanup(router.stop)
                router.restore([{**base, **extra}])
                self.assertIsNone(router.services["app"].rollout)
                self.assertEqual(router.services["app"].group.addresses, [MAIN])
        self.flushLoggedErrors()

    def test_describe(self) -> None:
        """
        C{list}'s description of a service shows its rollout targets, their
        health and the split.
        """
        self.deployed()
        [entry] = self.router.describe()
        health = {ROLLOUT: "healthy"}
        self.assertEqual(entry["rollout"], {"targets": [ROLLOUT], "health": health})
        self.router.rolloutSet("app", 25, ["staff"])
        [entry] = self.router.describe()
        self.assertEqual(
            entry["rollout"],
            {"targets": [ROLLOUT], "health": health, "percentage": 25, "allowlist": ["staff"]},
        )
