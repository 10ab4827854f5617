"""
Tests for L{kamalproxy.compress.negotiate}: C{Accept-Encoding} read as RFC
9110 section 12.5.3 says, and the coding chosen from it.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.compress.negotiate import chooseCoding, codingFor, parseAcceptEncoding, parseQuality


def choose(value: str) -> object:
    return chooseCoding(parseAcceptEncoding(value))


class ParseTests(SynchronousTestCase):
    """
    L{parseAcceptEncoding} and L{parseQuality}.
    """

    def test_weights(self) -> None:
        """
        Names are lower-cased, weights default to 1, C{x-gzip} is gzip,
        whitespace around C{;} and C{=} is allowed, the first mention wins.
        """
        self.assertEqual(
            parseAcceptEncoding("GZip;q=0.5, br , zstd ; Q = 0.25,x-gzip;q=1,*;q=0"),
            {"gzip": 0.5, "br": 1.0, "zstd": 0.25, "*": 0.0},
        )

    def test_invalidElementsIgnored(self) -> None:
        """
        An element with a weight that is no qvalue (over 1, four decimals,
        not a number, another parameter) is ignored, the others kept.
        """
        for bad in ("q=2", "q=0.1234", "q=abc", "level=1", "q=", "q=-1", "q=1.5"):
            self.assertEqual(parseAcceptEncoding(f"br;{bad}, gzip"), {"gzip": 1.0}, bad)
        self.assertEqual([parseQuality(t) for t in ("0", "1", "0.", "1.000", "0.001")], [0, 1, 0, 1, 0.001])


class ChooseTests(SynchronousTestCase):
    """
    L{chooseCoding} and L{codingFor}.
    """

    def test_tiesPreferZstdThenBrotli(self) -> None:
        """
        Equal weights go to zstd, then brotli, then gzip, whatever the
        order the client listed them in.
        """
        self.assertEqual(choose("gzip, deflate, br, zstd"), "zstd")
        self.assertEqual(choose("gzip, br"), "br")
        self.assertEqual(choose("gzip, deflate"), "gzip")
        self.assertEqual(choose("gzip;q=0.8, br;q=0.8"), "br")

    def test_highestWeightWins(self) -> None:
        """
        A higher weight beats the preference order.
        """
        self.assertEqual(choose("zstd;q=0.5, gzip"), "gzip")
        self.assertEqual(choose("zstd;q=0.5, br;q=0.9, gzip;q=0.7"), "br")

    def test_zeroExcludes(self) -> None:
        """
        C{q=0} makes a coding unacceptable; nothing acceptable is identity.
        """
        self.assertEqual(choose("zstd;q=0, gzip"), "gzip")
        self.assertIsNone(choose("gzip;q=0"))
        self.assertIsNone(choose("deflate, compress"))
        self.assertIsNone(choose(""))

    def test_star(self) -> None:
        """
        C{*} gives its weight to every coding not listed.
        """
        self.assertEqual(choose("*"), "zstd")
        self.assertEqual(choose("zstd;q=0, *"), "br")
        self.assertEqual(choose("gzip, *;q=0"), "gzip")
        self.assertIsNone(choose("*;q=0"))

    def test_identity(self) -> None:
        """
        Identity wins only with a strictly higher weight than the best
        coding.
        """
        self.assertIsNone(choose("gzip;q=0.5, identity"))
        self.assertEqual(choose("gzip, identity"), "gzip")
        self.assertEqual(choose("gzip;q=0.1, identity;q=0"), "gzip")

    def test_codingForRawValues(self) -> None:
        """
        L{codingFor} takes the raw field values (several lines joined), and
        no field means identity; a repeated value gets the same answer.
        """
        self.assertIsNone(codingFor(None))
        self.assertIsNone(codingFor([]))
        self.assertEqual(codingFor([b"gzip", b"br"]), "br")
        self.assertEqual(codingFor([b"gzip, br, zstd"]), "zstd")
        self.assertEqual(codingFor([b"gzip, br, zstd"]), "zstd")
