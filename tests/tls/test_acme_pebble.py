"""
Integration tests of L{kamalproxy.tls} against a real Pebble ACME server on
loopback (skipped if Pebble is not installed, unless
C{KAMAL_PROXY_REQUIRE_PEBBLE=1}).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, List

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ConnectError
from twisted.internet.task import Clock, deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from kamalproxy.tls.client import AcmeClient, AcmeError, makeHTTPClient, trustRootFromFile
from kamalproxy.tls.http01 import HTTP01Responder
from kamalproxy.tls.keys import loadOrCreateAccountKey
from kamalproxy.tls.service import AcmeIssuingService
from kamalproxy.tls.store import DirectoryStore, MemoryStore

from tests.tls.pebble import Pebble, freePort, requirePebble


class _TrackingSite(Site):
    """
    A L{Site} remembering its connections so cleanup can close them.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.connections: List[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.connections.append(protocol)
        return protocol


def verifyChain(chainPEM: bytes, rootPEM: bytes, host: str) -> x509.Certificate:
    """
    Check that C{chainPEM} is a valid server chain for C{host} leading to
    C{rootPEM}; return the leaf.
    """
    chain = x509.load_pem_x509_certificates(chainPEM)
    roots = x509.load_pem_x509_certificates(rootPEM)
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(datetime.now(timezone.utc))
        .build_server_verifier(x509.DNSName(host))
    )
    verifier.verify(chain[0], chain[1:])
    return chain[0]


class PebbleTestCase(TestCase):
    """
    Starts an HTTP-01 responder site on loopback; L{startPebble} starts
    Pebble pointed at it.
    """

    timeout = 30

    def setUp(self) -> None:
        requirePebble()
        self.responder = HTTP01Responder()
        root = Resource()
        wellKnown = Resource()
        root.putChild(b".well-known", wellKnown)
        wellKnown.putChild(b"acme-challenge", self.responder.resource)
        self.site = _TrackingSite(root)
        self.site.noisy = False
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self._closeSite)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.retryAutomatically = False
        self.addCleanup(self.pool.closeCachedConnections)

    async def _closeSite(self) -> None:
        await self.port.stopListening()
        lost = []
        for protocol in self.site.connections:
            transport = getattr(protocol, "transport", None)
            if transport is not None and transport.connected:
                d: Deferred[None] = Deferred()
                original = protocol.connectionLost

                def connectionLost(reason: Any, d: Deferred = d, original: Any = original) -> None:
                    original(reason)
                    d.callback(None)

                protocol.connectionLost = connectionLost
                transport.abortConnection()
                lost.append(d)
        await DeferredList(lost)

    async def startPebble(self, nonceReject: int = 0, **config: Any) -> Pebble:
        pebble = Pebble(
            FilePath(self.mktemp()),
            self.port.getHost().port,
            nonceReject=nonceReject,
            extraConfig=config,
        )
        pebble.start()
        self.addCleanup(pebble.stop)
        self.http = makeHTTPClient(reactor, trustRootFromFile(pebble.caBundle), self.pool)
        await pebble.waitUntilReady(reactor, self.http)
        return pebble

    async def makeClient(self, pebble: Pebble, **kwargs: Any) -> AcmeClient:
        key = await loadOrCreateAccountKey(
            reactor, FilePath(self.mktemp()).child("account.key")
        )
        kwargs.setdefault("pollInterval", 0.1)
        return AcmeClient(reactor, pebble.directoryURL, key, self.http, **kwargs)


