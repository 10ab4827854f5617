"""
Tests for L{kamalproxy.tls.service.AcmeIssuingService}: scheduling, renewal
decisions, back-off and cancellation, with L{task.Clock} and a fake client.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, List, Sequence, Tuple

from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kamalproxy.tls.client import AcmeError
from kamalproxy.tls.http01 import HTTP01Responder
from kamalproxy.tls.service import AcmeIssuingService, BackingOff
from kamalproxy.tls.store import CertificateRecord, MemoryStore

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 24 * HOUR


class FakeClient:
    """
    An issuer whose every C{issue} call returns a L{Deferred} for the test
    to fire (and records cancellation).
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[List[str], Deferred]] = []
        self.cancelled: List[List[str]] = []

    def issue(self, names: Sequence[str], responder: Any) -> Deferred:
        names = list(names)
        d: Deferred = Deferred(lambda d: self.cancelled.append(names))
        self.calls.append((names, d))
        return d

    def pending(self) -> List[List[str]]:
        return [names for names, d in self.calls if not d.called]

    def succeed(self, clock: Clock, index: int = -1, days: float = 90) -> CertificateRecord:
        names, d = self.calls[index]
        record = recordExpiringIn(clock, days * DAY)
        d.callback(record)
        return record

    def fail(self, index: int = -1) -> None:
        names, d = self.calls[index]
        d.errback(AcmeError("rate limited", type="urn:ietf:params:acme:error:rateLimited"))


def recordExpiringIn(clock: Clock, seconds: float) -> CertificateRecord:
    """
    A record (with placeholder PEM) expiring C{seconds} after C{clock}'s now.
    """
    notAfter = datetime.fromtimestamp(clock.seconds() + seconds, timezone.utc)
    return CertificateRecord(key=b"key", chain=b"chain", notAfter=notAfter)


