"""
Tests for L{kamalproxy.routing.router}: deploying, removing and restoring services,
and routing requests to them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attr
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from zope.interface import implementer
from zope.interface.verify import verifyObject

from kamalproxy.interfaces import IDeployObserver
from kamalproxy.routing.deploys import DEPLOY, FAILED, ROLLOUT, SUCCEEDED, DeployRecord
from kamalproxy.routing.options import DeployOptions, HealthCheckConfig, InvalidOptions, ServiceOptions, TargetOptions
from kamalproxy.routing.router import DeployError, Router
from kamalproxy.daemon.state import SaveFailed
from kamalproxy.upstream.targets import ADDING, HEALTHY

from .._helpers import FakeTargets, proxyConnection, statusOf

OLD = "10.0.0.1:3000"
NEW = "10.0.0.2:3000"


def _options(*hosts: str, **kwargs: Any) -> DeployOptions:
    return DeployOptions(service=ServiceOptions(hosts=hosts), **kwargs)


class _Store:
    """
    Stands in for L{kamalproxy.daemon.state.StateStore.save} as a router's
    C{persist}: records each snapshot, or fails as a full disk does while
    C{full}.

    @ivar seen: for each save asked for, the snapshot and what the router
        routed C{example.com/} to at that moment.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self.full = False
        self.seen: list[tuple[list[dict[str, Any]], Any]] = []

    def save(self, snapshot: list[dict[str, Any]]) -> None:
        match = self.router.routeFor(b"example.com", b"/")
        self.seen.append((snapshot, None if match is None else match[0]))
        if self.full:
            raise SaveFailed("cannot save state: No space left on device")


