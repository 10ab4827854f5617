# -*- test-case-name: tests.routing.test_router -*-
"""
Targets and target groups: where a service's requests go, which of them are
healthy, which one a request goes to (round-robin or least-requests, readers
for reads), and how a replaced group is drained.
"""

from __future__ import annotations

from typing import Callable, cast, Iterable, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, DeferredList, FirstError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kamalproxy.interfaces import ITargetObserver
from kamalproxy.upstream.health import HealthCheck
from kamalproxy.routing.options import LEAST_REQUESTS, ROUND_ROBIN, TargetOptions
from kamalproxy.upstream.client import Connector, UpstreamPool

ADDING = "adding"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

ConnectorFor = Callable[[str, int], Connector]


class InFlight(Protocol):
    """
    A request being forwarded to a target, as draining sees it.
    """

    def cancelForDrain(self) -> None:
        """
        The drain deadline passed: give up on this request.
        """


class Target:
    """
    One C{host:port} a service forwards to, with its connection pool, its
    health and the requests in flight on it.

    @ivar state: L{ADDING} until the first successful probe, then
        L{HEALTHY} or L{UNHEALTHY}.
    @ivar inflight: requests forwarded here and not finished yet.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        address: str,
        options: TargetOptions,
        connectorFor: ConnectorFor,
        observers: Sequence[ITargetObserver] = (),
    ) -> None:
        """
        @param observers: told of every change of this target's health.
        """
        self.address = address
        self.observers = observers
        host, _, port = address.rpartition(":")
        self.host = host
        self.port = int(port)
        self.addressBytes = address.encode("ascii")
        self.pool = UpstreamPool(connectorFor(host, self.port), clock)
        self.state = ADDING
        self.draining = False
        self.inflight: set[InFlight] = set()
        self._clock = clock
        self._idleWaiters: list[Deferred] = []
        self._healthWaiters: list[Deferred] = []
        checkPort = options.health_check.port or self.port
        self.healthCheck = HealthCheck(
            clock,
            connectorFor(host, checkPort),
            host,
            options.health_check,
            self._probed,
        )

    def __repr__(self) -> str:
        return f"<Target {self.address} {self.state}>"

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY

    def _probed(self, ok: bool, detail: str) -> None:
        was = self.state
        if ok:
            new = HEALTHY
        else:
            if was == HEALTHY:
                new = UNHEALTHY
            else:
                new = was
            self.log.debug(
                "Healthcheck failed for {target}: {detail}",
                target=self.address,
                detail=detail,
            )
        if new != was:
            self.state = new
            self.log.info(
                "Target health updated: {target} is {state} (was {was})",
                target=self.address,
                state=new,
                was=was,
            )
            for observer in self.observers:
                observer.targetHealthChanged(self, was, new)
            if new == HEALTHY:
                waiters, self._healthWaiters = self._healthWaiters, []
                for d in waiters:
                    d.callback(self)

    def markUnreachable(self, detail: str) -> None:
        """
        A request could not connect to this target (refused, reset, timed
        out): it is unhealthy, as after a failed probe (its observers are
        told), until a probe passes again.
        """
        self._probed(False, f"unreachable: {detail}")

    def whenHealthy(self) -> Deferred:
        """
        Fires with this target once it is healthy.
        """
        if self.state == HEALTHY:
            return succeed(self)
        d: Deferred = Deferred(lambda d: self._healthWaiters.remove(d))
        self._healthWaiters.append(d)
        return d

    def markHealthy(self) -> None:
        """
        Consider the target healthy without a probe (restored state).
        """
        self.state = HEALTHY

    def started(self, request: InFlight) -> None:
        """
        A request is now forwarded here.
        """
        self.inflight.add(request)

    def finished(self, request: InFlight) -> None:
        """
        A request forwarded here is over.
        """
        self.inflight.discard(request)
        if not self.inflight and self._idleWaiters:
            waiters, self._idleWaiters = self._idleWaiters, []
            for d in waiters:
                d.callback(None)

    def drain(self, timeout: float) -> Deferred:
        """
        Take no new requests; fire once the ones in flight are done, or
        cancel the survivors after C{timeout} seconds.
        """
        self.draining = True
        self.healthCheck.stop()

        def close(result: None) -> None:
            self.pool.close()

        return self.settle(timeout).addCallback(close)

    def settle(self, timeout: float) -> Deferred:
        """
        Fire once the requests in flight are done, cancelling the survivors
        after C{timeout} seconds (504, or a cut response); unlike
        L{drain}, the target stays in service (C{pause} and C{stop}).
        """
        if not self.inflight:
            return succeed(None)
        d: Deferred = Deferred()
        self._idleWaiters.append(d)

        def deadline() -> None:
            survivors = list(self.inflight)
            if survivors:
                self.log.info(
                    "Request cancelled due to draining: {count} on {target}",
                    count=len(survivors),
                    target=self.address,
                )
            for request in survivors:
                request.cancelForDrain()
                self.finished(request)

        call = self._clock.callLater(timeout, deadline)

        def done(result: None) -> None:
            if call.active():
                call.cancel()

        return d.addCallback(done)

    def stop(self) -> Deferred:
        """
        Stop probing and close idle connections (the group is discarded);
        fires once they are closed.
        """
        self.healthCheck.stop()
        return self.pool.close()


class TargetGroup:
    """
    The targets a service currently sends requests to: writers, which take
    any request, and readers (C{--read-target}), which take the reads when
    one is healthy. A target is picked among the healthy ones of a kind, in
    turn (L{ROUND_ROBIN}) or the one with the fewest requests in flight,
    ties in turn (L{LEAST_REQUESTS}).

    @ivar writers: the writers, in deploy order.
    @ivar readers: the readers, in deploy order.
    @ivar targets: every target, writers then readers (health checks,
        draining and stopping cover them all).
    @ivar balancing: L{ROUND_ROBIN} or L{LEAST_REQUESTS}.
    """

    def __init__(
        self,
        targets: Iterable[Target],
        readers: Iterable[Target] = (),
        balancing: str = ROUND_ROBIN,
    ) -> None:
        self.writers = list(targets)
        self.readers = list(readers)
        self.targets = self.writers + self.readers
        self.balancing = balancing
        self._next = [0, 0]  # the last pick among the writers, the readers

    @property
    def addresses(self) -> list[str]:
        """
        The writers' addresses.
        """
        return [t.address for t in self.writers]

    @property
    def readerAddresses(self) -> list[str]:
        return [t.address for t in self.readers]

    def pick(self, read: bool = False, avoid: Optional[Target] = None) -> Optional[Target]:
        """
        The next healthy target, or L{None} when none is healthy.

        @param read: a read (see L{kamalproxy.pipeline.balance}): a healthy
            reader when there is one, else a writer.
        @param avoid: a target not to pick (one that just failed).
        """
        if read and self.readers:
            target = self._pickAmong(self.readers, 1, avoid)
            if target is not None:
                return target
        return self._pickAmong(self.writers, 0, avoid)

    def _pickAmong(
        self, targets: list[Target], slot: int, avoid: Optional[Target]
    ) -> Optional[Target]:
        count = len(targets)
        if count == 1:
            target = targets[0]
            return target if target.state == HEALTHY and target is not avoid else None
        last = self._next[slot]
        least = self.balancing == LEAST_REQUESTS
        chosen: Optional[Target] = None
        chosenAt = last
        for step in range(1, count + 1):
            at = (last + step) % count
            target = targets[at]
            if target.state != HEALTHY or target is avoid:
                continue
            if not least:
                chosen, chosenAt = target, at
                break
            if chosen is None or len(target.inflight) < len(chosen.inflight):
                chosen, chosenAt = target, at
        self._next[slot] = chosenAt
        return chosen

    def startHealthChecks(self) -> None:
        """
        Start probing every target.
        """
        for target in self.targets:
            target.healthCheck.start()

    def markHealthy(self) -> None:
        """
        Consider every target healthy (restored state) while probes resume.
        """
        for target in self.targets:
            target.markHealthy()

    def whenHealthy(self) -> Deferred:
        """
        Fires once every target is healthy; cancel it to stop waiting (it
        then fails with L{CancelledError}, so C{addTimeout} turns that into
        L{TimeoutError}).
        """
        waiting = DeferredList(
            [t.whenHealthy() for t in self.targets], fireOnOneErrback=True, consumeErrors=True
        )

        def unwrap(failure: Failure) -> Failure:
            failure.trap(FirstError)
            return cast(FirstError, failure.value).subFailure

        return waiting.addErrback(unwrap)

    @property
    def inflightCount(self) -> int:
        return sum(len(t.inflight) for t in self.targets)

    def drain(self, timeout: float) -> Deferred:
        """
        Drain every target (see L{Target.drain}).
        """
        return DeferredList([t.drain(timeout) for t in self.targets])

    def settle(self, timeout: float) -> Deferred:
        """
        Wait for the requests in flight on every target (see
        L{Target.settle}); the targets stay in service.
        """
        return DeferredList([t.settle(timeout) for t in self.targets])

    def stop(self) -> Deferred:
        """
        Stop probing and close idle connections of every target; fires once
        they are closed.
        """
        return DeferredList([target.stop() for target in self.targets])
