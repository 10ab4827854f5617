# -*- test-case-name: tests.routing.test_durations -*-
"""
Tests for L{kamalproxy.routing.durations}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.routing.durations import InvalidDuration, formatDuration, parseDuration


class ParseDurationTests(SynchronousTestCase):
    """
    Tests for L{parseDuration}.
    """

    def test_kamalFormat(self) -> None:
        """
        Kamal's C{"<n>s"} durations are whole seconds.
        """
        self.assertEqual(parseDuration("30s"), 30.0)

    def test_compound(self) -> None:
        """
        Several parts add up, in any unit Go knows.
        """
        self.assertEqual(parseDuration("1m30s"), 90.0)
        self.assertEqual(parseDuration("1h2m3.5s"), 3723.5)
        self.assertEqual(parseDuration("2h45m"), 9900.0)

    def test_subSecondUnits(self) -> None:
        """
        C{ms}, C{us}, both micro signs and C{ns} are understood.
        """
        self.assertAlmostEqual(parseDuration("500ms"), 0.5)
        self.assertAlmostEqual(parseDuration("300ms"), 0.3)
        self.assertAlmostEqual(parseDuration("1us"), 1e-6)
        self.assertAlmostEqual(parseDuration("1\u00b5s"), 1e-6)
        self.assertAlmostEqual(parseDuration("1\u03bcs"), 1e-6)
        self.assertAlmostEqual(parseDuration("1ns"), 1e-9)

    def test_fractions(self) -> None:
        """
        Decimal parts are allowed, with or without digits on either side of
        the point, as Go allows them.
        """
        self.assertEqual(parseDuration("1.5h"), 5400.0)
        self.assertEqual(parseDuration(".5s"), 0.5)
        self.assertEqual(parseDuration("1.s"), 1.0)

    def test_zero(self) -> None:
        """
        A bare C{0} (optionally signed C{+}) is the only unitless duration.
        """
        self.assertEqual(parseDuration("0"), 0.0)
        self.assertEqual(parseDuration("+0"), 0.0)
        self.assertEqual(parseDuration("0s"), 0.0)

    def test_plusSign(self) -> None:
        """
        A leading C{+} is allowed.
        """
        self.assertEqual(parseDuration("+5s"), 5.0)

    def test_invalid(self) -> None:
        """
        Anything Go refuses is refused, with the original text quoted.
        """
        for text in ["", ".", "s", "1", "1m30", "1S", "abc", "1d", "30 s", "1s2"]:
            with self.subTest(text=text):
                e = self.assertRaises(InvalidDuration, parseDuration, text)
                self.assertEqual(str(e), f'invalid duration "{text}"')

    def test_negative(self) -> None:
        """
        Negative durations are refused: no option accepts them.
        """
        self.assertRaises(InvalidDuration, parseDuration, "-1s")

    def test_invalidIsValueError(self) -> None:
        """
        L{InvalidDuration} is a L{ValueError}.
        """
        self.assertTrue(issubclass(InvalidDuration, ValueError))


class FormatDurationTests(SynchronousTestCase):
    """
    Tests for L{formatDuration}.
    """

    def test_seconds(self) -> None:
        """
        Whole and fractional seconds under a minute print as C{<n>s}.
        """
        self.assertEqual(formatDuration(30), "30s")
        self.assertEqual(formatDuration(1.5), "1.5s")

    def test_zero(self) -> None:
        """
        Zero is C{0s}, as Go prints it.
        """
        self.assertEqual(formatDuration(0), "0s")

    def test_minutesAndHours(self) -> None:
        """
        Larger values carry every smaller unit, as Go prints them.
        """
        self.assertEqual(formatDuration(90), "1m30s")
        self.assertEqual(formatDuration(3600), "1h0m0s")
        self.assertEqual(formatDuration(5400.5), "1h30m0.5s")

    def test_subSecond(self) -> None:
        """
        Below a second, milliseconds, then microseconds.
        """
        self.assertEqual(formatDuration(0.5), "500ms")
        self.assertEqual(formatDuration(0.001), "1ms")
        self.assertEqual(formatDuration(0.0000015), "1.5\u00b5s")

    @given(st.integers(min_value=0, max_value=10 * 24 * 3600))
    def test_roundTripWholeSeconds(self, seconds: int) -> None:
        """
        Any whole number of seconds survives formatting and parsing.
        """
        self.assertEqual(parseDuration(formatDuration(seconds)), seconds)

    @given(st.integers(min_value=1, max_value=999))
    def test_roundTripMilliseconds(self, ms: int) -> None:
        """
        Any whole number of milliseconds below a second survives formatting
        and parsing.
        """
        self.assertAlmostEqual(parseDuration(formatDuration(ms / 1000)), ms / 1000)