class ServiceTestsMixin:
    """
    Builds a service around a L{Clock}, a L{MemoryStore} and a L{FakeClient}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore()
        self.client = FakeClient()
        self.hosts = {"a.test"}
        self.changed: List[Tuple[str, CertificateRecord]] = []

    def makeService(self, **kwargs: Any) -> AcmeIssuingService:
        kwargs.setdefault("client", self.client)
        service = AcmeIssuingService(
            clock=self.clock,
            store=self.store,
            responder=HTTP01Responder(),
            hosts=lambda: set(self.hosts),
            certificateChanged=lambda host, record: self.changed.append((host, record)),
            **kwargs,
        )
        return service

    def stored(self, host: str) -> Any:
        return self.successResultOf(self.store.get(host))  # type: ignore[attr-defined]


class SchedulingTests(ServiceTestsMixin, SynchronousTestCase):
    """
    Which hosts get certificates, when, and how many at a time.
    """

    def test_providesIService(self) -> None:
        """
        The service provides L{IService}.
        """
        self.assertTrue(verifyObject(IService, self.makeService()))

    def test_needsExactlyOneClientSource(self) -> None:
        """
        Giving both or neither of C{client} and C{clientFactory} is an error.
        """
        with self.assertRaises(ValueError):
            self.makeService(client=None)
        with self.assertRaises(ValueError):
            self.makeService(clientFactory=lambda: None)

    def test_issuesMissingCertificatesOneAtATime(self) -> None:
        """
        On start every host without a certificate gets one, one at a time
        by default; each is stored, reported to the observer, and
        C{whenCertsValid} fires when the pass is over.
        """
        self.hosts = {"a.test", "b.test"}
        service = self.makeService()
        ready = service.whenCertsValid()
        service.startService()
        self.assertEqual(self.client.pending(), [["a.test"]])
        self.assertNoResult(ready)
        recordA = self.client.succeed(self.clock)
        self.assertEqual(self.client.pending(), [["b.test"]])
        recordB = self.client.succeed(self.clock)
        self.assertEqual(self.stored("a.test"), recordA)
        self.assertEqual(self.stored("b.test"), recordB)
        self.assertEqual(self.changed, [("a.test", recordA), ("b.test", recordB)])
        self.successResultOf(ready)
        self.successResultOf(service.whenCertsValid())

    def test_concurrency(self) -> None:
        """
        C{concurrency=2} runs two issuances at once.
        """
        self.hosts = {"a.test", "b.test", "c.test"}
        service = self.makeService(concurrency=2)
        service.startService()
        self.assertEqual(self.client.pending(), [["a.test"], ["b.test"]])
        self.client.succeed(self.clock, 0)
        self.assertEqual(self.client.pending(), [["b.test"], ["c.test"]])

    def test_hostNamesLowerCased(self) -> None:
        """
        Host names from the provider are lower-cased.
        """
        self.hosts = {"A.Test"}
        service = self.makeService()
        service.startService()
        self.assertEqual(self.client.pending(), [["a.test"]])

    def test_validCertificateNotRenewed(self) -> None:
        """
        A certificate with more than C{renewBefore} (30 days) left is kept.
        """
        self.store.store("a.test", recordExpiringIn(self.clock, 31 * DAY))
        service = self.makeService()
        service.startService()
        self.assertEqual(self.client.calls, [])
        self.successResultOf(service.whenCertsValid())

    def test_renewsAtThirtyDaysLeft(self) -> None:
        """
        A certificate is renewed at the first check where 30 days or fewer
        are left, not before; checks run every C{checkInterval} (12 h).
        """
        self.store.store("a.test", recordExpiringIn(self.clock, 30 * DAY + 6 * HOUR))
        service = self.makeService()
        service.startService()
        self.assertEqual(self.client.calls, [])
        self.clock.advance(6 * HOUR - 1)
        self.assertEqual(self.client.calls, [])
        self.clock.advance(6 * HOUR + 1)
        self.assertEqual(self.client.pending(), [["a.test"]])
        record = self.client.succeed(self.clock)
        self.assertEqual(self.stored("a.test"), record)
        self.clock.advance(12 * HOUR)
        self.assertEqual(len(self.client.calls), 1)

    def test_renewBoundary(self) -> None:
        """
        C{needsCertificate} is true with exactly C{renewBefore} left, false
        a second earlier, and true for a missing record.
        """
        service = self.makeService(renewBefore=timedelta(days=30))
        self.assertTrue(service.needsCertificate(None))
        self.assertTrue(service.needsCertificate(recordExpiringIn(self.clock, 30 * DAY)))
        self.assertFalse(
            service.needsCertificate(recordExpiringIn(self.clock, 30 * DAY + 1))
        )
        self.assertTrue(service.needsCertificate(recordExpiringIn(self.clock, -1)))

    def test_newHostPickedUpAtNextCheck(self) -> None:
        """
        A host added to the provider gets a certificate at the next check.
        """
        self.hosts = set()
        service = self.makeService()
        service.startService()
        self.hosts = {"new.test"}
        self.clock.advance(12 * HOUR)
        self.assertEqual(self.client.pending(), [["new.test"]])

    def test_clientFactoryUsedOnce(self) -> None:
        """
        A C{clientFactory} is called lazily, at the first issuance, and its
        client is reused.
        """
        made = []

        async def factory() -> FakeClient:
            made.append(1)
            return self.client

        self.hosts = {"a.test", "b.test"}
        service = self.makeService(client=None, clientFactory=factory)
        self.assertEqual(made, [])
        service.startService()
        self.client.succeed(self.clock)
        self.client.succeed(self.clock)
        self.assertEqual(made, [1])
        self.assertEqual(len(self.client.calls), 2)


class BackoffTests(ServiceTestsMixin, SynchronousTestCase):
    """
    Per-host exponential back-off after failures.
    """

    def test_backoffDoubles(self) -> None:
        """
        After each failure the host is retried after 1, 2, 4... minutes,
        capped at one hour; nothing is retried earlier.
        """
        service = self.makeService()
        service.startService()
        expected = [60, 120, 240, 480, 960, 1920, 3600, 3600]
        for attempt, delay in enumerate(expected, start=1):
            self.client.fail()
            self.assertEqual(service.retryIn("a.test"), delay)
            self.assertEqual(len(self.client.calls), attempt)
            self.clock.advance(delay - 1)
            self.assertEqual(len(self.client.calls), attempt)
            self.clock.advance(1)
            self.assertEqual(len(self.client.calls), attempt + 1)
        self.assertEqual(self.changed, [])

    def test_successResetsBackoff(self) -> None:
        """
        A success clears the back-off: the next failure waits one minute
        again.
        """
        service = self.makeService()
        service.startService()
        self.client.fail()
        self.clock.advance(60)
        self.client.fail()
        self.assertEqual(service.retryIn("a.test"), 120)
        self.clock.advance(120)
        self.client.succeed(self.clock, days=29)  # due again at the next check
        self.assertIsNone(service.retryIn("a.test"))
        self.clock.advance(12 * HOUR)
        self.client.fail()
        self.assertEqual(service.retryIn("a.test"), 60)

    def test_periodicCheckSkipsHostInBackoff(self) -> None:
        """
        A periodic check does not bypass a host's back-off, and the
        scheduled retry still happens once.
        """
        service = self.makeService(
            checkInterval=timedelta(seconds=30), minBackoff=timedelta(seconds=100)
        )
        service.startService()
        self.client.fail()
        self.clock.advance(30)
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertEqual(len(self.client.calls), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.client.calls), 2)

    def test_failureLogged(self) -> None:
        """
        A failure is logged at error level with the host, the ACME error
        and the retry delay.
        """
        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        events: List[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service = self.makeService()
        service.startService()
        self.client.fail()
        errors = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("a.test", errors[0])
        self.assertIn("rateLimited", errors[0])
        self.assertIn("retrying in 60s", errors[0])

    def test_failureObserved(self) -> None:
        """
        Every failed issuance is told to C{issuanceFailed} with its host
        and failure (for metrics); a success is not.
        """
        failed: List[Tuple[str, Any]] = []
        service = self.makeService(issuanceFailed=lambda host, failure: failed.append((host, failure)))
        service.startService()
        self.client.fail()
        self.clock.advance(60)
        self.client.fail()
        self.clock.advance(120)
        self.client.succeed(self.clock)
        self.assertEqual([host for host, _ in failed], ["a.test", "a.test"])
        self.assertIsInstance(failed[0][1].value, AcmeError)

    def test_removedHostNotRetried(self) -> None:
        """
        A host removed from the provider while backing off is not retried.
        """
        service = self.makeService()
        service.startService()
        self.client.fail()
        self.hosts = set()
        self.clock.advance(60)
        self.assertEqual(len(self.client.calls), 1)
        self.assertIsNone(service.retryIn("a.test"))


class IssueNowTests(ServiceTestsMixin, SynchronousTestCase):
    """
    On-demand issuance with L{AcmeIssuingService.issueNow}.
    """

    def test_issueNow(self) -> None:
        """
        C{issueNow} issues for a host even if the provider does not list
        it, and fires with the stored record.
        """
        self.hosts = set()
        service = self.makeService()
        service.startService()
        d = service.issueNow("x.test")
        self.assertEqual(self.client.pending(), [["x.test"]])
        record = self.client.succeed(self.clock)
        self.assertEqual(self.successResultOf(d), record)
        self.assertEqual(self.stored("x.test"), record)

    def test_joinsInFlight(self) -> None:
        """
        Concurrent C{issueNow} calls for one host share one issuance, and
        cancelling one caller does not cancel the issuance.
        """
        self.hosts = set()
        service = self.makeService()
        service.startService()
        d1 = service.issueNow("x.test")
        d2 = service.issueNow("x.test")
        d3 = service.issueNow("x.test")
        d3.cancel()
        self.failureResultOf(d3, CancelledError)
        self.assertEqual(len(self.client.calls), 1)
        record = self.client.succeed(self.clock)
        self.assertIs(self.successResultOf(d1), record)
        self.assertIs(self.successResultOf(d2), record)

    def test_errorReachesCaller(self) -> None:
        """
        A failed issuance fails C{issueNow}'s L{Deferred} with the error.
        """
        self.hosts = set()
        service = self.makeService()
        service.startService()
        d = service.issueNow("x.test")
        self.client.fail()
        self.assertEqual(self.failureResultOf(d, AcmeError).value.code, "rateLimited")

    def test_backingOff(self) -> None:
        """
        While a host backs off C{issueNow} fails fast with L{BackingOff};
        C{force=True} issues anyway.
        """
        self.hosts = set()
        service = self.makeService()
        service.startService()
        first = service.issueNow("x.test")
        self.client.fail()
        self.failureResultOf(first, AcmeError)
        failure = self.failureResultOf(service.issueNow("x.test"), BackingOff)
        self.assertEqual(failure.value.retryIn, 60)
        self.assertIn("rate limited", str(failure.value))
        self.assertEqual(len(self.client.calls), 1)
        d = service.issueNow("x.test", force=True)
        self.assertEqual(len(self.client.calls), 2)
        self.client.succeed(self.clock)
        self.successResultOf(d)
        self.assertIsNone(service.retryIn("x.test"))
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds(),
                         12 * HOUR)


class StopTests(ServiceTestsMixin, SynchronousTestCase):
    """
    Stopping the service.
    """

    def test_stopCancelsInFlight(self) -> None:
        """
        C{stopService} cancels the in-flight issuance, schedules nothing,
        and leaves no delayed call behind.
        """
        service = self.makeService()
        service.startService()
        d = service.issueNow("a.test")
        self.successResultOf(service.stopService())
        self.assertEqual(self.client.cancelled, [["a.test"]])
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(service.retryIn("a.test"))

    def test_stopCancelsRetry(self) -> None:
        """
        A scheduled retry is cancelled by C{stopService}.
        """
        service = self.makeService()
        service.startService()
        self.client.fail()
        self.successResultOf(service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(DAY)
        self.assertEqual(len(self.client.calls), 1)

    def test_stopCancelsReadinessWaiters(self) -> None:
        """
        A pending C{whenCertsValid} L{Deferred} is cancelled by
        C{stopService}.
        """
        service = self.makeService()
        ready = service.whenCertsValid()
        service.startService()
        self.successResultOf(service.stopService())
        self.failureResultOf(ready, CancelledError)
