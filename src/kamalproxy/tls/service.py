# -*- test-case-name: tests.tls.test_acme_service -*-
"""
L{AcmeIssuingService}: keeps a certificate for every host that should have
one, renewing ahead of expiry and backing off per host after failures.

Shaped like txacme's C{AcmeIssuingService}: an attrs L{Service} given a
clock, a store, a responder and a client, driving a L{TimerService} whose
C{.clock} is the injected clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Protocol,
    Sequence,
    Union,
)

import attr
from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredLock,
    DeferredSemaphore,
    ensureDeferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kamalproxy.tls.client import AcmeError
from kamalproxy.tls.interfaces import ICertificateStore, IResponder
from kamalproxy.tls.store import CertificateRecord

__all__ = ["AcmeIssuingService", "BackingOff", "Issuer"]

log = Logger()

CertificateObserver = Callable[[str, CertificateRecord], Any]


class Issuer(Protocol):
    """
    What the service needs from a client: L{kamalproxy.tls.client.AcmeClient}
    or a test fake.
    """

    def issue(
        self, names: Sequence[str], responder: IResponder
    ) -> "Union[Awaitable[CertificateRecord], Deferred[CertificateRecord]]":
        ...


class BackingOff(Exception):
    """
    L{AcmeIssuingService.issueNow} was asked for a host whose last attempt
    failed and whose back-off delay has not passed.

    @ivar host: the host.
    @ivar retryIn: seconds until the next automatic attempt.
    @ivar lastError: the failure of the last attempt.
    """

    def __init__(self, host: str, retryIn: float, lastError: Optional[Failure]) -> None:
        reason = lastError.getErrorMessage() if lastError is not None else "unknown"
        super().__init__(
            f"not retrying {host} for another {retryIn:.0f}s (last error: {reason})"
        )
        self.host = host
        self.retryIn = retryIn
        self.lastError = lastError


@attr.s(auto_attribs=True)
class _HostState:
    """
    Per-host bookkeeping: failures, back-off, in-flight issuance.
    """

    failures: int = 0
    retryAt: Optional[float] = None
    lastError: Optional[Failure] = None
    retryCall: Optional[IDelayedCall] = None
    work: Optional[Deferred] = None
    waiters: List[Deferred] = attr.ib(factory=list)


def _describe(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, AcmeError):
        return str(error)
    return f"{type(error).__name__}: {failure.getErrorMessage()}"


def _expected(failure: Failure) -> bool:
    """
    Whether a failure is an operational one (CA refusal, network trouble)
    rather than a bug, so it is logged without a traceback.
    """
    return failure.check(AcmeError, ConnectError, TimeoutError, OSError) is not None


@attr.s(auto_attribs=True, eq=False)
class AcmeIssuingService(Service):
    """
    Issues and renews certificates for the hosts returned by C{hosts}.

    On start and then every C{checkInterval} it issues, one host at a time
    (or C{concurrency} at a time), a certificate for every host that has
    none or whose certificate expires within C{renewBefore}.  A failed host
    is retried after C{minBackoff}, doubling up to C{maxBackoff}; a success
    resets its back-off.

    @ivar clock: the time source (L{task.Clock} in tests).
    @ivar store: where certificates are kept.
    @ivar responder: answers the CA's challenges.
    @ivar hosts: returns (or fires a L{Deferred} with) the host names that
        should have certificates.
    @ivar client: an L{Issuer}, e.g. an L{kamalproxy.tls.client.AcmeClient}.
    @ivar clientFactory: alternatively, an async callable making the
        L{Issuer} at first use (e.g. after loading the account key);
        retried at the next attempt if it fails.
    @ivar certificateChanged: called with C{(host, record)} after every new
        certificate is stored (see also L{addObserver}).
    @ivar issuanceFailed: called with C{(host, failure)} after every failed
        issuance (for metrics), or L{None}.
    """

    clock: IReactorTime
    store: ICertificateStore
    responder: IResponder
    hosts: Callable[[], Any]
    client: Optional[Issuer] = None
    clientFactory: Optional[Callable[[], Any]] = None
    renewBefore: timedelta = timedelta(days=30)
    checkInterval: timedelta = timedelta(hours=12)
    minBackoff: timedelta = timedelta(minutes=1)
    maxBackoff: timedelta = timedelta(hours=1)
    concurrency: int = 1
    certificateChanged: Optional[CertificateObserver] = None
    issuanceFailed: Optional[Callable[[str, Failure], Any]] = None

    _states: Dict[str, _HostState] = attr.ib(factory=dict, init=False)
    _observers: List[CertificateObserver] = attr.ib(factory=list, init=False)
    _semaphore: Optional[DeferredSemaphore] = attr.ib(default=None, init=False)
    _clientLock: DeferredLock = attr.ib(factory=DeferredLock, init=False)
    _timer: Optional[TimerService] = attr.ib(default=None, init=False)
    _firstCheckDone: bool = attr.ib(default=False, init=False)
    _readyWaiters: List[Deferred] = attr.ib(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if (self.client is None) == (self.clientFactory is None):
            raise ValueError("give exactly one of client and clientFactory")
        self._semaphore = DeferredSemaphore(self.concurrency)
        if self.certificateChanged is not None:
            self._observers.append(self.certificateChanged)

    # Service

    def startService(self) -> None:
        super().startService()
        self._timer = TimerService(self.checkInterval.total_seconds(), self.check)
        self._timer.clock = self.clock
        self._timer.startService()

    def stopService(self) -> "Deferred[None]":
        super().stopService()
        waiters, self._readyWaiters = self._readyWaiters, []
        for waiter in waiters:
            waiter.cancel()
        stopped = []
        if self._timer is not None:
            stopped.append(self._timer.stopService())
            self._timer = None
        for state in self._states.values():
            if state.retryCall is not None and state.retryCall.active():
                state.retryCall.cancel()
            state.retryCall = None
            if state.work is not None:
                stopped.append(state.work)
                state.work.cancel()
        return DeferredList(
            [d for d in stopped if d is not None], consumeErrors=True
        ).addCallback(lambda _: None)

    # Public API

    def addObserver(self, observer: CertificateObserver) -> Callable[[], None]:
        """
        Call C{observer(host, record)} whenever a certificate is stored.

        @return: a function removing the observer.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def whenCertsValid(self) -> "Deferred[None]":
        """
        A L{Deferred} firing once the first check pass has finished: every
        host then has a certificate, or has failed and is being retried
        with back-off.  Cancelled by L{stopService}.
        """
        if self._firstCheckDone:
            return succeed(None)
        def cancel(d: Deferred) -> None:
            if d in self._readyWaiters:
                self._readyWaiters.remove(d)

        d: Deferred[None] = Deferred(cancel)
        self._readyWaiters.append(d)
        return d

    def needsCertificate(self, record: Optional[CertificateRecord]) -> bool:
        """
        Whether C{record} is missing or expires within C{renewBefore}.
        """
        return record is None or record.expiresWithin(self._now(), self.renewBefore)

    def retryIn(self, host: str) -> Optional[float]:
        """
        Seconds until a failed host may be tried again, or L{None} if it is
        not backing off.
        """
        state = self._states.get(host)
        if state is None or state.retryAt is None:
            return None
        remaining = state.retryAt - self.clock.seconds()
        return remaining if remaining > 0 else None

    def issueNow(self, host: str, force: bool = False) -> "Deferred[CertificateRecord]":
        """
        Issue a certificate for C{host} now (for on-demand TLS), even if
        the stored one is still valid.  Joins an issuance already in flight.

        @param force: ignore the host's back-off.

        @return: a L{Deferred} firing with the new record, or failing with
            the error (L{BackingOff} if C{host} is backing off and C{force}
            is false).
        """
        state = self._states.get(host)
        if state is not None and state.work is None and not force:
            retryIn = self.retryIn(host)
            if retryIn is not None:
                return fail(BackingOff(host, retryIn, state.lastError))
        return self._issue(host)

    def check(self) -> "Deferred[None]":
        """
        Run one check pass now (the timer calls this every C{checkInterval}).
        It never fails: errors are logged.
        """
        d = Deferred.fromCoroutine(self._check())

        def failed(failure: Failure) -> None:
            if not failure.check(CancelledError):
                log.failure("ACME certificate check failed", failure)

        d.addErrback(failed)
        d.addBoth(self._checkDone)
        return d

    # Internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def _checkDone(self, result: None) -> None:
        if not self._firstCheckDone:
            self._firstCheckDone = True
            waiters, self._readyWaiters = self._readyWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def _wantedHosts(self) -> List[str]:
        hosts: Iterable[str] = await maybeDeferred(self.hosts)
        return sorted({h.lower() for h in hosts})

    async def _check(self) -> None:
        hosts = await self._wantedHosts()
        records = await self.store.all()
        pending = []
        for host in hosts:
            if not self.needsCertificate(records.get(host)):
                continue
            state = self._states.get(host)
            if state is not None and state.work is not None:
                pending.append(self._follow(state))
                continue
            if self.retryIn(host) is not None:
                continue  # its retry call is scheduled
            pending.append(self._issue(host))
        if pending:
            await DeferredList(pending, consumeErrors=True)

    def _follow(self, state: _HostState) -> "Deferred[CertificateRecord]":
        def cancel(d: Deferred) -> None:
            if d in state.waiters:
                state.waiters.remove(d)

        follower: Deferred[CertificateRecord] = Deferred(cancel)
        state.waiters.append(follower)
        return follower

    def _issue(self, host: str) -> "Deferred[CertificateRecord]":
        state = self._states.setdefault(host, _HostState())
        if state.work is None:
            if state.retryCall is not None and state.retryCall.active():
                state.retryCall.cancel()
            state.retryCall = None
            work = Deferred.fromCoroutine(self._issueOne(host))
            state.work = work
            work.addBoth(self._issued, host, state)
        return self._follow(state)

    async def _getClient(self) -> Issuer:
        if self.client is not None:
            return self.client
        await self._clientLock.acquire()
        try:
            if self.client is None:
                assert self.clientFactory is not None
                self.client = await ensureDeferred(self.clientFactory())
            client = self.client
            assert client is not None
            return client
        finally:
            self._clientLock.release()

    async def _issueOne(self, host: str) -> CertificateRecord:
        assert self._semaphore is not None
        await self._semaphore.acquire()
        try:
            client = await self._getClient()
            record: CertificateRecord = await ensureDeferred(
                client.issue([host], self.responder)  # type: ignore[arg-type]
            )
            await self.store.store(host, record)
            return record
        finally:
            self._semaphore.release()

    def _issued(self, result: Union[CertificateRecord, Failure], host: str,
                state: _HostState) -> None:
        state.work = None
        waiters, state.waiters = state.waiters, []
        if isinstance(result, Failure):
            if result.check(CancelledError) and not self.running:
                log.info("ACME issuance for {host} cancelled", host=host)
            else:
                self._failed(host, state, result)
            for waiter in waiters:
                waiter.errback(result)
            return
        state.failures = 0
        state.retryAt = None
        state.lastError = None
        if state.retryCall is not None and state.retryCall.active():
            state.retryCall.cancel()
        state.retryCall = None
        for observer in list(self._observers):
            try:
                observer(host, result)
            except Exception:
                log.failure("certificateChanged observer failed for {host}", host=host)
        for waiter in waiters:
            waiter.callback(result)

    def _backoff(self, failures: int) -> float:
        delay = self.minBackoff.total_seconds() * 2 ** (failures - 1)
        return min(delay, self.maxBackoff.total_seconds())

    def _failed(self, host: str, state: _HostState, failure: Failure) -> None:
        state.failures += 1
        state.lastError = failure
        delay = self._backoff(state.failures)
        state.retryAt = self.clock.seconds() + delay
        if self.issuanceFailed is not None:
            try:
                self.issuanceFailed(host, failure)
            except Exception:
                log.failure("issuanceFailed observer failed for {host}", host=host)
        if _expected(failure):
            log.error(
                "Could not get a certificate for {host} (attempt {attempt}): "
                "{error}; retrying in {delay:.0f}s",
                host=host,
                attempt=state.failures,
                error=_describe(failure),
                delay=delay,
            )
        else:
            log.failure(
                "Could not get a certificate for {host} (attempt {attempt}); "
                "retrying in {delay:.0f}s",
                failure,
                host=host,
                attempt=state.failures,
                delay=delay,
            )
        if self.running:
            if state.retryCall is not None and state.retryCall.active():
                state.retryCall.cancel()
            state.retryCall = self.clock.callLater(delay, self._retry, host)

    def _retry(self, host: str) -> None:
        state = self._states.get(host)
        if state is not None:
            state.retryCall = None
        if not self.running:
            return
        Deferred.fromCoroutine(self._retryHost(host)).addErrback(
            lambda f: None
            if f.check(CancelledError)
            else log.failure("ACME retry for {host} failed", f, host=host)
        )

    async def _retryHost(self, host: str) -> None:
        if host not in await self._wantedHosts():
            return  # no longer wanted (or on-demand only): retry when asked
        if self.needsCertificate(await self.store.get(host)):
            try:
                await self._issue(host)
            except Exception:
                pass  # already logged, and the next retry is scheduled
