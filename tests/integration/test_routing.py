"""
Routing by host and path prefix through a real daemon: exact, wildcard and
default hosts on one port, prefix stripping, unknown hosts, and conflicting
deploys.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    Backend,
    Daemon,
    ctl,
    curl,
    deployArgs,
    fetch,
    hasCurl,
    kamalProxy,
    pollUntil,
    startBackend,
    startDaemon,
)


class HostRoutingTests(TestCase):
    """
    Several services on one port, told apart by the C{Host} header.
    """

    timeout = 30

    async def _deploy(self, daemon: Daemon, service: str, backend: Backend, *extra: str) -> None:
        result = await ctl(daemon.socket, *deployArgs(service, backend.address, *extra))
        self.assertEqual((result.code, result.err), (0, ""), f"deploy {service}")

    async def _versionFor(self, daemon: Daemon, host: str, path: str = "/") -> str:
        status, headers, _ = await fetch(daemon.url(path), host=host)
        self.assertEqual(status, 200, f"{host}{path}")
        return headers["x-version"]

    async def test_exactWildcardAndDefaultHosts(self) -> None:
        """
        An exact host, a one-label wildcard and a default service share a
        port: each request goes to the service its C{Host} names (exact
        before wildcard, host names compared case-insensitively); before the
        default service exists an unknown host gets the 404 page, after it
        the default service answers.
        """
        daemon = await startDaemon(self)
        exact = startBackend(self, "exact")
        wildcard = startBackend(self, "wildcard")
        default = startBackend(self, "default")
        await self._deploy(daemon, "exact", exact, "--host=app.example.com")
        await self._deploy(daemon, "wildcard", wildcard, "--host=*.example.org,app.example.org")

        self.assertEqual(await self._versionFor(daemon, "app.example.com"), "exact")
        self.assertEqual(await self._versionFor(daemon, "APP.Example.COM:80"), "exact")
        self.assertEqual(await self._versionFor(daemon, "shop.example.org"), "wildcard")
        self.assertEqual(await self._versionFor(daemon, "app.example.org"), "wildcard")
        for unknown in ("other.test", "a.b.example.org", "example.org"):
            status, _, body = await fetch(daemon.url("/"), host=unknown)
            self.assertEqual(status, 404, unknown)
            self.assertIn(b"404", body)

        await self._deploy(daemon, "default", default)

        self.assertEqual(await self._versionFor(daemon, "other.test"), "default")
        self.assertEqual(await self._versionFor(daemon, "a.b.example.org"), "default")
        self.assertEqual(await self._versionFor(daemon, "127.0.0.1"), "default")
        self.assertEqual(await self._versionFor(daemon, "app.example.com"), "exact")
        self.assertEqual(await self._versionFor(daemon, "x.example.org"), "wildcard")
        self.assertEqual((len(exact.requests), len(wildcard.requests)), (3, 3))

        listing = await ctl(daemon.socket, "list")
        rows = {line.split()[0]: line.split() for line in listing.out.splitlines()[1:]}
        self.assertEqual(rows["default"][1], "*")
        self.assertEqual(rows["exact"][1], "app.example.com")
        self.assertEqual(rows["wildcard"][1], "*.example.org,app.example.org")

    async def test_pathPrefixes(self) -> None:
        """
        C{--path-prefix=/api} strips the prefix (the backend sees C{/x?q=1}
        for C{/api/x?q=1}), C{--strip-path-prefix=false} keeps it, prefixes
        match on segment boundaries, and a host with services has no
        fall-through to the default host's prefixes.
        """
        daemon = await startDaemon(self)
        root = startBackend(self, "root")
        api = startBackend(self, "api")
        raw = startBackend(self, "raw")
        await self._deploy(daemon, "root", root)
        await self._deploy(daemon, "api", api, "--path-prefix=/api")
        await self._deploy(daemon, "raw", raw, "--path-prefix", "/raw", "--strip-path-prefix=false")
        other = startBackend(self, "other")
        await self._deploy(daemon, "other", other, "--host=other.example.com")

        cases = [
            ("/api/x?q=1", "api", "/x?q=1"),
            ("/api", "api", "/"),
            ("/api/", "api", "/"),
            ("/apiary", "root", "/apiary"),
            ("/raw/x?q=1", "raw", "/raw/x?q=1"),
            ("/raw", "raw", "/raw"),
            ("/elsewhere", "root", "/elsewhere"),
        ]
        for path, version, seen in cases:
            status, headers, body = await fetch(daemon.url(path), host="any.test")
            self.assertEqual((status, headers.get("x-version")), (200, version), path)
            self.assertEqual(json.loads(body)["uri"], seen, path)

        status, headers, body = await fetch(daemon.url("/api/x"), host="other.example.com")
        self.assertEqual((status, headers.get("x-version")), (200, "other"))
        self.assertEqual(json.loads(body)["uri"], "/api/x")

        if hasCurl():
            status, body = await curl(daemon.url("/api/from-curl"), "-H", "Host: any.test")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["uri"], "/from-curl")

    async def test_clientAddressAndCookieScope(self) -> None:
        """
        Deployed by the drop-in CLI with C{--client-ip-header} and
        C{--scope-cookie-paths}: the CDN's header becomes the target's
        C{X-Forwarded-For} (the client's own dropped) and the log's
        C{remote_addr}; the app's C{Path=/} cookie comes back scoped to
        C{/app}.
        """
        daemon = await startDaemon(self)
        app = startBackend(self, "app")
        result = await kamalProxy(
            *deployArgs("app", app.address, "--path-prefix=/app", "--scope-cookie-paths",
                        "--client-ip-header=CF-Connecting-IP", "--forward-headers"),
            env={"KAMAL_PROXY_SOCKET": daemon.socket},
        )
        self.assertEqual((result.code, result.err), (0, ""))
        status, headers, _ = await fetch(
            daemon.url("/app/cookie"),
            headers={"CF-Connecting-IP": "203.0.113.9", "X-Forwarded-For": "6.6.6.6"},
        )
        self.assertEqual(status, 200)
        self.assertEqual(headers["set-cookie"], "session=abc; Path=/app; HttpOnly")
        self.assertEqual(app.requests[-1].headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1")
        await pollUntil(lambda: any(line.get("path") == "/app/cookie" for line in daemon.requestLogs()), 10, "the request's log line")
        [line] = [line for line in daemon.requestLogs() if line.get("path") == "/app/cookie"]
        self.assertEqual(line["remote_addr"], "203.0.113.9")

    async def test_conflictingDeployChangesNothing(self) -> None:
        """
        Deploying a host and path another service owns fails with the
        original's message and changes nothing: C{list} and routing are as
        before, and the would-be target is never sent a request.
        """
        daemon = await startDaemon(self)
        owner = startBackend(self, "owner")
        intruder = startBackend(self, "intruder")
        await self._deploy(daemon, "owner", owner, "--host=app.example.com", "--path-prefix=/api")
        before = await ctl(daemon.socket, "list")

        for extra in (["--host=app.example.com", "--path-prefix=/api"], ["--host=x.test,app.example.com", "--path-prefix=/api/"]):
            result = await ctl(daemon.socket, *deployArgs("intruder", intruder.address, *extra))
            self.assertEqual(result.code, 1)
            self.assertEqual(
                result.err.splitlines(), ["Error: host settings conflict with another service"]
            )

        after = await ctl(daemon.socket, "list")
        self.assertEqual(after.out, before.out)
        self.assertNotIn("intruder", after.out)
        status, headers, _ = await fetch(daemon.url("/api/x"), host="app.example.com")
        self.assertEqual((status, headers.get("x-version")), (200, "owner"))
        status, _, _ = await fetch(daemon.url("/api/x"), host="x.test")
        self.assertEqual(status, 404)
        self.assertEqual(intruder.requests, [])

        # The same host on another prefix is no conflict.
        await self._deploy(daemon, "intruder", intruder, "--host=app.example.com", "--path-prefix=/other")
        self.assertEqual(await self._versionFor(daemon, "app.example.com", "/other/x"), "intruder")
        self.assertEqual(await self._versionFor(daemon, "app.example.com", "/api/x"), "owner")
