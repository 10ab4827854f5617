"""
Tests for L{kamalproxy.pipeline.cookiescope}: C{--scope-cookie-paths}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.pipeline.cookiescope import scopedPath, scopedSetCookie

from ._proxy import StageProxy


class ScopedSetCookieTests(SynchronousTestCase):
    """
    L{scopedSetCookie} on single values (the original's cases, and more).
    """

    def scoped(self, value: bytes, prefix: bytes = b"/api", host: bytes = b"example.com") -> bytes:
        return scopedSetCookie(value, prefix, host)

    def test_paths(self) -> None:
        """
        The path goes under the prefix: C{/} and none become the prefix,
        others are joined to it.
        """
        self.assertEqual(self.scoped(b"session=abc; Path=/"), b"session=abc; Path=/api")
        self.assertEqual(self.scoped(b"session=abc; Path=/admin"), b"session=abc; Path=/api/admin")
        self.assertEqual(self.scoped(b"session=abc"), b"session=abc; Path=/api")
        self.assertEqual(self.scoped(b"s=1; path=/a/b/; HttpOnly", b"/app"), b"s=1; Path=/app/a/b; HttpOnly")

    def test_otherAttributesKept(self) -> None:
        """
        The other attributes keep their place and spelling; of several
        C{Path} attributes the last counts and only one remains.
        """
        self.assertEqual(
            self.scoped(b"id=7; Path=/x; Secure; Path=/y; SameSite=Lax; Max-Age=60"),
            b"id=7; Secure; Path=/api/y; SameSite=Lax; Max-Age=60",
        )

    def test_domains(self) -> None:
        """
        A cookie for the request's host (its name, any case, with or
        without a leading dot) is scoped; one for another domain, a parent
        or a subdomain is not.
        """
        self.assertEqual(self.scoped(b"a=1; Path=/; Domain=example.com"), b"a=1; Path=/api; Domain=example.com")
        self.assertEqual(self.scoped(b"a=1; Domain=.Example.COM"), b"a=1; Domain=.Example.COM; Path=/api")
        for domain in (b"other.com", b"sub.example.com"):
            value = b"t=x; Path=/; Domain=" + domain
            self.assertEqual(self.scoped(value), value)
        value = b"t=x; Path=/; Domain=example.com"
        self.assertEqual(self.scoped(value, host=b"sub.example.com"), value)

    def test_notACookie(self) -> None:
        """
        A value without a C{name=value} pair is left alone.
        """
        for value in (b"garbage", b"=novalue; Path=/", b""):
            self.assertEqual(self.scoped(value), value)

    def test_cleanPath(self) -> None:
        """
        The joined path is clean: no double slashes, no C{..} climbing out.
        """
        self.assertEqual(scopedPath(b"/app", b"//a//b"), b"/app/a/b")
        self.assertEqual(scopedPath(b"/app", b"/../../etc"), b"/etc")
        self.assertEqual(scopedPath(b"/app/", b""), b"/app")


class StageTests(SynchronousTestCase):
    """
    The stage in the real chain.
    """

    def setCookies(self, scope: bool, prefixes: list[str], path: bytes) -> list[bytes]:
        proxy = StageProxy(
            self,
            {"service": {"path_prefixes": prefixes}, "target": {"scope_cookie_paths": scope}},
        )
        client = proxy.request(path)
        proxy.respond(
            b"Set-Cookie: session=secret; Path=/something; HttpOnly\r\n"
            b"Set-Cookie: other=1; Path=/; Domain=other.com\r\n"
        )
        return [line for line in client.value().split(b"\r\n") if line.lower().startswith(b"set-cookie:")]

    def test_scoped(self) -> None:
        """
        With the flag, a prefixed service's own cookies get paths under
        the prefix it matched; another domain's cookie is untouched.
        """
        self.assertEqual(
            self.setCookies(True, ["/api", "/app"], b"/app/page"),
            [b"Set-Cookie: session=secret; Path=/app/something; HttpOnly", b"Set-Cookie: other=1; Path=/; Domain=other.com"],
        )

    def test_offOrRoot(self) -> None:
        """
        Without the flag, or for a service at C{/}, cookies pass unchanged.
        """
        unchanged = [b"Set-Cookie: session=secret; Path=/something; HttpOnly", b"Set-Cookie: other=1; Path=/; Domain=other.com"]
        self.assertEqual(self.setCookies(False, ["/app"], b"/app/page"), unchanged)
        self.assertEqual(self.setCookies(True, ["/"], b"/page"), unchanged)
