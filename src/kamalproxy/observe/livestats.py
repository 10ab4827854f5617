# -*- test-case-name: tests.observe.test_livestats -*-
"""
Rolling-window request statistics per service, for the status page and
C{kamal-proxy status}: requests per second, p50/p99 latency, the share of
5xx answers and the cache hit ratio, over the last few minutes.

Time is cut into buckets (L{BUCKET_SECONDS} each, L{WINDOW_BUCKETS} of
them kept); each bucket counts requests, errors and cache lookups, and
keeps a fixed log-scale histogram of durations (L{BOUNDS}), from which
percentiles are read with at most one bucket's relative error (about 19 %).
Counting a request is a few plain integer increments and one C{bisect}:
cheap enough for the hot path.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Optional

from zope.interface import implementer

from kamalproxy.interfaces import IRequestObserver

BUCKET_SECONDS = 10
WINDOW_BUCKETS = 30  # five minutes
RATE_BUCKETS = 6  # requests per second over about the last minute

BOUNDS: tuple[float, ...] = tuple(0.0001 * 2 ** (i / 4) for i in range(80))
"""
Upper bounds (seconds) of the duration histogram's bins: 100 µs doubling
every four bins, up to about 100 s; longer ones go in one last bin.
"""

_CACHE_HITS = frozenset({"hit", "HIT", "Hit"})


class _Bucket:
    """
    What happened in one time slot of one service.
    """

    __slots__ = ("slot", "count", "errors", "lookups", "hits", "histogram")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.count = 0
        self.errors = 0
        self.lookups = 0
        self.hits = 0
        self.histogram = [0] * (len(BOUNDS) + 1)


class _Series:
    """
    One service's buckets: a ring of L{WINDOW_BUCKETS}, the newest
    L{current}.
    """

    __slots__ = ("ring", "current")

    def __init__(self, slot: int) -> None:
        self.current = _Bucket(slot)
        self.ring: list[Optional[_Bucket]] = [None] * WINDOW_BUCKETS
        self.ring[slot % WINDOW_BUCKETS] = self.current

    def advance(self, slot: int) -> _Bucket:
        bucket = self.current = _Bucket(slot)
        self.ring[slot % WINDOW_BUCKETS] = bucket
        return bucket

    def window(self, slot: int) -> list[Optional[_Bucket]]:
        """
        The buckets of the window ending at C{slot}, oldest first, L{None}
        for slots with no request.
        """
        shown: list[Optional[_Bucket]] = []
        for s in range(slot - WINDOW_BUCKETS + 1, slot + 1):
            bucket = self.ring[s % WINDOW_BUCKETS]
            shown.append(bucket if bucket is not None and bucket.slot == s else None)
        return shown


def percentile(histogram: list[int], total: int, fraction: float) -> Optional[float]:
    """
    The C{fraction} percentile (seconds) of the durations counted in
    C{histogram}: the upper bound of the bin it falls in; L{None} with no
    request.
    """
    if total <= 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return BOUNDS[index] if index < len(BOUNDS) else BOUNDS[-1] * 2
    return BOUNDS[-1] * 2


def _milliseconds(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000, 3)


def _ratio(part: int, whole: int) -> Optional[float]:
    return round(part / whole, 4) if whole else None


@implementer(IRequestObserver)
class LiveStats:
    """
    Counts every request that ends, per service name (C{""}: no service
    matched), in a rolling window.
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._series: dict[str, _Series] = {}

    def requestStarted(self, exchange: Any) -> None:
        pass

    def requestEnded(self, exchange: Any) -> None:
        now = self._clock.seconds()
        service = exchange.service
        name = service.name if service is not None else ""
        slot = int(now // BUCKET_SECONDS)
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _Series(slot)
        bucket = series.current
        if bucket.slot != slot:
            bucket = series.advance(slot)
        bucket.count += 1
        status = exchange.status or exchange.request.code
        if status >= 500:
            bucket.errors += 1
        bucket.histogram[bisect_left(BOUNDS, now - (exchange.started or now))] += 1
        cache = getattr(exchange, "cacheStatus", None)
        if cache is not None:
            bucket.lookups += 1
            if cache in _CACHE_HITS:
                bucket.hits += 1

    def forget(self, keep: set[str]) -> None:
        """
        Drop the statistics of services not in C{keep} (removed ones);
        unrouted requests are kept.
        """
        for name in list(self._series):
            if name and name not in keep:
                del self._series[name]

    def summary(self, name: str) -> dict[str, Any]:
        """
        Service C{name}'s statistics over the window, as C{/status.json}
        shows them (see the README): totals, then C{series}, one point
        per bucket, oldest first.
        """
        now = self._clock.seconds()
        slot = int(now // BUCKET_SECONDS)
        series = self._series.get(name)
        buckets = series.window(slot) if series is not None else [None] * WINDOW_BUCKETS
        histogram = [0] * (len(BOUNDS) + 1)
        count = errors = lookups = hits = recent = 0
        points = []
        for offset, bucket in enumerate(buckets):
            start = (slot - WINDOW_BUCKETS + 1 + offset) * BUCKET_SECONDS
            if bucket is None:
                points.append({"time": start, "rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0})
                continue
            count += bucket.count
            errors += bucket.errors
            lookups += bucket.lookups
            hits += bucket.hits
            if offset >= WINDOW_BUCKETS - RATE_BUCKETS:
                recent += bucket.count
            for i, n in enumerate(bucket.histogram):
                if n:
                    histogram[i] += n
            span = min(BUCKET_SECONDS, max(now - start, 1.0))
            points.append(
                {
                    "time": start,
                    "rps": round(bucket.count / span, 3),
                    "p50_ms": _milliseconds(percentile(bucket.histogram, bucket.count, 0.5)),
                    "p99_ms": _milliseconds(percentile(bucket.histogram, bucket.count, 0.99)),
                    "errors": bucket.errors,
                }
            )
        rateSpan = max(now - (slot - RATE_BUCKETS + 1) * BUCKET_SECONDS, 1.0)
        return {
            "requests": count,
            "rps": round(recent / rateSpan, 3),
            "p50_ms": _milliseconds(percentile(histogram, count, 0.5)),
            "p99_ms": _milliseconds(percentile(histogram, count, 0.99)),
            "error_rate": _ratio(errors, count),
            "cache_hit_ratio": _ratio(hits, lookups),
            "series": points,
        }


__all__ = ["BOUNDS", "BUCKET_SECONDS", "LiveStats", "WINDOW_BUCKETS", "percentile"]
