"""
The HTTP cache against a real daemon and a real app on 127.0.0.1: what two
users must never share, a deploy that must not serve the old version's
pages, a stampede on a cold key, and C{kamal-proxy cache purge}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.integration.harness import deployArgs, fetch, kamalProxy, startDaemon

COLD_CLIENTS = 100


class _App(Resource):
    """
    An app whose pages say who asked and which version answered:

      - C{/public...}: C{public, max-age=60};
      - C{/private}: C{private, max-age=60};
      - C{/cookie}: C{public, max-age=60} with a C{Set-Cookie};
      - C{/auth}: C{max-age=60}, for requests with C{Authorization};
      - C{/cold}: C{public, max-age=60}, answered after 0.3 s.

    The user is the C{X-User} request header.
    """

    isLeaf = True

    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version
        self.seen: list[bytes] = []

    def render_GET(self, request: Any) -> Any:
        path = request.path
        if path == b"/up":
            return b"up"
        self.seen.append(path)
        user = (request.getHeader(b"x-user") or b"nobody").decode()
        body = f"{self.version} {path.decode()} for {user}".encode()
        control = b"public, max-age=60"
        if path == b"/private":
            control = b"private, max-age=60"
        elif path == b"/cookie":
            request.setHeader(b"set-cookie", f"session={user}".encode())
        elif path == b"/auth":
            control = b"max-age=60"
        request.setHeader(b"cache-control", control)
        request.setHeader(b"content-type", b"text/plain")
        if path == b"/cold":
            def answer() -> None:
                request.write(body)
                request.finish()

            reactor.callLater(0.3, answer)
            return NOT_DONE_YET
        return body


class CacheTests(TestCase):
    """
    The cache of a real daemon in front of a real app.
    """

    timeout = 120

    def startApp(self, version: str) -> tuple[_App, str]:
        app = _App(version)
        site = Site(app)
        site.log = lambda request: None  # type: ignore[method-assign]
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return app, f"127.0.0.1:{port.getHost().port}"

    async def deploy(self, daemon: Any, target: str) -> None:
        result = await kamalProxy(*deployArgs("web", target), env={"KAMAL_PROXY_SOCKET": daemon.socket})
        self.assertEqual((result.code, result.err), (0, ""))

    async def test_twoUsers(self) -> None:
        """
        A C{private} response, a C{Set-Cookie} response and a response to
        an C{Authorization} request are never served to another user; a
        public page is, from the cache, with C{X-Cache} and the log's
        C{cache} field saying so.
        """
        daemon = await startDaemon(self)
        app, target = self.startApp("v1")
        await self.deploy(daemon, target)
        for path, extra in (("/private", {}), ("/cookie", {}), ("/auth", {"Authorization": "Basic YTpi"})):
            _, _, alice = await fetch(daemon.url(path), headers={"X-User": "alice", **extra})
            status, headers, bob = await fetch(daemon.url(path), headers={"X-User": "bob", **extra})
            self.assertEqual((alice, bob), (f"v1 {path} for alice".encode(), f"v1 {path} for bob".encode()))
            self.assertEqual(headers["x-cache"], "miss")
            self.assertEqual(app.seen.count(path.encode()), 2)
        await fetch(daemon.url("/public"), headers={"X-User": "alice"})
        status, headers, body = await fetch(daemon.url("/public"), headers={"X-User": "bob"})
        self.assertEqual((status, headers["x-cache"], body), (200, "hit", b"v1 /public for alice"))
        self.assertIn("age", headers)
        await daemon.waitForRequestLogs(lambda entry: entry.get("path") == "/public", 2)
        logged = [entry["cache"] for entry in daemon.requestLogs() if entry.get("path") == "/public"]
        self.assertEqual(logged, ["miss", "hit"])

    async def test_deploySwitch(self) -> None:
        """
        After a deploy to a new version, the old version's cached page is
        not served.
        """
        daemon = await startDaemon(self)
        _, v1 = self.startApp("v1")
        _, v2 = self.startApp("v2")
        await self.deploy(daemon, v1)
        await fetch(daemon.url("/public"))
        _, headers, body = await fetch(daemon.url("/public"))
        self.assertEqual((headers["x-cache"], body), ("hit", b"v1 /public for nobody"))
        await self.deploy(daemon, v2)
        _, headers, body = await fetch(daemon.url("/public"))
        self.assertEqual((headers["x-cache"], body), ("miss", b"v2 /public for nobody"))

    async def test_coldStampede(self) -> None:
        """
        100 concurrent requests for a key not yet stored: the app sees one
        request, every client gets the page.
        """
        daemon = await startDaemon(self)
        app, target = self.startApp("v1")
        await self.deploy(daemon, target)
        results = await gatherResults(
            [Deferred.fromCoroutine(fetch(daemon.url("/cold"), timeout=30)) for _ in range(COLD_CLIENTS)],
            consumeErrors=True,
        )
        self.assertEqual({(status, body) for status, _, body in results}, {(200, b"v1 /cold for nobody")})
        self.assertEqual(app.seen.count(b"/cold"), 1)

    async def test_purge(self) -> None:
        """
        C{kamal-proxy cache purge web --path /public/assets} drops those
        pages only; without C{--path} all of the service's; an unknown
        service is one error line and exit 1.
        """
        daemon = await startDaemon(self)
        app, target = self.startApp("v1")
        await self.deploy(daemon, target)
        env = {"KAMAL_PROXY_SOCKET": daemon.socket}
        for path in ("/public/assets/a", "/public/page"):
            await fetch(daemon.url(path))
        result = await kamalProxy("cache", "purge", "web", "--path", "/public/assets", env=env)
        self.assertEqual((result.code, result.err), (0, ""))
        self.assertEqual((await fetch(daemon.url("/public/assets/a")))[1]["x-cache"], "miss")
        self.assertEqual((await fetch(daemon.url("/public/page")))[1]["x-cache"], "hit")
        result = await kamalProxy("cache", "purge", "web", env=env)
        self.assertEqual(result.code, 0)
        self.assertEqual((await fetch(daemon.url("/public/page")))[1]["x-cache"], "miss")
        result = await kamalProxy("cache", "purge", "nope", env=env)
        self.assertEqual((result.code, result.err.strip()), (1, "Error: service not found"))