class RouterDeployTests(SynchronousTestCase):
    """
    L{Router.deploy} puts a service in the routing table once its targets
    are healthy.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.changes: list[list[dict[str, Any]]] = []
        self.router = Router(self.clock, self.targets.connectorFor, self.changes.append)
        self.addCleanup(self.router.stop)

    def deploy(self, name: str, targets: list[str], options: DeployOptions = DeployOptions()) -> Deferred:
        return Deferred.fromCoroutine(self.router.deploy(name, targets, options))

    def serviceFor(self, host: bytes = b"example.com", path: bytes = b"/") -> Any:
        match = self.router.routeFor(host, path)
        return None if match is None else match[0]

    def test_deployHealthy(self) -> None:
        """
        Targets healthy at the first probe are deployed at once.
        """
        self.successResultOf(self.deploy("app", [OLD], _options("example.com")))
        service = self.serviceFor(b"example.com:443")
        self.assertEqual(service.name, "app")
        self.assertEqual(service.group.addresses, [OLD])
        self.assertEqual(self.targets.probes, [OLD])

    def test_deployWaitsForHealth(self) -> None:
        """
        The service is not routed until its targets pass a health check.
        """
        self.targets.health[OLD] = 503
        d = self.deploy("app", [OLD])
        self.assertNoResult(d)
        self.assertIsNone(self.serviceFor())
        self.assertEqual(self.changes, [])
        self.targets.health[OLD] = 200
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(self.serviceFor().name, "app")

    def test_deployTargetNormalised(self) -> None:
        """
        A target without a port gets port 80.
        """
        self.successResultOf(self.deploy("app", ["web"]))
        self.assertEqual(self.router.services["app"].group.addresses, ["web:80"])

    def test_deployTimeout(self) -> None:
        """
        Targets still unhealthy after C{deploy_timeout} fail the deploy
        with the original's message; the service already deployed keeps
        serving, untouched, and the new targets stop being probed.
        """
        self.successResultOf(self.deploy("app", [OLD]))
        old = self.router.services["app"]
        self.targets.health[NEW] = None
        d = self.deploy("app", [NEW])
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        failure = self.failureResultOf(d, DeployError)
        self.assertEqual(
            failure.getErrorMessage(),
            "target failed to become healthy within configured timeout (30s)",
        )
        self.assertIs(self.router.services["app"], old)
        self.assertIs(self.serviceFor(), old)
        self.assertEqual(old.group.targets[0].state, HEALTHY)
        self.assertFalse(old.group.targets[0].draining)
        self.assertEqual(len(self.changes), 1)
        probes = len(self.targets.probes)
        self.clock.advance(60)
        self.assertNotIn(NEW, self.targets.probes[probes:])

    def test_deployTimeoutMessage(self) -> None:
        """
        The message names the configured timeout.
        """
        self.targets.health[NEW] = 500
        d = self.deploy("app", [NEW], DeployOptions(deploy_timeout=5))
        self.clock.advance(5)
        self.assertEqual(
            self.failureResultOf(d, DeployError).getErrorMessage(),
            "target failed to become healthy within configured timeout (5s)",
        )
        self.assertEqual(self.router.services, {})

    def test_invalidOptions(self) -> None:
        """
        An invalid deploy fails with L{InvalidOptions} and changes nothing.
        """
        self.failureResultOf(self.deploy("app", ["bad target!"]), InvalidOptions)
        self.failureResultOf(self.deploy("app", []), InvalidOptions)
        self.assertEqual(self.router.services, {})
        self.assertEqual(self.changes, [])

    def test_sendfileRootMustExist(self) -> None:
        """
        A deploy naming a C{--sendfile-root} that is not a directory fails
        with a one-line message and changes nothing; a restored service
        keeps its roots even while one is missing.
        """
        missing = os.path.abspath(self.mktemp())
        options = DeployOptions(service=ServiceOptions(sendfile_roots=(missing,)))
        failure = self.failureResultOf(self.deploy("app", [OLD], options), InvalidOptions)
        self.assertEqual(str(failure.value), f"--sendfile-root {missing}: no such directory")
        self.assertEqual((self.router.services, self.changes), ({}, []))
        os.makedirs(missing)
        self.successResultOf(self.deploy("app", [OLD], options))
        snapshot = json.loads(json.dumps(self.router.snapshot()))
        os.rmdir(missing)
        restored = Router(MemoryReactorClock(), FakeTargets(defaultHealth=None).connectorFor, lambda s: None)
        self.addCleanup(restored.stop)
        restored.restore(snapshot)
        self.assertEqual(restored.services["app"].options.service.sendfile_roots, (missing,))

    def test_conflict(self) -> None:
        """
        A service may not take a host and prefix another service owns.
        """
        self.successResultOf(self.deploy("one", [OLD], _options("example.com")))
        failure = self.failureResultOf(
            self.deploy("two", [NEW], _options("example.com")), DeployError
        )
        self.assertEqual(failure.getErrorMessage(), "host settings conflict with another service")
        self.assertEqual(sorted(self.router.services), ["one"])

    def test_conflictDefaultHost(self) -> None:
        """
        Two host-less (default) services on the same prefix conflict; on
        different prefixes they do not.
        """
        self.successResultOf(self.deploy("one", [OLD]))
        self.failureResultOf(self.deploy("two", [NEW]), DeployError)
        api = DeployOptions(service=ServiceOptions(path_prefixes=("/api",)))
        self.successResultOf(self.deploy("two", [NEW], api))
        self.assertEqual(self.serviceFor(b"x", b"/api/v1").name, "two")
        self.assertEqual(self.serviceFor(b"x", b"/other").name, "one")

    def test_conflictAfterWaiting(self) -> None:
        """
        A conflict that appears while a deploy waits for health fails that
        deploy when it would take over.
        """
        self.targets.health[NEW] = 503
        slow = self.deploy("two", [NEW], _options("example.com"))
        self.successResultOf(self.deploy("one", [OLD], _options("example.com")))
        self.targets.health[NEW] = 200
        self.clock.advance(1)
        self.failureResultOf(slow, DeployError)
        self.assertEqual(self.serviceFor().name, "one")

    def test_redeployReplacesAndDrains(self) -> None:
        """
        Deploying a service again moves its traffic to the new targets and
        drains the old ones.
        """
        self.successResultOf(self.deploy("app", [OLD]))
        oldTarget = self.router.services["app"].group.targets[0]
        self.successResultOf(self.deploy("app", [NEW]))
        self.assertEqual(self.serviceFor().group.addresses, [NEW])
        self.assertTrue(oldTarget.draining)
        self.assertFalse(oldTarget.healthCheck.running)

    def test_redeployWaitsForDrain(self) -> None:
        """
        The deploy completes once the replaced targets have drained; the
        new targets already serve meanwhile.
        """
        self.successResultOf(self.deploy("app", [OLD]))
        oldTarget = self.router.services["app"].group.targets[0]

        class Inflight:
            """
            A request in flight on the old target.
            """

            cancelled = False

            def cancelForDrain(self) -> None:
                self.cancelled = True

        request = Inflight()
        oldTarget.started(request)
        d = self.deploy("app", [NEW], DeployOptions(drain_timeout=10))
        self.assertNoResult(d)
        self.assertEqual(self.serviceFor().group.addresses, [NEW])
        oldTarget.finished(request)
        self.successResultOf(d)
        self.assertFalse(request.cancelled)

    def test_force(self) -> None:
        """
        A forced deploy takes over at once, without waiting for health.
        """
        self.targets.health[NEW] = None
        self.successResultOf(self.deploy("app", [NEW], DeployOptions(force=True)))
        service = self.serviceFor()
        self.assertEqual(service.group.addresses, [NEW])
        self.assertEqual(service.group.targets[0].state, ADDING)

    def test_remove(self) -> None:
        """
        L{Router.remove} stops routing to a service at once and stops
        probing its targets.
        """
        self.successResultOf(self.deploy("app", [OLD]))
        target = self.router.services["app"].group.targets[0]
        self.router.remove("app")
        self.assertIsNone(self.serviceFor())
        self.assertEqual(self.router.services, {})
        self.assertFalse(target.healthCheck.running)

    def test_removeUnknown(self) -> None:
        """
        Removing a service that does not exist fails with
        C{"service not found"}.
        """
        with self.assertRaises(DeployError) as caught:
            self.router.remove("nope")
        self.assertEqual(str(caught.exception), "service not found")

    def test_onChange(self) -> None:
        """
        C{onChange} is called with the new snapshot after each deploy and
        remove.
        """
        self.successResultOf(self.deploy("app", [OLD]))
        self.assertEqual([[s["name"] for s in snap] for snap in self.changes], [["app"]])
        self.successResultOf(self.deploy("web", [NEW], _options("web.example")))
        self.router.remove("app")
        self.assertEqual(
            [[s["name"] for s in snap] for snap in self.changes],
            [["app"], ["app", "web"], ["web"]],
        )
        self.assertEqual(self.changes[-1], self.router.snapshot())

    def test_savedBeforeSwap(self) -> None:
        """
        C{persist} is given the snapshot a deploy or remove leaves (TLS
        options taken from the host's root service included) while the old
        routing still serves; the change is made after it returns.
        """
        store = _Store(self.router)
        self.router.persist = store.save
        root = DeployOptions(service=ServiceOptions(hosts=("example.com",), tls_enabled=True))
        self.successResultOf(self.deploy("app", [OLD], root))
        app = self.router.services["app"]
        api = DeployOptions(service=ServiceOptions(hosts=("example.com",), path_prefixes=("/api",)))
        self.successResultOf(self.deploy("api", [NEW], api))
        self.router.remove("api")
        self.assertEqual(
            [(snapshot, routed) for snapshot, routed in store.seen],
            [(self.changes[0], None), (self.changes[1], app), (self.changes[2], app)],
        )
        [_, apiEntry] = self.changes[1]
        self.assertTrue(apiEntry["options"]["service"]["tls_enabled"])

    def test_deployNotSaved(self) -> None:
        """
        A deploy whose state cannot be saved fails with C{persist}'s error
        and changes nothing: the old targets keep serving, undrained, and
        the new ones stop being probed.
        """
        store = _Store(self.router)
        self.router.persist = store.save
        self.successResultOf(self.deploy("app", [OLD]))
        old = self.router.services["app"]
        store.full = True
        failure = self.failureResultOf(self.deploy("app", [NEW]), SaveFailed)
        self.assertEqual(failure.getErrorMessage(), "cannot save state: No space left on device")
        self.assertIs(self.router.services["app"], old)
        self.assertIs(self.serviceFor(), old)
        self.assertFalse(old.group.targets[0].draining)
        self.assertEqual(len(self.changes), 1)
        probes = len(self.targets.probes)
        self.clock.advance(60)
        self.assertNotIn(NEW, self.targets.probes[probes:])
        self.assertIn(OLD, self.targets.probes[probes:])

    def test_newServiceNotSaved(self) -> None:
        """
        A new service whose state cannot be saved is not deployed.
        """
        store = _Store(self.router)
        self.router.persist = store.save
        store.full = True
        self.failureResultOf(self.deploy("app", [OLD]), SaveFailed)
        self.assertEqual(self.router.services, {})
        self.assertIsNone(self.serviceFor())
        self.assertEqual(self.router.snapshot(), [])

    def test_removeNotSaved(self) -> None:
        """
        A remove whose state cannot be saved fails with C{persist}'s error
        and the service keeps serving, its targets probed.
        """
        store = _Store(self.router)
        self.router.persist = store.save
        self.successResultOf(self.deploy("app", [OLD]))
        service = self.router.services["app"]
        store.full = True
        self.assertRaises(SaveFailed, self.router.remove, "app")
        self.assertIs(self.serviceFor(), service)
        self.assertEqual(list(self.router.services), ["app"])
        self.assertTrue(service.group.targets[0].healthCheck.running)
        self.assertEqual(len(self.changes), 1)

    def test_deployReaders(self) -> None:
        """
        A deploy with readers waits for the readers to be healthy too, and
        the snapshot, a restore from it and C{describe} keep them apart
        from the writers, with the balancing options.
        """
        reader = "10.0.0.9:3000"
        self.targets.health[reader] = 503
        options = attr.evolve(
            _options("example.com"),
            service=attr.evolve(
                _options("example.com").service,
                load_balancing="least-requests",
                writer_affinity_timeout=2.0,
            ),
        )
        d = Deferred.fromCoroutine(self.router.deploy("app", [OLD], options, ["10.0.0.9:3000"]))
        self.assertNoResult(d)
        self.targets.health[reader] = 200
        self.clock.advance(1)
        self.successResultOf(d)
        group = self.router.services["app"].group
        self.assertEqual((group.addresses, group.readerAddresses), ([OLD], [reader]))
        self.assertEqual(group.balancing, "least-requests")
        [entry] = self.router.snapshot()
        self.assertEqual((entry["targets"], entry["read_targets"]), ([OLD], [reader]))
        [described] = self.router.describe()
        self.assertEqual((described["targets"], described["read_targets"]), ([OLD], [reader]))

        restored = Router(MemoryReactorClock(), FakeTargets(defaultHealth=None).connectorFor)
        self.addCleanup(restored.stop)
        restored.restore(json.loads(json.dumps(self.router.snapshot())))
        group = restored.services["app"].group
        self.assertEqual((group.addresses, group.readerAddresses), ([OLD], [reader]))
        self.assertEqual([t.state for t in group.targets], [HEALTHY, HEALTHY])
        self.assertEqual(restored.services["app"].options, self.router.services["app"].options)

    def test_deployBadReader(self) -> None:
        """
        A bad read target refuses the deploy with the target's own message.
        """
        d = Deferred.fromCoroutine(self.router.deploy("app", [OLD], DeployOptions(), ["http://x"]))
        failure = self.failureResultOf(d, InvalidOptions)
        self.assertEqual(failure.getErrorMessage(), "http://x :invalid host pattern")
        self.assertEqual(self.router.services, {})

    def test_snapshotRestore(self) -> None:
        """
        A snapshot, through JSON, restores the same services into a new
        router; their targets are healthy at once, before any probe
        answers, and restoring does not call C{onChange}.
        """
        options = _options(
            "example.com",
            deploy_timeout=5,
            target=attr.evolve(DeployOptions().target, response_timeout=7, log_request_headers=("X-A",)),
        )
        self.successResultOf(self.deploy("app", [OLD, NEW], options))
        self.successResultOf(
            self.deploy("api", [OLD], DeployOptions(service=ServiceOptions(path_prefixes=("/api",))))
        )
        snapshot = json.loads(json.dumps(self.router.snapshot()))

        targets = FakeTargets(defaultHealth=None)
        changes: list[object] = []
        restored = Router(MemoryReactorClock(), targets.connectorFor, changes.append)
        self.addCleanup(restored.stop)
        restored.restore(snapshot)
        self.assertEqual(restored.snapshot(), snapshot)
        self.assertEqual(changes, [])
        app = restored.services["app"]
        self.assertEqual(app.options, self.router.services["app"].options)
        self.assertEqual([t.state for t in app.group.targets], [HEALTHY, HEALTHY])
        self.assertTrue(all(t.healthCheck.running for t in app.group.targets))
        self.assertIs(restored.routeFor(b"example.com", b"/")[0], app)  # type: ignore[index]
        self.assertIs(restored.routeFor(b"other", b"/api")[0], restored.services["api"])  # type: ignore[index]

    def test_restoreSkipsBadEntries(self) -> None:
        """
        Unusable snapshot entries are skipped; the good ones are restored.
        """
        self.router.restore(
            [
                {"name": "bad name!", "targets": [OLD]},
                {"targets": [OLD]},
                {"name": "opts", "targets": [OLD], "options": {"deploy_timeout": "soon"}},
                {"name": "good", "targets": [OLD]},
            ]
        )
        self.assertEqual(list(self.router.services), ["good"])

    def test_describe(self) -> None:
        """
        L{Router.describe} lists each service with its targets' health.
        """
        self.successResultOf(self.deploy("app", [OLD], _options("example.com")))
        [entry] = self.router.describe()
        self.assertEqual(entry["service"], "app")
        self.assertEqual(entry["hosts"], ["example.com"])
        self.assertEqual(entry["targets"], [OLD])
        self.assertEqual(entry["health"], {OLD: HEALTHY})


class RouterRenderTests(SynchronousTestCase):
    """
    L{Router.render} answers requests nobody can serve.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.addCleanup(self.router.stop)

    def get(self, host: bytes, path: bytes = b"/") -> bytes:
        protocol, client, _ = proxyConnection(self.router, self.clock)
        protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        return client.value()  # type: ignore[no-any-return]

    def test_noRoute404(self) -> None:
        """
        A request no service is bound to gets the 404 page.
        """
        response = self.get(b"example.com")
        self.assertEqual(statusOf(response), 404)
        self.assertIn(b"text/html", response)

    def test_noMatchingPrefix404(self) -> None:
        """
        A bound host whose prefixes do not match the path gets a 404.
        """
        self.router.restore(
            [
                {
                    "name": "api",
                    "targets": [NEW],
                    "options": {"service": {"hosts": ["example.com"], "path_prefixes": ["/api"]}},
                }
            ]
        )
        self.assertEqual(statusOf(self.get(b"example.com", b"/web")), 404)

    def test_noHealthyTarget503(self) -> None:
        """
        A service whose targets are not healthy answers 503.
        """
        self.targets.health[NEW] = None
        self.successResultOf(
            Deferred.fromCoroutine(self.router.deploy("app", [NEW], DeployOptions(force=True)))
        )
        self.assertEqual(statusOf(self.get(b"example.com")), 503)
        self.assertEqual(self.targets.connections, [])

    def test_routedToTarget(self) -> None:
        """
        A routed request reaches the service's target, with the matched
        prefix stripped.
        """
        self.router.restore(
            [
                {
                    "name": "api",
                    "targets": [NEW],
                    "options": {"service": {"path_prefixes": ["/api"]}},
                }
            ]
        )
        self.get(b"example.com", b"/api/users?page=2")
        [conn] = self.targets.connections
        self.assertTrue(conn.transport.value().startswith(b"GET /users?page=2 HTTP/1.1\r\n"))


class TargetObserverTests(SynchronousTestCase):
    """
    L{ITargetObserver}s given to the router hear of every health change of
    its targets.
    """

    def test_healthChangesObserved(self) -> None:
        """
        A deployed target going healthy, then unhealthy, is reported with
        its previous and new state.
        """
        from kamalproxy.interfaces import ITargetObserver
        from kamalproxy.testing import MemoryTargets
        from zope.interface import implementer
        from zope.interface.verify import verifyObject

        @implementer(ITargetObserver)
        class Recorder:
            def __init__(self) -> None:
                self.changes: list[tuple[str, str, str]] = []

            def targetHealthChanged(self, target: Any, previous: str, state: str) -> None:
                self.changes.append((target.address, previous, state))

        recorder = Recorder()
        verifyObject(ITargetObserver, recorder)
        clock = MemoryReactorClock()
        targets = MemoryTargets()
        router = Router(clock, targets.connectorFor, targetObservers=[recorder])
        self.addCleanup(router.stop)
        options = DeployOptions(target=TargetOptions(health_check=HealthCheckConfig(interval=1)))
        deployed = router.deploy("app", ["10.0.0.1:3000"], options)
        clock.advance(1)
        self.successResultOf(deployed)
        targets.health["10.0.0.1:3000"] = 500
        clock.advance(1)
        self.assertEqual(
            recorder.changes,
            [("10.0.0.1:3000", "adding", "healthy"), ("10.0.0.1:3000", "healthy", "unhealthy")],
        )


class DeployObserverTests(SynchronousTestCase):
    """
    L{Router}'s C{deployObservers} hear of every deploy and rollout deploy
    once it is over, with its outcome and duration.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1000)
        self.targets = FakeTargets()
        self.records: list[DeployRecord] = []
        observer = _RecordingDeploys(self.records)
        verifyObject(IDeployObserver, observer)
        self.router = Router(self.clock, self.targets.connectorFor, deployObservers=[observer])
        self.addCleanup(self.router.stop)

    def test_succeeded(self) -> None:
        """
        A deploy whose targets become healthy two seconds later is recorded
        as succeeded, taking two seconds.
        """
        self.targets.health[OLD] = 503
        d = Deferred.fromCoroutine(self.router.deploy("app", [OLD], DeployOptions()))
        self.targets.health[OLD] = 200
        self.clock.advance(2)
        self.successResultOf(d)
        self.assertEqual(
            self.records, [DeployRecord("app", DEPLOY, (OLD,), 1000.0, 2.0, SUCCEEDED)]
        )

    def test_failed(self) -> None:
        """
        A deploy that times out is recorded as failed, with its reason.
        """
        self.targets.health[OLD] = None
        d = Deferred.fromCoroutine(self.router.deploy("app", [OLD], DeployOptions()))
        self.clock.advance(30)
        self.failureResultOf(d, DeployError)
        [record] = self.records
        self.assertEqual((record.outcome, record.duration), (FAILED, 30.0))
        self.assertEqual(
            record.error, "target failed to become healthy within configured timeout (30s)"
        )

    def test_rollout(self) -> None:
        """
        A rollout deploy is recorded as one, and so is a refused one.
        """
        self.successResultOf(Deferred.fromCoroutine(self.router.deploy("app", [OLD], DeployOptions())))
        self.successResultOf(Deferred.fromCoroutine(self.router.rolloutDeploy("app", [NEW])))
        self.failureResultOf(
            Deferred.fromCoroutine(self.router.rolloutDeploy("other", [NEW])), DeployError
        )
        self.assertEqual(
            [(r.service, r.kind, r.outcome, r.error) for r in self.records],
            [
                ("app", DEPLOY, SUCCEEDED, ""),
                ("app", ROLLOUT, SUCCEEDED, ""),
                ("other", ROLLOUT, FAILED, "service not found"),
            ],
        )


@implementer(IDeployObserver)
class _RecordingDeploys:
    def __init__(self, records: list[DeployRecord]) -> None:
        self.records = records

    def deployFinished(self, record: DeployRecord) -> None:
        self.records.append(record)
