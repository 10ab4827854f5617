"""
Tests for L{kamalproxy.routing.table}: which service answers a host and path.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.routing.table import RoutingTable, requestHost, strippedPath


def _table(*bindings: tuple[str, str, str]) -> RoutingTable[str]:
    return RoutingTable(bindings)


class HostLookupTests(SynchronousTestCase):
    """
    Hosts are matched exactly, then as a one-label wildcard, then as the
    default binding.
    """

    def setUp(self) -> None:
        self.table = _table(
            ("example.com", "/", "exact"),
            ("*.example.com", "/", "wildcard"),
            ("", "/", "default"),
        )

    def test_exact(self) -> None:
        """
        An exactly bound host gets its service and the prefix it matched.
        """
        self.assertEqual(self.table.lookup(b"example.com", b"/x"), ("exact", b"/"))

    def test_exactBeatsWildcard(self) -> None:
        """
        An exact binding wins over a wildcard that would also match.
        """
        table = _table(("*.example.com", "/", "wildcard"), ("a.example.com", "/", "exact"))
        self.assertEqual(table.lookup(b"a.example.com", b"/"), ("exact", b"/"))

    def test_wildcardOneLabel(self) -> None:
        """
        C{*.example.com} matches a host one label below C{example.com}.
        """
        self.assertEqual(self.table.lookup(b"a.example.com", b"/"), ("wildcard", b"/"))

    def test_wildcardNotDeeper(self) -> None:
        """
        C{*.example.com} does not match C{a.b.example.com}: that falls to
        the default.
        """
        self.assertEqual(self.table.lookup(b"a.b.example.com", b"/"), ("default", b"/"))

    def test_wildcardNotApex(self) -> None:
        """
        C{*.example.com} does not match C{example.com} itself.
        """
        table = _table(("*.example.com", "/", "wildcard"))
        self.assertIsNone(table.lookup(b"example.com", b"/"))
        table = _table(("*.example.com", "/", "wildcard"), ("", "/", "default"))
        self.assertEqual(table.lookup(b"example.com", b"/"), ("default", b"/"))

    def test_default(self) -> None:
        """
        A host nobody claims goes to the default binding; without one,
        nothing answers.
        """
        self.assertEqual(self.table.lookup(b"other.org", b"/"), ("default", b"/"))
        self.assertEqual(self.table.lookup(b"", b"/"), ("default", b"/"))
        self.assertIsNone(_table(("example.com", "/", "exact")).lookup(b"other.org", b"/"))

    def test_hostsCaseInsensitive(self) -> None:
        """
        Bindings are stored lower-cased, so a mixed-case binding matches the
        lower-cased request host.
        """
        table = _table(("Example.COM", "/", "exact"))
        self.assertEqual(table.lookup(b"example.com", b"/"), ("exact", b"/"))

    def test_noFallThroughFromExactHost(self) -> None:
        """
        When a host is bound but none of its prefixes match, the request is
        not routed to the default binding.
        """
        table = _table(("example.com", "/api", "api"), ("", "/", "default"))
        self.assertIsNone(table.lookup(b"example.com", b"/other"))
        self.assertEqual(table.lookup(b"other.org", b"/other"), ("default", b"/"))

    def test_noFallThroughFromWildcard(self) -> None:
        """
        A wildcard host whose prefixes do not match does not fall to the
        default either.
        """
        table = _table(("*.example.com", "/api", "api"), ("", "/", "default"))
        self.assertIsNone(table.lookup(b"a.example.com", b"/other"))


class PathPrefixTests(SynchronousTestCase):
    """
    Within a host, the longest prefix matching on a segment boundary wins.
    """

    def test_longestPrefixWins(self) -> None:
        """
        C{/api/v2} wins over C{/api} and C{/} for paths below it, whatever
        order they were bound in.
        """
        table = _table(
            ("h", "/", "root"),
            ("h", "/api", "api"),
            ("h", "/api/v2", "v2"),
        )
        self.assertEqual(table.lookup(b"h", b"/api/v2/users"), ("v2", b"/api/v2"))
        self.assertEqual(table.lookup(b"h", b"/api/v1/users"), ("api", b"/api"))
        self.assertEqual(table.lookup(b"h", b"/else"), ("root", b"/"))

    def test_segmentBoundary(self) -> None:
        """
        C{/api} matches C{/api}, C{/api/} and C{/api/x}, but not C{/apiary}.
        """
        table = _table(("h", "/api", "api"))
        self.assertEqual(table.lookup(b"h", b"/api"), ("api", b"/api"))
        self.assertEqual(table.lookup(b"h", b"/api/"), ("api", b"/api"))
        self.assertEqual(table.lookup(b"h", b"/api/x"), ("api", b"/api"))
        self.assertIsNone(table.lookup(b"h", b"/apiary"))
        self.assertIsNone(table.lookup(b"h", b"/"))

    def test_rootMatchesEverything(self) -> None:
        """
        The C{/} prefix matches every path.
        """
        table = _table(("h", "/", "root"))
        for path in (b"/", b"/a", b"/a/b/", b"//x"):
            self.assertEqual(table.lookup(b"h", path), ("root", b"/"), path)

    def test_emptyTable(self) -> None:
        """
        An empty table routes nothing.
        """
        self.assertIsNone(RoutingTable().lookup(b"h", b"/"))


class OwnerTests(SynchronousTestCase):
    """
    L{RoutingTable.owner} finds the service bound to an exact host and
    prefix.
    """

    def test_owner(self) -> None:
        """
        The service bound to exactly C{(host, prefix)} is returned; a
        different prefix or host has no owner.
        """
        table = _table(("example.com", "/api", "api"), ("", "/", "default"))
        self.assertEqual(table.owner("example.com", "/api"), "api")
        self.assertEqual(table.owner("EXAMPLE.com", "/api"), "api")
        self.assertEqual(table.owner("", "/"), "default")
        self.assertIsNone(table.owner("example.com", "/"))
        self.assertIsNone(table.owner("example.com", "/api/v2"))
        self.assertIsNone(table.owner("other.org", "/api"))

    def test_ownerNoWildcardMatching(self) -> None:
        """
        L{RoutingTable.owner} compares bindings, it does not route: a host
        covered by a wildcard has no owner of its own.
        """
        table = _table(("*.example.com", "/", "wildcard"))
        self.assertEqual(table.owner("*.example.com", "/"), "wildcard")
        self.assertIsNone(table.owner("a.example.com", "/"))


class RequestHostTests(SynchronousTestCase):
    """
    L{requestHost} turns a C{Host} header into a table key.
    """

    def test_portStripped(self) -> None:
        """
        The port is removed.
        """
        self.assertEqual(requestHost(b"example.com:8080"), b"example.com")

    def test_lowerCased(self) -> None:
        """
        The host is lower-cased.
        """
        self.assertEqual(requestHost(b"Example.COM"), b"example.com")
        self.assertEqual(requestHost(b"WWW.Example.com:443"), b"www.example.com")

    def test_ipv6Literal(self) -> None:
        """
        An IPv6 literal keeps its brackets and colons; only the port after
        the closing bracket is removed.
        """
        self.assertEqual(requestHost(b"[::1]:8080"), b"[::1]")
        self.assertEqual(requestHost(b"[2001:DB8::1]"), b"[2001:db8::1]")

    def test_missing(self) -> None:
        """
        A missing or empty header gives the empty (default) host.
        """
        self.assertEqual(requestHost(None), b"")
        self.assertEqual(requestHost(b""), b"")


class StrippedPathTests(SynchronousTestCase):
    """
    L{strippedPath} removes the matched prefix from a path.
    """

    def test_stripped(self) -> None:
        """
        The prefix is removed, leaving the rest of the path.
        """
        self.assertEqual(strippedPath(b"/api/users/1", b"/api"), b"/users/1")

    def test_nothingLeft(self) -> None:
        """
        When the path is the prefix, C{/} is left.
        """
        self.assertEqual(strippedPath(b"/api", b"/api"), b"/")
        self.assertEqual(strippedPath(b"/api/", b"/api"), b"/")

    def test_rootPrefix(self) -> None:
        """
        The C{/} prefix strips nothing.
        """
        self.assertEqual(strippedPath(b"/a/b", b"/"), b"/a/b")
