"""
Tests for L{kamalproxy.cache.freshness}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.directives import CacheControl
from kamalproxy.cache.freshness import (
    HEURISTIC_MAXIMUM,
    ageValue,
    correctedInitialAge,
    freshnessLifetime,
    notStorableBecause,
    varyNames,
)

DATE = 1700000000.0
HTTP_DATE = b"Tue, 14 Nov 2023 22:13:20 GMT"


def lifetime(*headers: tuple[bytes, bytes], status: int = 200) -> float:
    raw = list(headers)
    return freshnessLifetime(CacheControl.of(raw), raw, DATE, status)


def why(*headers: tuple[bytes, bytes], status: int = 200, request: bytes = b"", authorized: bool = False, method: bytes = b"GET") -> object:
    raw = list(headers)
    return notStorableBecause(method, status, CacheControl([request]), CacheControl.of(raw), authorized, raw)


class LifetimeTests(SynchronousTestCase):
    """
    s-maxage > max-age > Expires − Date > heuristic.
    """

    def test_order(self) -> None:
        cc = b"Cache-Control"
        self.assertEqual(lifetime((cc, b"max-age=10, s-maxage=20")), 20)
        self.assertEqual(lifetime((cc, b"max-age=10"), (b"Expires", b"Tue, 14 Nov 2023 23:13:20 GMT")), 10)
        self.assertEqual(lifetime((b"Expires", b"Tue, 14 Nov 2023 23:13:20 GMT")), 3600)

    def test_invalidIsStale(self) -> None:
        self.assertEqual(lifetime((b"Cache-Control", b"max-age=abc")), 0)
        self.assertEqual(lifetime((b"Cache-Control", b"max-age=5, max-age=50")), 0)
        self.assertEqual(lifetime((b"Expires", b"0")), 0)
        self.assertEqual(lifetime((b"Expires", b"Tue, 14 Nov 2023 23:13:20 GMT"), (b"Expires", b"Tue, 14 Nov 2023 23:14:20 GMT")), 0)

    def test_heuristic(self) -> None:
        """
        10 % of the time since Last-Modified, at most a day, only for
        heuristically cacheable statuses, never with explicit freshness.
        """
        tenDaysAgo = (b"Last-Modified", b"Sat, 04 Nov 2023 22:13:20 GMT")
        self.assertEqual(lifetime(tenDaysAgo), 86400)
        hourAgo = (b"Last-Modified", b"Tue, 14 Nov 2023 21:13:20 GMT")
        self.assertEqual(lifetime(hourAgo), 360)
        self.assertEqual(lifetime((b"Last-Modified", b"Sat, 04 Nov 2000 22:13:20 GMT")), HEURISTIC_MAXIMUM)
        self.assertEqual(lifetime(hourAgo, status=302), 0)
        self.assertEqual(lifetime(hourAgo, (b"Cache-Control", b"max-age=0")), 0)
        self.assertEqual(lifetime(), 0)


class StorableTests(SynchronousTestCase):
    """
    What a shared cache may store (RFC 9111 §3).
    """

    def test_storable(self) -> None:
        self.assertIsNone(why((b"Cache-Control", b"max-age=60")))
        self.assertIsNone(why())  # 200 is heuristically cacheable
        self.assertIsNone(why((b"Cache-Control", b"max-age=60"), status=302))
        self.assertIsNone(why((b"Cache-Control", b"s-maxage=60"), authorized=True))
        self.assertIsNone(why((b"Cache-Control", b"must-revalidate"), authorized=True))

    def test_notStorable(self) -> None:
        cc = b"Cache-Control"
        self.assertEqual(why(method=b"HEAD"), "method")
        self.assertEqual(why(method=b"POST"), "method")
        self.assertEqual(why(status=206), "status")
        self.assertEqual(why(status=304), "status")
        self.assertEqual(why(status=302), "status")
        self.assertEqual(why((cc, b"no-store, max-age=5")), "no-store")
        self.assertEqual(why(request=b"no-store"), "no-store")
        self.assertEqual(why((cc, b"public, private")), "private")
        self.assertEqual(why((cc, b"max-age=60"), authorized=True), "authorization")
        self.assertEqual(why((cc, b"public"), (b"Set-Cookie", b"a=b")), "set-cookie")
        self.assertEqual(why((cc, b"public"), (b"Vary", b"accept, *")), "vary")

    def test_varyNames(self) -> None:
        self.assertEqual(varyNames([(b"Vary", b"Accept-Language ,ACCEPT"), (b"vary", b"accept-language")]), (b"accept", b"accept-language"))


class AgeTests(SynchronousTestCase):
    """
    RFC 9111 §4.2.3.
    """

    def test_apparentAge(self) -> None:
        self.assertEqual(correctedInitialAge(0, DATE - 30, DATE, DATE), 30)

    def test_ageAndDelay(self) -> None:
        self.assertEqual(correctedInitialAge(10, DATE, DATE - 2, DATE), 12)

    def test_clockSkewIgnored(self) -> None:
        self.assertEqual(correctedInitialAge(0, DATE + 100, DATE, DATE), 0)

    def test_ageValue(self) -> None:
        self.assertEqual(ageValue([(b"Age", b"15")]), 15)
        self.assertEqual(ageValue([(b"Age", b"-1")]), 0)
        self.assertEqual(ageValue([]), 0)


class AgeListTests(SynchronousTestCase):
    def test_firstMember(self) -> None:
        """
        An C{Age} line holding a list counts as its first member.
        """
        self.assertEqual(ageValue([(b"Age", b"7200, 0")]), 7200)
        self.assertEqual(ageValue([(b"Age", b"0, 7200")]), 0)
