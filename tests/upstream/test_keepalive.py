"""
Tests for L{kamalproxy.upstream.keepalive}: how long a pooled target connection may
stay idle (the pool itself: C{tests.upstream.test_client.IdleExpiryTests}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.upstream.keepalive import DEFAULT_IDLE_TIMEOUT, announcedTimeout, idleLimit


class AnnouncedTimeoutTests(SynchronousTestCase):
    """
    L{announcedTimeout} reads C{timeout} from a C{Keep-Alive} value.
    """

    def test_values(self) -> None:
        """
        The C{timeout} parameter is found among others, in any case and
        spacing; decimals are read; a missing, negative or malformed one
        gives L{None}.
        """
        for value, expected in (
            (b"timeout=5", 5.0),
            (b"timeout=5, max=1000", 5.0),
            (b"max=100,Timeout = 15", 15.0),
            (b"timeout=0.25", 0.25),
            (b"max=100", None),
            (b"timeout=", None),
            (b"timeout=abc", None),
            (b"timeout=-1", None),
            (b"timeout=inf", None),
            (b"timeout=nan", None),
            (b"", None),
        ):
            self.assertEqual(announcedTimeout(value), expected, value)


class IdleLimitTests(SynchronousTestCase):
    """
    L{idleLimit} keeps a connection a margin short of its target's timeout.
    """

    def test_limits(self) -> None:
        """
        Nothing announced: the default; else one second less than
        announced, or half of it when that is more.
        """
        self.assertEqual(idleLimit(None), DEFAULT_IDLE_TIMEOUT)
        self.assertEqual(idleLimit(None, 7), 7)
        for announced, limit in ((5, 4), (20, 19), (1.5, 0.75), (1, 0.5), (0, 0)):
            self.assertEqual(idleLimit(announced), limit, announced)
