"""
Tests for L{Router.pause}, L{Router.stopServing} and L{Router.resume}:
state changes saved before they are made, kept across restarts and
redeploys, and requests in flight drained without retiring the targets.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.daemon.state import SaveFailed
from kamalproxy.routing.options import DeployOptions
from kamalproxy.routing.router import DeployError, Router
from kamalproxy.upstream.targets import HEALTHY

from .._helpers import FakeTargets, proxyConnection, statusOf

OLD = "10.0.0.1:3000"
NEW = "10.0.0.2:3000"


class _Inflight:
    """
    A request in flight on a target, as draining sees it.
    """

    cancelled = False

    def cancelForDrain(self) -> None:
        self.cancelled = True


class RouterPauseTests(SynchronousTestCase):
    """
    The pause verbs of L{Router}.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.saved: list[list[dict[str, Any]]] = []
        self.full = False
        self.router = Router(self.clock, self.targets.connectorFor, persist=self.save)
        self.addCleanup(self.router.stop)
        self.successResultOf(self.deploy("app", [OLD]))

    def save(self, snapshot: list[dict[str, Any]]) -> None:
        if self.full:
            raise SaveFailed("cannot save state: No space left on device")
        self.saved.append(json.loads(json.dumps(snapshot)))

    def deploy(self, name: str, targets: list[str], options: DeployOptions = DeployOptions()) -> Deferred:
        return Deferred.fromCoroutine(self.router.deploy(name, targets, options))

    def stop(self, name: str = "app", drain: float = 30, message: str = "") -> Deferred:
        return Deferred.fromCoroutine(self.router.stopServing(name, drain, message))

    def pause(self, name: str = "app", drain: float = 30, maxPause: float = 30) -> Deferred:
        return Deferred.fromCoroutine(self.router.pause(name, drain, maxPause))

    def test_unknownService(self) -> None:
        """
        Each verb refuses a service that does not exist: C{"service not
        found"}.
        """
        for d in (self.stop("nope"), self.pause("nope")):
            self.assertEqual(self.failureResultOf(d, DeployError).getErrorMessage(), "service not found")
        self.assertRaises(DeployError, self.router.resume, "nope")

    def test_savedBeforeApplied(self) -> None:
        """
        The new state is saved, then applied; C{list} shows it.
        """
        self.successResultOf(self.stop(message="Back soon"))
        self.assertEqual(
            self.saved[-1][0]["pause"], {"state": "stopped", "message": "Back soon", "max_pause": 30.0}
        )
        self.assertEqual(self.router.describe()[0]["state"], "stopped")
        self.successResultOf(self.pause(maxPause=5))
        self.assertEqual(self.saved[-1][0]["pause"], {"state": "paused", "message": "", "max_pause": 5})
        self.assertEqual(self.router.describe()[0]["state"], "paused")
        self.router.resume("app")
        self.assertNotIn("pause", self.saved[-1][0])
        self.assertEqual(self.router.describe()[0]["state"], "running")
        count = len(self.saved)
        self.router.resume("app")
        self.assertEqual(len(self.saved), count)  # a no-op: nothing to save

    def test_notSavedNotApplied(self) -> None:
        """
        When the state cannot be saved, the error propagates and the
        service's state is unchanged.
        """
        self.full = True
        self.failureResultOf(self.stop(message="x"), SaveFailed)
        self.failureResultOf(self.pause(), SaveFailed)
        self.assertEqual(self.router.services["app"].state, "running")
        self.full = False
        self.successResultOf(self.stop(message="kept"))
        self.full = True
        self.assertRaises(SaveFailed, self.router.resume, "app")
        self.failureResultOf(self.stop(message="other"), SaveFailed)
        controller = self.router.services["app"].pause
        self.assertEqual((controller.state, controller.message), ("stopped", "kept"))

    def test_restartKeepsState(self) -> None:
        """
        A router restored from the saved snapshot has the service stopped
        with its message, or paused with its maximum.
        """
        self.successResultOf(self.stop(message="Back soon"))
        restored = Router(MemoryReactorClock(), FakeTargets().connectorFor)
        self.addCleanup(restored.stop)
        restored.restore(self.saved[-1])
        controller = restored.services["app"].pause
        self.assertEqual((controller.state, controller.message), ("stopped", "Back soon"))
        self.assertEqual(restored.snapshot(), self.saved[-1])
        protocol, client, _ = proxyConnection(restored, restored._clock)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 503)
        self.assertIn(b"Back soon", client.value())

    def test_redeployKeepsState(self) -> None:
        """
        A redeploy keeps the stop (state and message), and saves it with the
        new targets.
        """
        self.successResultOf(self.stop(message="Back soon"))
        self.successResultOf(self.deploy("app", [NEW]))
        controller = self.router.services["app"].pause
        self.assertEqual((controller.state, controller.message), ("stopped", "Back soon"))
        self.assertEqual(self.saved[-1][0]["targets"], [NEW])
        self.assertEqual(self.saved[-1][0]["pause"]["message"], "Back soon")

    def test_pauseWaitsForInflightKeepsTargets(self) -> None:
        """
        C{pause} returns once the requests in flight are done; the targets
        stay in service (not draining, still probed) for C{resume}.
        """
        target = self.router.services["app"].group.targets[0]
        request = _Inflight()
        target.started(request)
        d = self.pause(drain=10)
        self.assertNoResult(d)
        target.finished(request)
        self.successResultOf(d)
        self.assertFalse(request.cancelled)
        self.assertFalse(target.draining)
        self.assertTrue(target.healthCheck.running)
        self.assertEqual(target.state, HEALTHY)
        self.router.resume("app")
        self.assertIs(self.router.services["app"].group.pick(), target)

    def test_stopCancelsSurvivors(self) -> None:
        """
        C{stop} cancels requests still in flight at the drain deadline.
        """
        target = self.router.services["app"].group.targets[0]
        request = _Inflight()
        target.started(request)
        d = self.stop(drain=2)
        self.clock.advance(1)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertTrue(request.cancelled)
        self.assertEqual(target.inflight, set())
        self.assertFalse(target.draining)

    def test_pauseWaitsForRolloutGroup(self) -> None:
        """
        C{pause} also waits for the requests in flight on the service's
        rollout group, and C{stop} cancels its survivors, as for the main
        group.
        """
        self.successResultOf(
            Deferred.fromCoroutine(self.router.rolloutDeploy("app", [NEW], (), 30, 30))
        )
        rolloutTarget = self.router.services["app"].rollout.group.targets[0]
        request = _Inflight()
        rolloutTarget.started(request)
        d = self.stop(drain=2)
        self.clock.advance(1)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertTrue(request.cancelled)
        self.assertFalse(rolloutTarget.draining)

    def test_heldAcrossRedeploy(self) -> None:
        """
        A request held while the service is redeployed goes, after
        C{resume}, to the new targets (the old ones are drained).
        """
        self.successResultOf(self.pause())
        protocol, client, _ = proxyConnection(self.router, self.clock)
        protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(len(self.router.services["app"].pause.queue), 1)
        self.successResultOf(self.deploy("app", [NEW]))
        self.assertEqual(self.router.services["app"].state, "paused")
        self.router.resume("app")
        self.clock.advance(0)
        [conn] = self.targets.connections
        self.assertEqual(conn.transport.address, NEW)  # type: ignore[union-attr]
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(statusOf(client.value()), 200)

    def test_deployNotSavedKeepsOwner(self) -> None:
        """
        A redeploy that cannot be saved leaves held requests with the
        service as it was.
        """
        old = self.router.services["app"]
        self.successResultOf(self.pause())
        self.full = True
        self.failureResultOf(self.deploy("app", [NEW]), SaveFailed)
        self.assertIs(old.pause.owner, old)