class IssuanceTests(PebbleTestCase):
    """
    Certificates issued by Pebble through the client and the service.
    """

    async def test_issueTwoHostsWithService(self) -> None:
        """
        The issuing service gets one certificate per host from Pebble, with
        HTTP-01 validation against the real responder site; each chain
        leads to Pebble's root and names its host; the store and the
        observer see both, and no challenge token is left behind.
        """
        pebble = await self.startPebble()
        client = await self.makeClient(pebble, email="ops@example.com")
        store = DirectoryStore(FilePath(self.mktemp()))
        changed: List[str] = []
        service = AcmeIssuingService(
            clock=reactor,
            store=store,
            responder=self.responder,
            hosts=lambda: {"a.test", "b.test"},
            client=client,
            concurrency=2,
            certificateChanged=lambda host, record: changed.append(host),
        )
        service.startService()
        self.addCleanup(service.stopService)
        await service.whenCertsValid()

        self.assertEqual(sorted(changed), ["a.test", "b.test"])
        records = await store.all()
        self.assertEqual(sorted(records), ["a.test", "b.test"])
        rootPEM = await pebble.root(self.http)
        for host, record in records.items():
            leaf = verifyChain(record.chain, rootPEM, host)
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            self.assertEqual(san.value.get_values_for_type(x509.DNSName), [host])
            self.assertEqual(record.notAfter, leaf.not_valid_after_utc)
        self.assertEqual(self.responder.tokens(), {})
        self.assertIsNotNone(client.accountURL)

    async def test_badNonceRetried(self) -> None:
        """
        With Pebble rejecting half of all nonces, issuance still succeeds
        because C{badNonce} is retried (more than once).
        """
        pebble = await self.startPebble(nonceReject=50)
        client = await self.makeClient(pebble, badNonceRetries=25)
        record = await client.issue(["nonce.test"], self.responder)
        rootPEM = await pebble.root(self.http)
        verifyChain(record.chain, rootPEM, "nonce.test")
        self.assertGreater(client.badNonceCount, 0)

    async def test_registerIsIdempotent(self) -> None:
        """
        Registering twice with the same key finds the same account, and
        C{onlyReturnExisting} looks it up.
        """
        pebble = await self.startPebble()
        client = await self.makeClient(pebble)
        first = await client.register()
        second = await client.register(onlyReturnExisting=True)
        self.assertEqual(first.uri, second.uri)

    async def test_unknownAccountProblem(self) -> None:
        """
        A problem document from the server becomes an L{AcmeError} carrying
        its type and detail.
        """
        pebble = await self.startPebble()
        client = await self.makeClient(pebble)
        with self.assertRaises(AcmeError) as raised:
            await client.register(onlyReturnExisting=True)
        self.assertEqual(raised.exception.code, "accountDoesNotExist")
        self.assertTrue(raised.exception.detail)
        self.assertIn("accountDoesNotExist", str(raised.exception))

    async def test_failedValidation(self) -> None:
        """
        If nobody answers the challenge, issuance fails with the CA's
        validation problem (an L{AcmeError}) and the token is withdrawn.
        """

        class SilentResponder(HTTP01Responder):
            def startResponding(self, token: str, keyAuthorization: str) -> None:
                pass

        pebble = await self.startPebble()
        client = await self.makeClient(pebble)
        with self.assertRaises(AcmeError) as raised:
            await client.issue(["silent.test"], SilentResponder())
        self.assertIn("silent.test", raised.exception.detail)
        self.assertTrue(raised.exception.type)


class ExternalAccountBindingTests(PebbleTestCase):
    """
    Registration with External Account Binding (EAB).
    """

    kid = "kid-1"
    hmacKey = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"

    async def test_eab(self) -> None:
        """
        When the CA requires EAB, registering without it fails with
        C{externalAccountRequired}, and with the key id and base64url HMAC
        key it succeeds.
        """
        pebble = await self.startPebble(
            externalAccountBindingRequired=True,
            externalAccountMACKeys={self.kid: self.hmacKey},
        )
        without = await self.makeClient(pebble)
        with self.assertRaises(AcmeError) as raised:
            await without.register()
        self.assertEqual(raised.exception.code, "externalAccountRequired")
        client = await self.makeClient(pebble, eabKid=self.kid, eabHmacKey=self.hmacKey)
        registration = await client.register()
        self.assertEqual(registration.uri, client.accountURL)
        self.assertIsNotNone(client.accountURL)


class PebbleDownTests(TestCase):
    """
    Behaviour when the ACME server cannot be reached (no Pebble needed).
    """

    timeout = 10

    async def test_connectionRefusedBacksOff(self) -> None:
        """
        With nothing listening on the directory port the client's
        connection error reaches the caller of C{issueNow}, the service
        schedules a retry after one minute, then two, and keeps running.
        """
        pool = HTTPConnectionPool(reactor, persistent=False)
        key = await loadOrCreateAccountKey(
            reactor, FilePath(self.mktemp()).child("account.key")
        )
        client = AcmeClient(
            reactor,
            f"https://127.0.0.1:{freePort()}/dir",
            key,
            makeHTTPClient(reactor, pool=pool),
        )
        clock = Clock()
        service = AcmeIssuingService(
            clock=clock,
            store=MemoryStore(),
            responder=HTTP01Responder(),
            hosts=lambda: {"down.test"},
            client=client,
        )
        service.startService()
        self.addCleanup(service.stopService)
        await service.whenCertsValid()
        self.assertEqual(service.retryIn("down.test"), 60)

        clock.advance(60)
        for _ in range(100):
            if service.retryIn("down.test") == 120:
                break
            await deferLater(reactor, 0.02)
        self.assertEqual(service.retryIn("down.test"), 120)
        self.assertTrue(service.running)

        with self.assertRaises(ConnectError):
            await service.issueNow("down.test", force=True)
        self.assertEqual(service.retryIn("down.test"), 240)
