# -*- test-case-name: tests.routing.test_router -*-
"""
The router: the root resource that sends each request to its service, and
the one place where services are deployed, removed, paused, stopped,
resumed and restored.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Iterable, Optional, Sequence

import attr

from twisted.internet.defer import Deferred, DeferredList, TimeoutError
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.web.resource import IResource
from zope.interface import implementer

from kamalproxy.compress.stats import CompressionStats
from kamalproxy.routing.durations import formatDuration
from kamalproxy.http.errorpages import loadErrorPages
from kamalproxy.routing.options import (
    DEFAULT_DEPLOY_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT,
    DeployOptions,
    InvalidOptions,
    ServiceOptions,
    checkSendfileRoots,
    fromJSON,
    normalizeDeploy,
    normalizeTargets,
    toJSON,
)
from kamalproxy.interfaces import IDeployObserver, ITargetObserver
from kamalproxy.pipeline.chain import buildChain
from kamalproxy.pipeline.dispatcher import Dispatcher, ProxyResource
from kamalproxy.routing.deploys import (
    DEPLOY,
    FAILED,
    ROLLOUT,
    SUCCEEDED,
    DeployRecord,
    tellDeployObservers,
)
from kamalproxy.routing.rollout import RolloutSlot, RolloutSplit, checkPercentage
from kamalproxy.routing.table import RoutingTable, requestHost
from kamalproxy.routing.pausing import PAUSED, RUNNING, STOPPED
from kamalproxy.routing.service import Service
from kamalproxy.upstream.targets import ConnectorFor, Target, TargetGroup
from kamalproxy.upstream.client import UpstreamConnection, endpointFor


CONNECT_TIMEOUT = 5.0
"""
Seconds a connection to a target may take to be made; a request whose
connection times out goes to another healthy target (see
L{kamalproxy.upstream.forwarding}).
"""


class DeployError(Exception):
    """
    A deploy (or remove) could not be done; nothing was changed. The message
    is the one-line reason for the user.
    """


class _UpstreamFactory(Factory):
    """
    Makes target connections, quietly (health checks connect every second).
    """

    noisy = False
    protocol = UpstreamConnection


def tcpConnectorFor(reactor: IReactorTCP) -> ConnectorFor:
    """
    Connect to targets over TCP with C{reactor}.
    """

    factory = _UpstreamFactory()

    def connectorFor(host: str, port: int) -> Callable[[], Deferred]:
        endpoint = endpointFor(reactor, host, port, CONNECT_TIMEOUT)
        return lambda: endpoint.connect(factory)

    return connectorFor


def _certificateFor(options: DeployOptions) -> tuple[Any, Any]:
    """
    The service's custom certificate, read at deploy time, with the
    signature of its files taken just before (see
    L{kamalproxy.tls.reload}); C{(None, None)} when it has none.

    @raise InvalidOptions: C{"unable to load certificate: ..."}.
    """
    service = options.service
    if not service.customCertificate:
        return None, None
    from kamalproxy.tls.reload import fileSignature
    from kamalproxy.tls.sni import loadCertificatePair

    paths = (service.tls_certificate_path, service.tls_private_key_path)
    signature = fileSignature(*paths)
    try:
        return loadCertificatePair(*paths), signature
    except ValueError as e:
        raise InvalidOptions(str(e)) from None


def _checkAcmeCache(options: DeployOptions) -> None:
    """
    Make sure the service's C{--tls-acme-cache-path}, when it has one and
    uses ACME, is a directory the daemon can write (made if missing).

    @raise InvalidOptions: C{"unable to use ACME cache path ..."}.
    """
    service = options.service
    path = service.tls_acme_cache_path
    if not path or not service.tls_enabled or service.customCertificate:
        return
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as e:
        raise InvalidOptions(f"unable to use ACME cache path {path}: {e.strerror or e}") from None


def _errorPagesFor(options: DeployOptions) -> Optional[dict[int, bytes]]:
    """
    The service's own error pages, read at deploy time (a few small files).

    @raise InvalidOptions: the directory cannot be used.
    """
    path = options.service.error_page_path
    return loadErrorPages(path) if path else None


@implementer(IResource)
class Router(ProxyResource):
    """
    An L{IResource} that routes by host and path prefix to deployed
    services, and the API that changes them.

    @ivar services: the deployed services by name.
    @ivar persist: called with the snapshot a deploy or remove would leave
        (L{snapshot}'s form) before anything changes; when it raises (as
        L{kamalproxy.daemon.state.StateStore.save} does with
        L{kamalproxy.daemon.state.SaveFailed}), nothing changes and the error
        propagates.
    @ivar onChange: called with L{snapshot}'s result after every change has
        been made (for example to look for new certificates).
    @ivar challenges: answers ACME HTTP-01 challenges ahead of routing (an
        L{kamalproxy.tls.http01.HTTP01Responder}), or L{None}.
    @ivar certificates: the HTTPS listener's
        L{kamalproxy.tls.sni.CertificateSelector}, or L{None} when there is
        no HTTPS listener (then plain HTTP is never redirected).
    @ivar httpsPort: the HTTPS port named in redirects (omitted when 443).
    @ivar targetObservers: L{ITargetObserver}s told when a target's health
        changes.
    @ivar compressionStats: what response compression did (counters for
        metrics), a L{kamalproxy.compress.stats.CompressionStats}.
    @ivar deployObservers: L{IDeployObserver}s told when a deploy or rollout
        deploy ends (L{kamalproxy.routing.deploys.DeployRecord}).
    @ivar cache: the daemon's HTTP cache
        (L{kamalproxy.cache.store.MemoryCache}), or L{None} for none; a
        service's entries are dropped when a deploy switches its targets,
        when its rollout group is replaced, and when it is removed.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        connectorFor: ConnectorFor,
        onChange: Optional[Callable[[list[dict[str, Any]]], None]] = None,
        challenges: Any = None,
        certificates: Any = None,
        httpsPort: int = 443,
        persist: Callable[[list[dict[str, Any]]], None] | None = None,
        targetObservers: Sequence[ITargetObserver] = (),
        deployObservers: Sequence[IDeployObserver] = (),
        cache: Any = None,
    ) -> None:
        self._clock = clock
        self._connectorFor = connectorFor
        self.onChange = onChange
        self.persist = persist
        self.services: dict[str, Service] = {}
        self._table: RoutingTable[Service] = RoutingTable()
        self.challenges = challenges
        self.certificates = certificates
        self.httpsPort = httpsPort
        self._dispatcher: Optional[Dispatcher] = None
        self.targetObservers = targetObservers
        self.deployObservers = deployObservers
        self.cache = cache
        self.compressionStats = CompressionStats()

    # IResource (from ProxyResource): a router mounted in a resource tree
    # under a plain twisted.web.server.Site runs the pipeline over itself.

    @property
    def dispatcher(self) -> Dispatcher:
        """
        The L{Dispatcher} running the proxy's pipeline over this router,
        made on first use.
        """
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self._clock, buildChain(self, self._clock))
        return self._dispatcher

    def routeFor(self, host: Optional[bytes], path: bytes) -> Optional[tuple[Service, bytes]]:
        """
        The service (and matched prefix) for a C{Host} header value and a
        path, or L{None}.
        """
        return self._table.lookup(requestHost(host), path)

    # Changing services

    async def deploy(
        self,
        name: str,
        targets: Sequence[str],
        options: DeployOptions,
        readTargets: Sequence[str] = (),
    ) -> None:
        """
        Deploy C{name} to C{targets} (and the readers C{readTargets}): wait
        for all of them to be healthy (unless C{options.force}), send all
        new requests to them, then wait for the replaced targets to drain.
        L{deployObservers} are told how it went.

        @raise DeployError: nothing was changed.
        @raise InvalidOptions: nothing was changed.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        await self._observed(
            DEPLOY, name, targets, self._deploy(name, targets, options, readTargets)
        )

    async def _observed(self, kind: str, name: str, targets: Sequence[str], change: Any) -> None:
        """
        Await the deploy C{change}, then tell L{deployObservers} how it went.
        """
        started = self._clock.seconds()
        outcome, error = SUCCEEDED, ""
        try:
            await change
        except BaseException as e:
            outcome, error = FAILED, str(e) or type(e).__name__
            raise
        finally:
            if self.deployObservers:
                record = DeployRecord(
                    name, kind, tuple(targets), started, self._clock.seconds() - started, outcome, error
                )
                tellDeployObservers(self.deployObservers, record)

    async def _deploy(
        self,
        name: str,
        targets: Sequence[str],
        options: DeployOptions,
        readTargets: Sequence[str] = (),
    ) -> None:
        name, normalized, options = normalizeDeploy(name, list(targets), options)
        readers = normalizeTargets(readTargets)
        self._checkConflicts(name, options)
        errorPages = _errorPagesFor(options)
        certificate, signature = _certificateFor(options)
        _checkAcmeCache(options)
        checkSendfileRoots(options.service)
        group = self._makeGroup(normalized, readers, options)
        group.startHealthChecks()
        if not options.force:
            await self._waitHealthy(group, options.deploy_timeout)
        try:
            self._checkConflicts(name, options)
        except DeployError:
            group.stop()
            raise
        old = self.services.get(name)
        service = Service(self._clock, name, options, group, errorPages)
        service.tlsCertificate = certificate
        service.tlsCertificateSignature = signature
        if old is not None:
            service.pause = old.pause  # pause state, stop message and held requests
            service.rollout = old.rollout
        try:
            self._commit({**self.services, name: service})
        except BaseException:
            group.stop()
            raise
        service.pause.owner = service  # requests held meanwhile go to the new targets
        self._purgeCache(name)  # the new version must not serve the old one's pages
        self.log.info(
            "Deployed {service} to {targets}",
            service=name,
            targets=", ".join(normalized + tuple(f"{r} (reader)" for r in readers)),
        )
        if old is not None:
            await old.group.drain(options.drain_timeout)

    def remove(self, name: str) -> None:
        """
        Stop routing to C{name} at once (requests in flight finish) and
        forget it.

        @raise DeployError: no such service.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        service = self._serviceNamed(name)
        self._commit({n: s for n, s in self.services.items() if n != name})
        for group in service.groups:
            group.stop()
        self._purgeCache(name)
        self.log.info("Removed {service}", service=name)

    async def pause(self, name: str, drainTimeout: float, maxPause: float) -> None:
        """
        Hold new requests for C{name} (each at most C{maxPause} seconds)
        until L{resume}, then wait for the requests in flight to finish
        (survivors are cancelled after C{drainTimeout} seconds). A service
        already paused keeps its held requests and takes the new
        C{maxPause}.

        @raise DeployError: no such service.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        _checkTimeouts(drainTimeout, maxPause)
        service = self._serviceNamed(name)
        self._savePause(service, {"state": PAUSED, "message": "", "max_pause": maxPause})
        service.pause.pause(maxPause)
        self.log.info("Paused {service}", service=name)
        await DeferredList([group.settle(drainTimeout) for group in service.groups])

    async def stopServing(self, name: str, drainTimeout: float, message: str = "") -> None:
        """
        Answer new requests for C{name} with the 503 maintenance page
        showing C{message}, and held ones with 503; then wait for the
        requests in flight to finish (survivors are cancelled after
        C{drainTimeout} seconds).

        @raise DeployError: no such service.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        _checkTimeouts(drainTimeout)
        service = self._serviceNamed(name)
        self._savePause(service, {"state": STOPPED, "message": message, "max_pause": service.pause.maxPause})
        service.pause.stop(message)
        self.log.info("Stopped {service}", service=name)
        await DeferredList([group.settle(drainTimeout) for group in service.groups])

    def resume(self, name: str) -> None:
        """
        Serve C{name} again; held requests go on in arrival order. Nothing
        happens for a running service.

        @raise DeployError: no such service.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        service = self._serviceNamed(name)
        self._savePause(service, None)
        if service.pause.state == RUNNING:
            return
        service.pause.resume()
        self.log.info("Resumed {service}", service=name)

    def restore(self, snapshot: Iterable[dict[str, Any]]) -> None:
        """
        Bring back services from L{snapshot}'s output; they serve at once,
        their targets considered healthy while health checks resume.
        Unusable entries are logged and skipped.
        """
        for entry in snapshot:
            try:
                options = fromJSON(DeployOptions, entry.get("options", {}))
                name, targets, options = normalizeDeploy(
                    entry["name"], list(entry["targets"]), options
                )
                readers = normalizeTargets(entry.get("read_targets") or ())
                self._checkConflicts(name, options)
            except (InvalidOptions, DeployError, KeyError, TypeError, AttributeError) as e:
                self.log.error("Skipping a saved service that cannot be restored: {error}", error=e)
                continue
            try:
                errorPages = _errorPagesFor(options)
            except InvalidOptions as e:
                self.log.error(
                    "Restored {service} with the built-in error pages: {error}",
                    service=name,
                    error=e,
                )
                errorPages = None
            try:
                certificate, signature = _certificateFor(options)
            except InvalidOptions as e:
                self.log.error(
                    "Restored {service} without its TLS certificate: {error}",
                    service=name,
                    error=e,
                )
                certificate, signature = None, None
            group = self._makeGroup(targets, readers, options)
            group.markHealthy()
            group.startHealthChecks()
            self.services[name] = Service(self._clock, name, options, group, errorPages)
            self.services[name].pause.restore(entry.get("pause"))
            self.services[name].tlsCertificate = certificate
            self.services[name].tlsCertificateSignature = signature
            self.services[name].rollout = self._restoredRollout(name, entry, options)
            self.log.info("Restored {service}", service=name)
        self._rebuild()

    def snapshot(self) -> list[dict[str, Any]]:
        """
        Every service as JSON-ready data, for the state file.
        """
        return _snapshotOf(self.services, {})

    def describe(self) -> list[dict[str, Any]]:
        """
        Every service as C{list} shows it, sorted by name.
        """
        described = []
        for service in sorted(self.services.values(), key=lambda s: s.name):
            entry = service.describe()
            if self.certificates is not None:
                status = self.certificates.status(service)
                if status is not None:
                    entry["certificate"] = status
            described.append(entry)
        return described

    def serviceForHost(self, host: str) -> Optional[Service]:
        """
        The service owning C{/} for C{host} (C{""}: the default service),
        whose TLS settings and certificate the host gets.
        """
        return _rootService(self._table, host)

    def tlsHosts(self, where: Optional[Callable[[ServiceOptions], bool]] = None) -> list[str]:
        """
        The hosts that need an ACME certificate: those of TLS services
        without a custom certificate (only of services whose options
        satisfy C{where}, when given).
        """
        hosts: set[str] = set()
        for service in self.services.values():
            options = service.options.service
            if not options.tls_enabled or options.customCertificate:
                continue
            if where is not None and not where(options):
                continue
            hosts.update(h.lower() for h in options.hosts if not h.startswith("*"))
        return sorted(hosts)

    def stop(self) -> Deferred:
        """
        Stop every health check, every response timeout (the requests in
        flight were drained before) and close idle connections (shutdown);
        fires once they are closed.
        """
        for service in self.services.values():
            service.responseDeadlines.stop()
        return DeferredList([g.stop() for s in self.services.values() for g in s.groups])

    # Rollouts

    async def rolloutDeploy(
        self,
        name: str,
        targets: Sequence[str],
        readTargets: Sequence[str] = (),
        deployTimeout: float = DEFAULT_DEPLOY_TIMEOUT,
        drainTimeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> None:
        """
        Install C{targets} in the rollout slot of service C{name}, with the
        service's current target options, once they are all healthy (there
        is no forcing); no request moves until L{rolloutSet}. A rollout
        group it replaces is drained before this returns.

        @param readTargets: read-only targets (see L{TargetGroup}).
        @raise DeployError: C{"service not found"}, or the targets did not
            become healthy in time; nothing was changed.
        @raise InvalidOptions: bad targets or timeouts; nothing was changed.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        await self._observed(
            ROLLOUT,
            name,
            targets,
            self._rolloutDeploy(name, targets, readTargets, deployTimeout, drainTimeout),
        )

    async def _rolloutDeploy(
        self,
        name: str,
        targets: Sequence[str],
        readTargets: Sequence[str],
        deployTimeout: float,
        drainTimeout: float,
    ) -> None:
        service = self.services.get(name)
        if service is None:
            raise DeployError("service not found")
        normalized = list(normalizeTargets(targets))
        readers = normalizeTargets(readTargets)
        if not normalized:
            raise InvalidOptions("at least one target is required")
        for label, value in (("deploy timeout", deployTimeout), ("drain timeout", drainTimeout)):
            if value < 0:
                raise InvalidOptions(f"{label} must not be negative")
        self.log.info(
            "Deploying for rollout {service} to {targets}", service=name, targets=", ".join(normalized)
        )
        group = self._makeGroup(normalized, readers, service.options)
        group.startHealthChecks()
        await self._waitHealthy(group, deployTimeout)
        service = self.services.get(name)  # removed or redeployed meanwhile?
        if service is None:
            group.stop()
            raise DeployError("service not found")
        replaced = service.rollout
        split = None if replaced is None else replaced.split
        try:
            self._setRollout(service, RolloutSlot(group, split))
        except BaseException:
            group.stop()
            raise
        self._purgeCache(name, role="rollout")
        self.log.info(
            "Deployed for rollout {service} to {targets}", service=name, targets=", ".join(normalized)
        )
        if replaced is not None:
            await replaced.group.drain(drainTimeout)

    def rolloutSet(self, name: str, percent: int, allowlist: Sequence[str] = ()) -> None:
        """
        Send to the rollout group of service C{name} the requests whose
        C{kamal-rollout} cookie is in C{allowlist} or among C{percent} per
        cent of the values (see L{kamalproxy.routing.rollout}); replaces
        any earlier split.

        @raise InvalidOptions: C{percent} is not 0 to 100.
        @raise DeployError: C{"service not found"}, C{"rollout target not
            set"}; nothing was changed.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        checkPercentage(percent)
        service = self.services.get(name)
        if service is None:
            raise DeployError("service not found")
        slot = service.rollout
        if slot is None:
            raise DeployError("rollout target not set")
        split = RolloutSplit(percent, allowlist)
        self._setRollout(service, attr.evolve(slot, split=split))
        self.log.info("Set rollout split for {service}: {split}", service=name, split=split.describe())

    def rolloutStop(self, name: str) -> None:
        """
        Send every request of service C{name} to its main group again. The
        rollout group stays installed (and saved), its targets probed.

        @raise DeployError: C{"service not found"}; nothing was changed.
        @raise Exception: whatever L{persist} raised; nothing was changed.
        """
        service = self.services.get(name)
        if service is None:
            raise DeployError("service not found")
        slot = service.rollout
        self._setRollout(service, None if slot is None else attr.evolve(slot, split=None))
        self.log.info("Stopped rollout for {service}", service=name)

    def purgeCache(self, name: str, prefix: str = "") -> int:
        """
        Drop the cached responses of service C{name} (only those whose path
        starts with C{prefix}, when given); returns how many.

        @raise DeployError: C{"service not found"}.
        @raise InvalidOptions: C{prefix} does not start with C{/}.
        """
        self._serviceNamed(name)
        if prefix and not prefix.startswith("/"):
            raise InvalidOptions("path prefix must start with /")
        if self.cache is None:
            return 0
        count: int = self.cache.purge(name, prefix.encode("utf-8") if prefix else None)
        self.log.info("Purged {count} cached responses of {service}", count=count, service=name)
        return count

    # Private

    def _purgeCache(self, name: str, role: Optional[str] = None) -> None:
        if self.cache is not None:
            if role is None:
                self.cache.purge(name)
            else:
                self.cache.purge(name, role=role)

    async def _waitHealthy(self, group: TargetGroup, timeout: float) -> None:
        """
        Wait until every target of C{group} is healthy.

        @raise DeployError: not within C{timeout} seconds (the original's
            message); C{group} is stopped, as on any other failure.
        """
        try:
            await group.whenHealthy().addTimeout(timeout, self._clock)
        except TimeoutError:
            group.stop()
            raise DeployError(
                "target failed to become healthy within configured timeout "
                f"({formatDuration(timeout)})"
            ) from None
        except BaseException:
            group.stop()
            raise

    def _setRollout(self, service: Service, slot: Optional[RolloutSlot]) -> None:
        """
        Give C{service} the rollout C{slot}: save the snapshot that leaves
        (L{persist}), then make the change, then tell L{onChange}. When
        saving raises, nothing has changed.
        """
        if self.persist is not None:
            snapshot = self.snapshot()
            for entry in snapshot:
                if entry["name"] == service.name:
                    entry.pop("rollout_targets", None)
                    entry.pop("rollout_controller", None)
                    entry.update(slot.toJSON() if slot is not None else {})
            self.persist(snapshot)
        service.rollout = slot
        if self.onChange is not None:
            self.onChange(self.snapshot())

    def _restoredRollout(
        self, name: str, entry: dict[str, Any], options: DeployOptions
    ) -> Optional[RolloutSlot]:
        """
        The rollout slot saved in a snapshot C{entry}, its targets healthy at
        once while their health checks resume; L{None} when there is none
        or it cannot be read (logged).
        """
        if not entry.get("rollout_targets"):
            return None
        try:
            targets = normalizeTargets(entry["rollout_targets"])
            readers = normalizeTargets(entry.get("rollout_readers") or ())
            saved = entry.get("rollout_controller")
            split = None if saved is None else RolloutSplit.fromJSON(saved)
        except (InvalidOptions, TypeError, AttributeError) as e:
            self.log.error(
                "Restored {service} without its rollout: {error}", service=name, error=e
            )
            return None
        group = self._makeGroup(targets, readers, options)
        group.markHealthy()
        group.startHealthChecks()
        return RolloutSlot(group, split)

    def _makeTarget(self, address: str, options: DeployOptions) -> Target:
        return Target(self._clock, address, options.target, self._connectorFor, self.targetObservers)

    def _makeGroup(
        self, targets: Sequence[str], readers: Sequence[str], options: DeployOptions
    ) -> TargetGroup:
        """
        A new group of C{targets} and C{readers}, balanced as C{options}
        say; nothing probes it yet.
        """
        return TargetGroup(
            [self._makeTarget(t, options) for t in targets],
            [self._makeTarget(r, options) for r in readers],
            options.service.load_balancing,
        )

    def _serviceNamed(self, name: str) -> Service:
        """
        @raise DeployError: no such service.
        """
        service = self.services.get(name)
        if service is None:
            raise DeployError("service not found")
        return service

    def _savePause(self, service: Service, pause: Optional[dict[str, Any]]) -> None:
        """
        Save the snapshot with C{pause} as C{service}'s pause state
        (L{None}: running), unless that is its state already.
        """
        if pause != service.pause.snapshot() and self.persist is not None:
            self.persist(_snapshotOf(self.services, {}, {service.name: pause}))

    def _checkConflicts(self, name: str, options: DeployOptions) -> None:
        table = self._table
        hosts = options.service.hosts or ("",)
        for host in hosts:
            for prefix in options.service.path_prefixes:
                owner = table.owner(host, prefix)
                if owner is not None and owner.name != name:
                    raise DeployError("host settings conflict with another service")

    def _commit(self, services: dict[str, Service]) -> None:
        """
        Make C{services} the deployed services: save the snapshot they make
        (L{persist}), then swap them and their routing table in, then tell
        L{onChange}. When saving raises, nothing has changed.
        """
        table = _tableOf(services)
        synced = _syncedTLSOptions(services, table)
        if self.persist is not None:
            self.persist(_snapshotOf(services, synced))
        self.services = services
        self._install(table, synced)
        if self.onChange is not None:
            self.onChange(self.snapshot())

    def _rebuild(self) -> None:
        table = _tableOf(self.services)
        self._install(table, _syncedTLSOptions(self.services, table))

    def _install(self, table: RoutingTable[Service], synced: dict[str, DeployOptions]) -> None:
        for name, options in synced.items():
            self.services[name].options = options
        self._table = table


def _checkTimeouts(drainTimeout: float, maxPause: float = 0.0) -> None:
    """
    @raise DeployError: a negative drain timeout or maximum pause.
    """
    if drainTimeout < 0:
        raise DeployError("drain timeout must not be negative")
    if maxPause < 0:
        raise DeployError("max pause must not be negative")


def _tableOf(services: dict[str, Service]) -> RoutingTable[Service]:
    return RoutingTable(
        (host, prefix, service)
        for service in services.values()
        for host, prefix in service.bindings()
    )


def _rootService(table: RoutingTable[Service], host: str) -> Service | None:
    """
    The service owning C{/} for C{host} in C{table}, or L{None}.
    """
    match = table.lookup(host.encode("ascii", "replace").lower(), b"/")
    return match[0] if match is not None else None


def _syncedTLSOptions(
    services: dict[str, Service], table: RoutingTable[Service]
) -> dict[str, DeployOptions]:
    """
    TLS belongs to the service owning C{/} for a host: a service not owning
    C{/} takes C{tls_enabled} and C{tls_redirect} from the root service of
    its first host, or the defaults (no TLS, redirect on) when there is
    none, as the original's C{syncTLSOptionsFromRootDomain}.

    @return: the new options of the services whose TLS options change, by
        name (nothing is changed here).
    """
    synced = {}
    for service in services.values():
        options = service.options.service
        if "/" in options.path_prefixes:
            continue
        root = _rootService(table, options.hosts[0] if options.hosts else "")
        if root is not None and root is not service and "/" in root.options.service.path_prefixes:
            tls, redirect = root.options.service.tls_enabled, root.options.service.tls_redirect
        else:
            tls, redirect = False, True
        if (tls, redirect) != (options.tls_enabled, options.tls_redirect):
            synced[service.name] = attr.evolve(
                service.options,
                service=attr.evolve(options, tls_enabled=tls, tls_redirect=redirect),
            )
    return synced


def _snapshotOf(
    services: dict[str, Service],
    synced: dict[str, DeployOptions],
    pauses: Optional[dict[str, Optional[dict[str, Any]]]] = None,
) -> list[dict[str, Any]]:
    """
    L{Router.snapshot} of C{services}, with the options in C{synced} and
    the pause states in C{pauses} in place of theirs. A service not running
    has its pause state under C{"pause"}
    (L{kamalproxy.routing.pausing.PauseController.snapshot}).
    """
    entries = []
    for s in sorted(services.values(), key=lambda s: s.name):
        entry = {
            "name": s.name,
            "targets": s.group.addresses,
            "read_targets": s.group.readerAddresses,
            "options": toJSON(synced.get(s.name, s.options)),
        }
        if s.rollout is not None:
            entry.update(s.rollout.toJSON())
        pause = pauses[s.name] if pauses is not None and s.name in pauses else s.pause.snapshot()
        if pause is not None:
            entry["pause"] = pause
        entries.append(entry)
    return entries
