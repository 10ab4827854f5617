"""
Tests for L{kamalproxy.cache.directives}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.directives import INVALID, MAX_DELTA, CacheControl


class CacheControlTests(SynchronousTestCase):
    """
    C{Cache-Control} read strictly (RFC 9111 §5.2).
    """

    def test_namesCaseInsensitive(self) -> None:
        control = CacheControl([b"Public, MAX-AGE=60"])
        self.assertIn("public", control)
        self.assertEqual(control.seconds("max-age"), 60)

    def test_quotedValues(self) -> None:
        """
        Quoted arguments are unquoted (with quoted-pairs); a quoted
        delta-seconds is accepted; commas inside quotes do not split.
        """
        control = CacheControl([b'private="set-cookie, x-a", max-age="30", ext="a\\"b"'])
        self.assertEqual(control.directives["private"], "set-cookie, x-a")
        self.assertEqual(control.seconds("max-age"), 30)
        self.assertEqual(control.directives["ext"], 'a"b')

    def test_severalFields(self) -> None:
        control = CacheControl([b"no-cache", b"s-maxage=5"])
        self.assertIn("no-cache", control)
        self.assertEqual(control.seconds("s-maxage"), 5)

    def test_duplicates(self) -> None:
        """
        The same directive twice with the same value is fine; with
        different values its value cannot be used.
        """
        self.assertEqual(CacheControl([b"max-age=5, max-age=5"]).seconds("max-age"), 5)
        self.assertEqual(CacheControl([b"max-age=5", b"max-age=6"]).seconds("max-age"), INVALID)

    def test_invalidValues(self) -> None:
        for value in (b"max-age=-1", b"max-age=abc", b"max-age", b"max-age=1.5", b"max-age=", b'max-age="5'):
            self.assertEqual(CacheControl([value]).seconds("max-age"), INVALID, value)

    def test_absent(self) -> None:
        self.assertIsNone(CacheControl([b"public"]).seconds("max-age"))

    def test_huge(self) -> None:
        self.assertEqual(CacheControl([b"max-age=99999999999999999999"]).seconds("max-age"), MAX_DELTA)

    def test_garbageSkipped(self) -> None:
        """
        A malformed member is skipped; the others still count.
        """
        control = CacheControl([b"=junk, , public ,max-age=10 extra, no-store"])
        self.assertIn("public", control)
        self.assertIn("no-store", control)
        self.assertEqual(control.seconds("max-age"), INVALID)

    def test_spacesAroundEquals(self) -> None:
        self.assertEqual(CacheControl([b"max-age = 7"]).seconds("max-age"), 7)

    def test_of(self) -> None:
        control = CacheControl.of([(b"CACHE-CONTROL", b"no-store"), (b"Other", b"public")])
        self.assertEqual(control.directives, {"no-store": None})


class TargetedTests(SynchronousTestCase):
    def test_cdnCacheControlWins(self) -> None:
        """
        C{CDN-Cache-Control} replaces C{Cache-Control} for this cache.
        """
        headers = [(b"Cache-Control", b"no-store"), (b"CDN-Cache-Control", b"max-age=60")]
        self.assertEqual(CacheControl.forResponse(headers).directives, {"max-age": "60"})
        self.assertEqual(CacheControl.forResponse(headers[:1]).directives, {"no-store": None})

    def test_invalidTargetedIgnored(self) -> None:
        """
        A C{CDN-Cache-Control} that is not a valid structured field, or
        whose C{max-age} is not an integer, is ignored.
        """
        for value in (b"max-age=10000, &&&&&", b'max-age="10000"', b"max-age=1.5"):
            headers = [(b"Cache-Control", b"no-store"), (b"CDN-Cache-Control", value)]
            self.assertEqual(CacheControl.forResponse(headers).directives, {"no-store": None}, value)
        headers = [(b"CDN-Cache-Control", b"max-age=60, private;x=1, stale-if-error=5")]
        self.assertEqual(CacheControl.forResponse(headers).seconds("max-age"), 60)
