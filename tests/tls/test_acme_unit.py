"""
Unit tests (no network, no real time) for L{kamalproxy.tls}: the HTTP-01
responder, certificate records and stores, keys, and the ACME client's
nonce, error and polling handling against an in-memory fake CA.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, List, Tuple

import josepy as jose
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from kamalproxy.tls.client import AcmeClient, AcmeError, parseRetryAfter, trustRootFromFile
from kamalproxy.tls.http01 import HTTP01Responder
from kamalproxy.tls.interfaces import ICertificateStore, IResponder
from kamalproxy.tls.keys import loadOrCreateAccountKey
from kamalproxy.tls.store import (
    CertificateRecord,
    DirectoryStore,
    MemoryStore,
    atomicWrite,
    cacheDirectoryFor,
    notAfterFromPEM,
)

NOT_AFTER = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def selfSigned(host: str = "a.test", notAfter: datetime = NOT_AFTER) -> Tuple[bytes, bytes]:
    """
    A key and a self-signed certificate (both PEM) for C{host}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notAfter - timedelta(days=90))
        .not_valid_after(notAfter)
        .sign(key, hashes.SHA256())
    )
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keyPEM, cert.public_bytes(serialization.Encoding.PEM)


class SyncThreadPool:
    """
    Runs "thread pool" work synchronously, counting calls.
    """

    def __init__(self) -> None:
        self.calls = 0

    def callInThreadWithCallback(self, onResult: Callable, f: Callable, *a: Any, **kw: Any) -> None:
        self.calls += 1
        try:
            result = f(*a, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class FakeReactor(Clock):
    """
    A L{Clock} with a synchronous thread pool.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = SyncThreadPool()

    def getThreadPool(self) -> SyncThreadPool:
        return self.pool

    def callFromThread(self, f: Callable, *a: Any, **kw: Any) -> None:
        f(*a, **kw)


class HTTP01ResponderTests(SynchronousTestCase):
    """
    L{HTTP01Responder} and its resource, through L{StubTreq}.
    """

    def setUp(self) -> None:
        self.responder = HTTP01Responder()
        root = Resource()
        wellKnown = Resource()
        root.putChild(b".well-known", wellKnown)
        wellKnown.putChild(b"acme-challenge", self.responder.resource)
        self.treq = StubTreq(root)

    def get(self, path: str) -> Tuple[int, bytes, Any]:
        response = self.successResultOf(self.treq.get("http://a.test" + path))
        body = self.successResultOf(self.treq.content(response))
        return response.code, body, response.headers

    def test_interface(self) -> None:
        """
        L{HTTP01Responder} provides L{IResponder} for C{http-01}.
        """
        self.assertTrue(verifyObject(IResponder, self.responder))
        self.assertEqual(self.responder.challengeType, "http-01")

    def test_knownToken(self) -> None:
        """
        C{GET /.well-known/acme-challenge/<token>} answers the key
        authorization as C{text/plain}.
        """
        self.responder.startResponding("tok_EN-1", "tok_EN-1.thumb")
        code, body, headers = self.get("/.well-known/acme-challenge/tok_EN-1")
        self.assertEqual((code, body), (200, b"tok_EN-1.thumb"))
        self.assertTrue(
            headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
        )

    def test_unknownToken(self) -> None:
        """
        An unknown token, a stopped token, the bare directory and deeper
        paths are 404s.
        """
        self.responder.startResponding("tok", "tok.thumb")
        self.responder.stopResponding("tok")
        self.responder.stopResponding("never-started")
        for path in ["tok", "other", "", "tok/extra"]:
            code, body, _ = self.get("/.well-known/acme-challenge/" + path)
            self.assertEqual(code, 404, path)
        self.assertEqual(self.responder.tokens(), {})

    def test_keyAuthorizationForPath(self) -> None:
        """
        C{keyAuthorizationForPath} finds the answer for a full request path
        (for leaf routers), ignoring a query string.
        """
        self.responder.startResponding("tok", "tok.thumb")
        find = self.responder.keyAuthorizationForPath
        self.assertEqual(find(b"/.well-known/acme-challenge/tok"), "tok.thumb")
        self.assertEqual(find(b"/.well-known/acme-challenge/tok?x=1"), "tok.thumb")
        for path in [b"/tok", b"/.well-known/acme-challenge/", b"/.well-known/acme-challenge/tok/x",
                     b"/.well-known/acme-challenge/other", b"/.well-known/acme-challenge/\xff"]:
            self.assertIsNone(find(path), path)

    def test_head(self) -> None:
        """
        C{HEAD} works like C{GET} without a body.
        """
        self.responder.startResponding("tok", "tok.thumb")
        response = self.successResultOf(
            self.treq.head("http://a.test/.well-known/acme-challenge/tok")
        )
        self.assertEqual(response.code, 200)


class CertificateRecordTests(SynchronousTestCase):
    """
    L{CertificateRecord} parsing and serialisation.
    """

    def test_fromPEM(self) -> None:
        """
        C{notAfter} is read from the leaf, timezone-aware.
        """
        key, chain = selfSigned()
        record = CertificateRecord.fromPEM(key, chain)
        self.assertEqual(record.notAfter, NOT_AFTER)
        self.assertEqual(notAfterFromPEM(chain), NOT_AFTER)
        self.assertEqual(len(record.certificates()), 1)

    def test_combinedRoundTrip(self) -> None:
        """
        C{toPEM} and C{fromCombinedPEM} round-trip a key and a two-cert
        chain; the leaf comes first.
        """
        key, leaf = selfSigned("leaf.test")
        _, other = selfSigned("ca.test", NOT_AFTER + timedelta(days=9))
        record = CertificateRecord.fromPEM(key, leaf + other)
        again = CertificateRecord.fromCombinedPEM(record.toPEM())
        self.assertEqual(again, record)

    def test_combinedNeedsKeyAndCertificate(self) -> None:
        """
        A PEM without a key or without a certificate is refused.
        """
        key, chain = selfSigned()
        self.assertRaises(ValueError, CertificateRecord.fromCombinedPEM, chain)
        self.assertRaises(ValueError, CertificateRecord.fromCombinedPEM, key)

    def test_expiresWithin(self) -> None:
        """
        C{expiresWithin} compares the time left with a margin, inclusively.
        """
        record = CertificateRecord(b"k", b"c", NOT_AFTER)
        self.assertTrue(record.expiresWithin(NOT_AFTER - timedelta(days=30), timedelta(days=30)))
        self.assertFalse(
            record.expiresWithin(NOT_AFTER - timedelta(days=30, seconds=1), timedelta(days=30))
        )


class StoreTests(SynchronousTestCase):
    """
    L{MemoryStore} and L{DirectoryStore}.
    """

    def roundTrip(self, store: Any) -> None:
        self.assertTrue(verifyObject(ICertificateStore, store))
        self.assertIsNone(self.successResultOf(store.get("a.test")))
        self.assertEqual(self.successResultOf(store.all()), {})
        record = CertificateRecord.fromPEM(*selfSigned())
        self.successResultOf(store.store("a.test", record))
        self.assertEqual(self.successResultOf(store.get("a.test")), record)
        newer = CertificateRecord.fromPEM(*selfSigned(notAfter=NOT_AFTER + timedelta(days=60)))
        self.successResultOf(store.store("a.test", newer))
        self.successResultOf(store.store("b.test", record))
        self.assertEqual(
            self.successResultOf(store.all()), {"a.test": newer, "b.test": record}
        )

    def test_memoryStore(self) -> None:
        """
        L{MemoryStore} stores, replaces and lists records.
        """
        self.roundTrip(MemoryStore())

    def test_directoryStore(self) -> None:
        """
        L{DirectoryStore} stores, replaces and lists records, creating its
        directory.
        """
        path = FilePath(self.mktemp()).child("certs")
        self.roundTrip(DirectoryStore(path))
        self.assertEqual(sorted(path.listdir()), ["a.test.pem", "b.test.pem"])

    def test_fileModes(self) -> None:
        """
        Certificate files are mode 0600 (they hold the private key), the
        directory 0700, and no temporary file is left behind.
        """
        path = FilePath(self.mktemp())
        store = DirectoryStore(path)
        store.store("a.test", CertificateRecord.fromPEM(*selfSigned()))
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(path.child("a.test.pem").path).st_mode), 0o600)
        self.assertEqual(path.listdir(), ["a.test.pem"])

    def test_atomicWriteReplaces(self) -> None:
        """
        L{atomicWrite} replaces a file's content and mode.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"old")
        os.chmod(path.path, 0o644)
        atomicWrite(path, b"new", 0o600)
        self.assertEqual(path.getContent(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o600)

    def test_directoryIgnoresOtherFiles(self) -> None:
        """
        C{all()} skips the account key, hidden files and corrupt PEMs.
        """
        path = FilePath(self.mktemp())
        store = DirectoryStore(path)
        record = CertificateRecord.fromPEM(*selfSigned())
        store.store("a.test", record)
        store.accountKeyPath.setContent(b"key")
        path.child(".x.pem.tmp").setContent(b"junk")
        path.child("broken.test.pem").setContent(b"junk")
        self.assertEqual(self.successResultOf(store.all()), {"a.test": record})
        self.assertIsNone(self.successResultOf(store.get("broken.test")))

    def test_badHostNames(self) -> None:
        """
        Names that are not plain lower-case DNS names cannot escape the
        directory.
        """
        store = DirectoryStore(FilePath(self.mktemp()))
        record = CertificateRecord(b"k", b"c", NOT_AFTER)
        for host in ["../x", "a/b", ".hidden", "", "A.test", "a..b"]:
            self.assertRaises(ValueError, store.store, host, record)

    def test_cacheDirectoryFor(self) -> None:
        """
        The per-CA directory is named after the SHA-256 of the directory
        URL, as in kamal-proxy (empty URL → C{e3b0c442...}).
        """
        self.assertEqual(
            cacheDirectoryFor("/certs", "").basename(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        self.assertEqual(cacheDirectoryFor("/certs", "x").dirname(), "/certs")


class AccountKeyTests(SynchronousTestCase):
    """
    L{loadOrCreateAccountKey}.
    """

    def test_createThenLoad(self) -> None:
        """
        The key is generated in the thread pool, saved with mode 0600,
        and loaded (not regenerated) the next time.
        """
        reactor = FakeReactor()
        path = FilePath(self.mktemp()).child("account.key")
        key = self.successResultOf(
            ensureDeferred(
                loadOrCreateAccountKey(reactor, path)
            )
        )
        self.assertEqual(reactor.pool.calls, 1)
        self.assertIsInstance(key, jose.JWKEC)
        self.assertEqual(stat.S_IMODE(os.stat(path.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(path.parent().path).st_mode), 0o700)
        again = self.successResultOf(
            ensureDeferred(
                loadOrCreateAccountKey(reactor, path)
            )
        )
        self.assertEqual(reactor.pool.calls, 1)
        self.assertEqual(key.thumbprint(), again.thumbprint())


class HelperTests(SynchronousTestCase):
    """
    L{trustRootFromFile}, L{parseRetryAfter} and L{AcmeError}.
    """

    def test_trustRootFromFile(self) -> None:
        """
        A bundle of several PEM certificates becomes an HTTPS policy.
        """
        path = FilePath(self.mktemp())
        path.setContent(selfSigned("one")[1] + selfSigned("two")[1])
        policy = trustRootFromFile(path)
        self.assertTrue(verifyObject(IPolicyForHTTPS, policy))
        policy.creatorForNetloc(b"127.0.0.1", 443)

    def test_parseRetryAfter(self) -> None:
        """
        Delta-seconds and HTTP-dates are understood; junk and absence give
        L{None}; past dates give 0.
        """
        now = 1_800_000_000.0
        self.assertEqual(parseRetryAfter("7", now), 7.0)
        date = datetime.fromtimestamp(now + 30, timezone.utc).strftime(
            "%a, %d %b %Y %H:%M:%S GMT"
        )
        self.assertEqual(parseRetryAfter(date, now), 30.0)
        self.assertEqual(parseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", now), 0.0)
        self.assertIsNone(parseRetryAfter("soon", now))
        self.assertIsNone(parseRetryAfter(None, now))

    def test_acmeErrorText(self) -> None:
        """
        L{AcmeError} shows the status, the problem type and the detail.
        """
        error = AcmeError.fromProblem(
            messages.Error(typ="urn:ietf:params:acme:error:rateLimited", detail="slow down"),
            429,
        )
        self.assertEqual(error.code, "rateLimited")
        self.assertEqual(
            str(error), "HTTP 429: urn:ietf:params:acme:error:rateLimited: slow down"
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeCA(Resource):
    """
    Just enough of an ACME server to test nonces, errors and polling: a
    directory, newNonce, newAccount (rejecting the first C{badNonces}
    nonces), and an authorization that is pending for C{pendingPolls}
    fetches with C{Retry-After}.
    """

    isLeaf = True
    base = "https://ca.test"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.issued: List[str] = []
        self.used: List[str] = []
        self.badNonces = 0
        self.pendingPolls = 0
        self.retryAfter = "5"
        self.polls: List[float] = []
        self.nonceHeads = 0

    def nonce(self, request: Request) -> None:
        value = _b64(b"nonce-%d" % len(self.issued))
        self.issued.append(value)
        request.setHeader(b"replay-nonce", value.encode("ascii"))

    def problem(self, request: Request, code: int, typ: str, detail: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/problem+json")
        return json.dumps({"type": "urn:ietf:params:acme:error:" + typ, "detail": detail}).encode()

    def render_GET(self, request: Request) -> bytes:
        if request.path == b"/dir":
            return json.dumps(
                {
                    "newNonce": self.base + "/nonce",
                    "newAccount": self.base + "/account",
                    "newOrder": self.base + "/order",
                }
            ).encode()
        if request.path == b"/nonce":
            self.nonceHeads += 1
            self.nonce(request)
            return b""
        request.setResponseCode(404)
        return b""

    def render_POST(self, request: Request) -> bytes:
        body = json.loads(request.content.read())
        protected = json.loads(_unb64(body["protected"]))
        self.nonce(request)
        nonce = protected["nonce"]
        if nonce not in self.issued or nonce in self.used:
            return self.problem(request, 400, "badNonce", "unknown or reused nonce")
        self.used.append(nonce)
        if request.path == b"/account":
            if self.badNonces:
                self.badNonces -= 1
                return self.problem(request, 400, "badNonce", "JWS has an invalid anti-replay nonce")
            request.setResponseCode(201)
            request.setHeader(b"location", (self.base + "/acct/1").encode())
            return json.dumps({"status": "valid"}).encode()
        if request.path == b"/authz":
            self.polls.append(self.clock.seconds())
            status = "pending" if len(self.polls) <= self.pendingPolls else "valid"
            if status == "pending" and self.retryAfter:
                request.setHeader(b"retry-after", self.retryAfter.encode())
            return json.dumps(
                {"status": status, "identifier": {"type": "dns", "value": "a.test"},
                 "challenges": []}
            ).encode()
        request.setResponseCode(404)
        return b""


class ClientTests(SynchronousTestCase):
    """
    L{AcmeClient} against L{FakeCA} through L{StubTreq} and a fake clock.
    """

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.ca = FakeCA(self.reactor)
        key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.client = AcmeClient(
            self.reactor, FakeCA.base + "/dir", key, StubTreq(self.ca),
            pollInterval=1, maxPollDelay=10, maxPollWait=60,
        )

    def drive(self, coroutine: Any) -> Any:
        return Deferred.fromCoroutine(coroutine)

    def test_registerUsesNoncePool(self) -> None:
        """
        The first request fetches a nonce with newNonce; later ones reuse
        the C{Replay-Nonce} of the previous response.
        """
        self.successResultOf(self.drive(self.client.register()))
        self.assertEqual(self.client.accountURL, FakeCA.base + "/acct/1")
        self.successResultOf(self.drive(self.client.register()))
        self.assertEqual(self.ca.nonceHeads, 1)
        self.assertEqual(len(self.ca.used), 2)

    def test_badNonceRetriedSeveralTimes(self) -> None:
        """
        Several C{badNonce} rejections in a row are retried with the fresh
        nonces the rejections carry.
        """
        self.ca.badNonces = 5
        self.successResultOf(self.drive(self.client.register()))
        self.assertEqual(self.client.badNonceCount, 5)
        self.assertEqual(self.ca.nonceHeads, 1)

    def test_badNonceGivesUp(self) -> None:
        """
        After C{badNonceRetries} retries the C{badNonce} error is raised.
        """
        self.ca.badNonces = 100
        self.client.badNonceRetries = 3
        failure = self.failureResultOf(self.drive(self.client.register()), AcmeError)
        self.assertEqual(failure.value.code, "badNonce")
        self.assertEqual(failure.value.status, 400)
        self.assertEqual(self.client.badNonceCount, 3)

    def test_pollHonoursRetryAfter(self) -> None:
        """
        Polling waits for C{Retry-After} seconds between fetches.
        """
        self.successResultOf(self.drive(self.client.register()))
        self.ca.pendingPolls = 2
        d = self.drive(
            self.client._poll(
                lambda r: messages.AuthorizationResource(
                    body=messages.Authorization.from_json(r.json()), uri="x"
                ),
                FakeCA.base + "/authz",
                {messages.STATUS_PENDING},
                "authorization",
            )
        )
        self.assertNoResult(d)
        self.reactor.advance(4.9)
        self.assertEqual(len(self.ca.polls), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.ca.polls), 2)
        self.reactor.advance(5)
        self.assertEqual(self.successResultOf(d).body.status, messages.STATUS_VALID)
        self.assertEqual([p - self.ca.polls[0] for p in self.ca.polls], [0, 5, 10])

    def test_pollCapsRetryAfterAndTimesOut(self) -> None:
        """
        A huge C{Retry-After} is capped at C{maxPollDelay}, and polling
        gives up with an L{AcmeError} after C{maxPollWait}.
        """
        self.successResultOf(self.drive(self.client.register()))
        self.ca.pendingPolls = 1000
        self.ca.retryAfter = "3600"
        d = self.drive(self.client.authorization(FakeCA.base + "/authz"))
        self.successResultOf(d)
        self.ca.polls.clear()
        d = self.drive(
            self.client._poll(
                lambda r: messages.AuthorizationResource(
                    body=messages.Authorization.from_json(r.json()), uri="x"
                ),
                FakeCA.base + "/authz",
                {messages.STATUS_PENDING},
                "authorization",
            )
        )
        self.reactor.pump([10] * 7)
        failure = self.failureResultOf(d, AcmeError)
        self.assertIn("still pending after 60s", str(failure.value))
        self.assertEqual(len(self.ca.polls), 7)
