"""
Tests for L{kamalproxy.observe.livestats}: rolling windows per service on
a L{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.interfaces import IRequestObserver
from kamalproxy.observe.livestats import (
    BOUNDS,
    BUCKET_SECONDS,
    WINDOW_BUCKETS,
    LiveStats,
    percentile,
)

START = 1_700_000_000.0  # a bucket boundary


class _Service:
    def __init__(self, name: str) -> None:
        self.name = name


class _Request:
    def __init__(self, code: int) -> None:
        self.code = code


class _Exchange:
    """
    What L{LiveStats} reads of an exchange.
    """

    def __init__(self, service: Optional[str], started: float, code: int = 200, cache: Optional[str] = None) -> None:
        self.service = _Service(service) if service is not None else None
        self.started = started
        self.status: Optional[int] = None
        self.request = _Request(code)
        if cache is not None:
            self.cacheStatus = cache


class LiveStatsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(START)
        self.stats = LiveStats(self.clock)

    def request(self, service: Optional[str] = "web", duration: float = 0.01, code: int = 200, cache: Optional[str] = None) -> None:
        self.stats.requestEnded(_Exchange(service, self.clock.seconds() - duration, code, cache))

    def test_isAnObserver(self) -> None:
        self.assertTrue(IRequestObserver.providedBy(self.stats))

    def test_empty(self) -> None:
        """
        A service with no request: zero rate, no latency, no error rate or
        cache ratio, a window of empty points.
        """
        summary = self.stats.summary("web")
        self.assertEqual(
            {k: v for k, v in summary.items() if k != "series"},
            {"requests": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None, "error_rate": None, "cache_hit_ratio": None},
        )
        self.assertEqual(len(summary["series"]), WINDOW_BUCKETS)

    def test_rateLatencyErrors(self) -> None:
        """
        Requests over a minute: the rate is over the last minute, p50 and
        p99 come from the histogram (within a bin), the error rate is the
        share of 5xx.
        """
        for second in range(60):
            for _ in range(2):
                self.request(duration=0.010)
            if second % 10 == 0:
                self.request(duration=0.500, code=502)
            self.clock.advance(1)
        summary = self.stats.summary("web")
        self.assertEqual(summary["requests"], 126)
        self.assertAlmostEqual(summary["rps"], 126 / 60, places=2)
        self.assertTrue(10.0 <= summary["p50_ms"] < 10.0 * 1.19, summary["p50_ms"])
        self.assertTrue(500.0 <= summary["p99_ms"] < 500.0 * 1.19, summary["p99_ms"])
        self.assertAlmostEqual(summary["error_rate"], 6 / 126, places=4)
        points = [p for p in summary["series"] if p["p50_ms"] is not None]
        self.assertEqual(len(points), 6)
        self.assertEqual([p["errors"] for p in points], [1] * 6)
        self.assertEqual([p["time"] for p in points], [START + i * BUCKET_SECONDS for i in range(6)])

    def test_windowRollsOver(self) -> None:
        """
        Requests older than the window are forgotten; the ring's slots are
        reused for new buckets.
        """
        self.request(code=500)
        self.clock.advance(BUCKET_SECONDS * WINDOW_BUCKETS)
        summary = self.stats.summary("web")
        self.assertEqual(summary["requests"], 0)
        self.assertIsNone(summary["error_rate"])
        self.request()
        summary = self.stats.summary("web")
        self.assertEqual((summary["requests"], summary["error_rate"]), (1, 0.0))

    def test_rateOverTheLastMinuteOnly(self) -> None:
        """
        The rate counts only about the last minute; older requests stay in
        the latency and error figures.
        """
        for _ in range(100):
            self.request()
        self.clock.advance(120)
        summary = self.stats.summary("web")
        self.assertEqual((summary["requests"], summary["rps"]), (100, 0.0))

    def test_perServiceAndUnrouted(self) -> None:
        """
        Each service counts its own; requests no service matched count
        under C{""}; L{LiveStats.forget} drops removed services.
        """
        self.request("web")
        self.request("api")
        self.request("api")
        self.request(None, code=404)
        self.assertEqual(self.stats.summary("web")["requests"], 1)
        self.assertEqual(self.stats.summary("api")["requests"], 2)
        self.assertEqual(self.stats.summary("")["requests"], 1)
        self.stats.forget({"web"})
        self.assertEqual(self.stats.summary("api")["requests"], 0)
        self.assertEqual(self.stats.summary("")["requests"], 1)

    def test_cacheHitRatio(self) -> None:
        """
        The cache hit ratio is over requests the cache had a say on; with
        no cache field at all it stays unknown.
        """
        self.request(cache="hit")
        self.request(cache="miss")
        self.request(cache="hit")
        self.request()
        self.assertAlmostEqual(self.stats.summary("web")["cache_hit_ratio"], 2 / 3, places=4)

    def test_statusOverridesCode(self) -> None:
        """
        The exchange's own status (a 499 for a client gone) wins over the
        response code.
        """
        exchange = _Exchange("web", START, code=502)
        exchange.status = 499
        self.stats.requestEnded(exchange)
        self.assertEqual(self.stats.summary("web")["error_rate"], 0.0)


class PercentileTests(SynchronousTestCase):
    def test_percentile(self) -> None:
        histogram = [0] * (len(BOUNDS) + 1)
        histogram[3] = 99
        histogram[40] = 1
        self.assertEqual(percentile(histogram, 100, 0.5), BOUNDS[3])
        self.assertEqual(percentile(histogram, 100, 0.99), BOUNDS[3])
        self.assertEqual(percentile(histogram, 100, 1.0), BOUNDS[40])
        self.assertIsNone(percentile(histogram, 0, 0.5))

    def test_longerThanTheLastBound(self) -> None:
        histogram = [0] * (len(BOUNDS) + 1)
        histogram[-1] = 1
        self.assertGreater(percentile(histogram, 1, 0.5), BOUNDS[-1])  # type: ignore[operator]
