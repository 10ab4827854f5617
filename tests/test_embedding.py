"""
Another Twisted application embeds the proxy: it mounts the router in its own
L{Site} and adds the proxy's control service to its own L{MultiService}, as
docs/embedding.md shows.
"""

from __future__ import annotations

import json
import os

import treq
from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.protocols import amp
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.client import HTTPConnectionPool
from twisted.web.static import Data

from kamalproxy.control.commands import List
from kamalproxy.control.server import ControlFactory
from kamalproxy.routing.options import DeployOptions, HealthCheckConfig, TargetOptions
from kamalproxy.routing.router import Router, tcpConnectorFor
from kamalproxy.daemon.state import StateStore


class _Echo(Resource):
    """
    A backend that answers with the path it was asked for.
    """

    isLeaf = True

    def render_GET(self, request):
        return b"backend saw " + request.uri


class EmbeddingTests(TestCase):
    """
    The router and control service inside someone else's application.
    """

    async def test_mountedRouterForwardsBelowItsMountPoint(self) -> None:
        """
        Mounted at C{/apps} in another app's resource tree, the router
        forwards C{/apps/x?q=1} as C{/x?q=1}; the app's own pages keep
        working, and C{list} over the app's control socket shows the
        service.
        """
        backend = reactor.listenTCP(0, Site(_Echo()), interface="127.0.0.1")
        self.addCleanup(backend.stopListening)
        backendPort = backend.getHost().port

        # --- what docs/embedding.md shows ---
        stateDir = self.mktemp()
        socketPath = os.path.join(self.mktemp(), "kp.sock")
        os.makedirs(os.path.dirname(socketPath))
        store = StateStore(stateDir)
        router = Router(reactor, tcpConnectorFor(reactor), persist=store.save)
        router.restore(store.load())

        root = Resource()
        root.putChild(b"", Data(b"my own home page", "text/plain"))
        root.putChild(b"apps", router)

        app = MultiService()
        strports.service("tcp:0:interface=127.0.0.1", Site(root), reactor=reactor).setServiceParent(app)
        strports.service(f"unix:{socketPath}:mode=600", ControlFactory(router), reactor=reactor).setServiceParent(app)
        app.startService()
        # --- end ---
        self.addCleanup(app.stopService)
        self.addCleanup(router.stop)
        port = (await app.services[0]._waitingForPort).getHost().port

        options = DeployOptions(
            target=TargetOptions(health_check=HealthCheckConfig(path="/up", interval=0.05))
        )
        await router.deploy("echo", [f"127.0.0.1:{backendPort}"], options)

        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        response = await treq.get(f"http://127.0.0.1:{port}/apps/x?q=1", pool=pool)
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), b"backend saw /x?q=1")

        home = await treq.get(f"http://127.0.0.1:{port}/", pool=pool)
        self.assertEqual(await home.content(), b"my own home page")

        client = await connectProtocol(UNIXClientEndpoint(reactor, socketPath), amp.AMP())
        listed = json.loads((await client.callRemote(List))["services"])
        self.assertEqual([s["service"] for s in listed], ["echo"])
        self.assertEqual(StateStore(stateDir).load()[0]["name"], "echo")
        client.transport.loseConnection()
