"""
Tests for L{kamalproxy.http.fields}.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.http.fields import clientHost, connectionTokens, directiveNames, firstValue, headerValues, tokensOf


class FieldsTests(SynchronousTestCase):
    """
    The shared field rules.
    """

    def test_connectionTokens(self) -> None:
        """
        Tokens are split on commas, trimmed and lower-cased, across all
        values; no values give no tokens.
        """
        self.assertEqual(connectionTokens([b"Keep-Alive, X-Foo", b" close "]), {b"keep-alive", b"x-foo", b"close"})
        self.assertEqual(connectionTokens(None), frozenset())
        self.assertNotIn(b"close", tokensOf(b"closed"))

    def test_directiveNames(self) -> None:
        """
        The members of a C{Cache-Control} or C{Pragma} value are named
        without their arguments, lower-cased; a name is a whole member, not
        part of one.
        """
        self.assertEqual(
            directiveNames(b'Public, max-age=60, private="Set-Cookie", NO-CACHE'),
            {b"public", b"max-age", b"private", b"no-cache"},
        )
        self.assertNotIn(b"no-cache", directiveNames(b"x-no-cache"))
        self.assertNotIn(b"no-cache", directiveNames(b"no-cache-ish"))

    def test_lookups(self) -> None:
        """
        Values of a field in a list of C{(name, value)} pairs, whatever the
        case of its name: all of them in order, or the first.
        """
        headers = [(b"Vary", b"a"), (b"vary", b"b")]
        self.assertEqual(headerValues(headers, b"vary"), [b"a", b"b"])
        self.assertEqual(firstValue(headers, b"vary"), b"a")
        self.assertIsNone(firstValue(headers, b"etag"))
        self.assertEqual(headerValues(headers, b"etag"), [])

    def test_clientHost(self) -> None:
        """
        An IPv4-mapped IPv6 address is reported as IPv4; a real IPv6 or
        IPv4 address as it is; an address without a host as C{""}.
        """
        self.assertEqual(clientHost(IPv6Address("TCP", "::ffff:10.1.2.3", 1)), "10.1.2.3")
        self.assertEqual(clientHost(IPv6Address("TCP", "2001:db8::1", 1)), "2001:db8::1")
        self.assertEqual(clientHost(IPv4Address("TCP", "192.0.2.1", 1)), "192.0.2.1")
        self.assertEqual(clientHost(UNIXAddress(b"/s")), "")
        self.assertEqual(clientHost(None), "")
