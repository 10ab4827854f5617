"""
Unit tests of the HTTPS side of the router: the TLS deploy flags and their
validation, custom certificate loading, certificate selection by server
name (L{kamalproxy.tls.sni}), the ACME challenge path, the HTTP to HTTPS
and canonical host redirects, C{list}'s TLS column, and h2c sniffing.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Optional

import attr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from kamalproxy.http.channel import H2_PREFACE, ProxyChannel
from kamalproxy.control.ctl import serviceRows
from kamalproxy.control.flags import FlagError, parseDeploy
from kamalproxy.routing.options import DeployOptions, InvalidOptions, ServiceOptions, fromJSON, toJSON
from kamalproxy.pipeline.tlsgate import redirectFor
from kamalproxy.routing.router import Router
from kamalproxy.http.site import ProxySite
from kamalproxy.tls.http01 import HTTP01Responder
from kamalproxy.tls.sni import CertificateSelector, loadCertificatePair
from kamalproxy.tls.store import CertificateRecord

from .._helpers import FakeTargets, proxyConnection, statusOf, tempDir


def selfSigned(*names: str, days: int = 30) -> tuple[bytes, bytes]:
    """
    A self-signed ECDSA certificate for C{names}: C{(certificate PEM, key PEM)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def writePair(case: SynchronousTestCase, *names: str) -> tuple[str, str]:
    """
    L{selfSigned} written to two files; their paths.
    """
    directory = tempDir(case)
    certificate, key = selfSigned(*names)
    paths = (os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
    for path, data in zip(paths, (certificate, key)):
        with open(path, "wb") as f:
            f.write(data)
    return paths


def record(*names: str, days: int = 30) -> CertificateRecord:
    certificate, key = selfSigned(*names, days=days)
    return CertificateRecord.fromPEM(key, certificate)


def tlsOptions(*hosts: str, **service: Any) -> DeployOptions:
    return DeployOptions(
        service=ServiceOptions(hosts=hosts, tls_enabled=True, **service), force=True
    )


class FlagTests(SynchronousTestCase):
    """
    The TLS deploy flags reach L{ServiceOptions} and are checked before the
    daemon is contacted.
    """

    def error(self, *args: str) -> str:
        return str(self.assertRaises(FlagError, parseDeploy, ["s", "--target", "web", *args]))

    def test_defaults(self) -> None:
        """
        Without TLS flags: no TLS, redirect on, no custom certificate.
        """
        _, _, options = parseDeploy(["s", "--target", "web"])
        service = options.service
        self.assertEqual(
            (service.tls_enabled, service.tls_redirect, service.tls_certificate_path, service.canonical_host),
            (False, True, "", ""),
        )

    def test_tlsFlags(self) -> None:
        """
        C{--tls}, C{--tls-redirect=false}, C{--tls-staging} and
        C{--canonical-host} are carried; certificate paths are made
        absolute.
        """
        _, _, options = parseDeploy(
            ["s", "--target", "web", "--host", "a.test,www.a.test", "--tls", "--tls-redirect=false",
             "--tls-staging", "--canonical-host", "a.test",
             "--tls-certificate-path", "c.pem", "--tls-private-key-path", "k.pem"]
        )
        service = options.service
        self.assertTrue(service.tls_enabled)
        self.assertFalse(service.tls_redirect)
        self.assertTrue(service.tls_staging)
        self.assertEqual(service.canonical_host, "a.test")
        self.assertEqual(service.tls_certificate_path, os.path.abspath("c.pem"))
        self.assertEqual(service.tls_private_key_path, os.path.abspath("k.pem"))
        self.assertTrue(service.customCertificate)

    def test_tlsNeedsHost(self) -> None:
        """
        Automatic TLS needs a host.
        """
        self.assertEqual(self.error("--tls"), "host must be set when using automatic TLS")

    def test_wildcardRefused(self) -> None:
        """
        ACME cannot issue wildcards; a custom certificate can serve them.
        """
        self.assertEqual(
            self.error("--tls", "--host", "*.example.com"), "automatic TLS does not support wildcards"
        )
        parseDeploy(["s", "--target", "web", "--tls", "--host", "*.example.com",
                     "--tls-certificate-path", "/c", "--tls-private-key-path", "/k"])

    def test_pairRequired(self) -> None:
        """
        A certificate path needs a key path, and both need C{--tls}.
        """
        self.assertIn("must be given", self.error("--tls", "--host", "a.test", "--tls-certificate-path", "/c"))
        self.assertIn("must be given", self.error("--tls", "--host", "a.test", "--tls-private-key-path", "/k"))
        self.assertEqual(
            self.error("--host", "a.test", "--tls-certificate-path", "/c", "--tls-private-key-path", "/k"),
            "--tls-certificate-path requires --tls",
        )

    def test_canonicalHostAmongHosts(self) -> None:
        """
        The canonical host must be one of the service's hosts.
        """
        self.assertEqual(
            self.error("--host", "a.test", "--canonical-host", "b.test"),
            "canonical host must be one of the service's hosts",
        )

    def test_jsonRoundTrip(self) -> None:
        """
        The new options survive the JSON form (control socket, state file),
        and an old state file without them gets the defaults.
        """
        options = tlsOptions("a.test", tls_redirect=False, tls_staging=True, canonical_host="a.test")
        self.assertEqual(fromJSON(DeployOptions, toJSON(options)), options)
        old = toJSON(DeployOptions())
        for key in ("tls_redirect", "tls_certificate_path", "tls_private_key_path", "tls_staging", "canonical_host"):
            del old["service"][key]
        self.assertEqual(fromJSON(DeployOptions, old), DeployOptions())


class CustomCertificateTests(SynchronousTestCase):
    """
    L{loadCertificatePair} reads a PEM pair, refusing bad ones with
    C{unable to load certificate}.
    """

    def test_load(self) -> None:
        """
        A matching pair loads, with the leaf's expiry.
        """
        loaded = loadCertificatePair(*writePair(self, "c.test"))
        self.assertGreater(loaded.notAfter, datetime.datetime.now(datetime.timezone.utc))

    def test_missing(self) -> None:
        """
        A missing file is named.
        """
        _, key = writePair(self, "c.test")
        error = self.assertRaises(ValueError, loadCertificatePair, "/nonexistent/c.pem", key)
        self.assertEqual(str(error), "unable to load certificate: No such file or directory: /nonexistent/c.pem")

    def test_mismatch(self) -> None:
        """
        A key that is not the certificate's is refused.
        """
        certificate, _ = writePair(self, "c.test")
        _, otherKey = writePair(self, "c.test")
        error = self.assertRaises(ValueError, loadCertificatePair, certificate, otherKey)
        self.assertEqual(str(error), "unable to load certificate: private key does not match the certificate")

    def test_notPEM(self) -> None:
        """
        A file without a certificate is refused.
        """
        _, key = writePair(self, "c.test")
        error = self.assertRaises(ValueError, loadCertificatePair, key, key)
        self.assertIn("unable to load certificate: no PEM certificate", str(error))


def _handshake(server: SSL.Context, client: SSL.Context, name: Optional[bytes] = b"a.test") -> Optional[str]:
    """
    A TLS handshake between two contexts in memory: the cipher agreed, or
    L{None} if the handshake failed.
    """
    serverConn = SSL.Connection(server, None)
    serverConn.set_accept_state()
    clientConn = SSL.Connection(client, None)
    clientConn.set_connect_state()
    if name is not None:
        clientConn.set_tlsext_host_name(name)
    for _ in range(10):
        for conn in (clientConn, serverConn):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                return None
        for source, sink in ((clientConn, serverConn), (serverConn, clientConn)):
            try:
                sink.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
    return clientConn.get_cipher_name()


class ProtocolTests(SynchronousTestCase):
    """
    What the HTTPS listener accepts: TLS 1.2 and 1.3 only, forward-secret
    AEAD cipher suites only (the listener's context, switched per name).
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.router = Router(self.clock, FakeTargets().connectorFor)
        self.addCleanup(self.router.stop)
        self.selector = CertificateSelector(self.router.serviceForHost)
        certificate, key = writePair(self, "a.test")
        d = Deferred.fromCoroutine(self.router.deploy(
            "a", ["10.0.0.1:3000"],
            tlsOptions("a.test", tls_certificate_path=certificate, tls_private_key_path=key),
        ))
        self.successResultOf(d)
        self.server = self.selector.serverOptions().getContext()

    def client(self, version: int, ciphers: Optional[bytes] = None) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(version)
        context.set_max_proto_version(version)
        if ciphers is not None:
            context.set_cipher_list(ciphers)
        return context

    def test_modernProtocols(self) -> None:
        """
        TLS 1.3 and TLS 1.2 with an ECDHE AEAD suite are accepted.
        """
        self.assertIsNotNone(_handshake(self.server, self.client(SSL.TLS1_3_VERSION)))
        self.assertEqual(
            _handshake(self.server, self.client(SSL.TLS1_2_VERSION, b"ECDHE-ECDSA-AES128-GCM-SHA256")),
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        )
        self.assertIsNotNone(
            _handshake(self.server, self.client(SSL.TLS1_2_VERSION, b"ECDHE-ECDSA-CHACHA20-POLY1305"))
        )

    def test_oldProtocolsAndCiphersRefused(self) -> None:
        """
        TLS 1.1, CBC suites and suites without forward secrecy fail the
        handshake.
        """
        for client in (
            self.client(SSL.TLS1_1_VERSION, b"ALL:@SECLEVEL=0"),
            self.client(SSL.TLS1_2_VERSION, b"ECDHE-ECDSA-AES128-SHA"),
            self.client(SSL.TLS1_2_VERSION, b"ECDHE-ECDSA-AES256-SHA384"),
            self.client(SSL.TLS1_2_VERSION, b"AES128-GCM-SHA256"),
        ):
            self.assertIsNone(_handshake(self.server, client))


class _RouterCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.addCleanup(self.router.stop)
        self.selector = CertificateSelector(self.router.serviceForHost)
        self.router.certificates = self.selector

    def deploy(self, name: str, options: DeployOptions) -> None:
        d = Deferred.fromCoroutine(self.router.deploy(name, ["10.0.0.1:3000"], options))
        self.successResultOf(d)


class SelectionTests(_RouterCase):
    """
    L{CertificateSelector.contextForServerName} picks the certificate of
    the service owning C{/} for the server name, and none for anything else.
    """

    def test_acmeCertificateWhenIssued(self) -> None:
        """
        An ACME host has no certificate (handshake fails) until one is
        added, then its own.
        """
        self.deploy("a", tlsOptions("a.test", "www.a.test"))
        self.assertIsNone(self.selector.contextForServerName(b"a.test"))
        self.selector.addRecord("a.test", record("a.test"))
        self.assertIsNotNone(self.selector.contextForServerName(b"a.test"))
        self.assertIsNotNone(self.selector.contextForServerName(b"A.Test"))
        self.assertIsNone(self.selector.contextForServerName(b"www.a.test"))

    def test_unknownAndPlainHostsFail(self) -> None:
        """
        Names no service owns, and hosts of services without TLS, get no
        certificate, even when another host has one.
        """
        self.deploy("a", tlsOptions("a.test"))
        self.deploy("plain", DeployOptions(service=ServiceOptions(hosts=("p.test",)), force=True))
        self.selector.addRecord("a.test", record("a.test"))
        self.selector.addRecord("p.test", record("p.test"))
        self.assertIsNone(self.selector.contextForServerName(b"other.test"))
        self.assertIsNone(self.selector.contextForServerName(b"p.test"))
        self.assertIsNone(self.selector.contextForServerName(b"\xff.test"))

    def test_noServerName(self) -> None:
        """
        Without SNI the default service's custom certificate is used; with
        no default TLS service the handshake fails.
        """
        self.deploy("a", tlsOptions("a.test"))
        self.selector.addRecord("a.test", record("a.test"))
        self.assertIsNone(self.selector.contextForServerName(None))
        certificate, key = writePair(self, "default.test")
        self.deploy("default", tlsOptions(tls_certificate_path=certificate, tls_private_key_path=key))
        default = self.router.services["default"].tlsCertificate
        self.assertIs(self.selector.contextForServerName(None), default.context)
        self.assertIs(self.selector.contextForServerName(b"unknown.test"), default.context)

    def test_customWildcard(self) -> None:
        """
        A custom certificate serves every host of its service, wildcards
        included.
        """
        certificate, key = writePair(self, "*.w.test")
        self.deploy("w", tlsOptions("*.w.test", tls_certificate_path=certificate, tls_private_key_path=key))
        context = self.router.services["w"].tlsCertificate.context
        self.assertIs(self.selector.contextForServerName(b"x.w.test"), context)
        self.assertIsNone(self.selector.contextForServerName(b"x.y.w.test"))

    def test_brokenRecordIgnored(self) -> None:
        """
        A record whose key does not match is not served.
        """
        self.deploy("a", tlsOptions("a.test"))
        good, other = record("a.test"), record("a.test")
        self.selector.addRecord("a.test", attr.evolve(good, key=other.key))
        self.assertIsNone(self.selector.contextForServerName(b"a.test"))

    def test_badCustomCertificateChangesNothing(self) -> None:
        """
        A deploy with an unreadable certificate fails and leaves the
        service as it was.
        """
        certificate, key = writePair(self, "c.test")
        self.deploy("c", tlsOptions("c.test", tls_certificate_path=certificate, tls_private_key_path=key))
        before = self.router.services["c"]
        d = Deferred.fromCoroutine(
            self.router.deploy(
                "c", ["10.0.0.2:3000"],
                tlsOptions("c.test", tls_certificate_path="/nonexistent", tls_private_key_path=key),
            )
        )
        self.assertIn("unable to load certificate", str(self.failureResultOf(d, InvalidOptions).value))
        self.assertIs(self.router.services["c"], before)

    def test_tlsHosts(self) -> None:
        """
        ACME is asked for the hosts of TLS services without custom
        certificates, filtered by their options when asked.
        """
        certificate, key = writePair(self, "c.test")
        self.deploy("a", tlsOptions("a.test", "B.test"))
        self.deploy("s", tlsOptions("s.test", tls_staging=True))
        self.deploy("c", tlsOptions("c.test", tls_certificate_path=certificate, tls_private_key_path=key))
        self.deploy("p", DeployOptions(service=ServiceOptions(hosts=("p.test",)), force=True))
        self.assertEqual(self.router.tlsHosts(), ["a.test", "b.test", "s.test"])
        self.assertEqual(self.router.tlsHosts(lambda o: not o.tls_staging), ["a.test", "b.test"])
        self.assertEqual(self.router.tlsHosts(lambda o: o.tls_staging), ["s.test"])

    def test_listStatus(self) -> None:
        """
        C{list} shows C{pending} until every host has a certificate, then
        the earliest expiry; the table says C{yes (pending)} or
        C{yes (until DATE)}.
        """
        self.deploy("a", tlsOptions("a.test", "b.test"))
        self.deploy("p", DeployOptions(service=ServiceOptions(hosts=("p.test",)), force=True))
        [a, p] = self.router.describe()
        self.assertEqual((a["tls"], a["certificate"]), (True, "pending"))
        self.assertNotIn("certificate", p)
        self.assertEqual(serviceRows([a])[0][-1], "yes (pending)")
        self.selector.addRecord("a.test", record("a.test", days=40))
        self.assertEqual(self.router.describe()[0]["certificate"], "pending")
        soon = record("b.test", days=10)
        self.selector.addRecord("b.test", soon)
        [a, _] = self.router.describe()
        self.assertEqual(a["certificate"], soon.notAfter.date().isoformat())
        self.assertEqual(serviceRows([a])[0][-1], f"yes (until {soon.notAfter.date().isoformat()})")
        self.assertEqual(serviceRows([p])[0][-1], "no")

    def test_listStatusOnDemand(self) -> None:
        """
        An on-demand service (no hosts of its own) shows C{pending} until a
        name has been issued for it, then the earliest expiry among those.
        """
        self.deploy("shop", tlsOptions(tls_on_demand_url="/allow"))
        self.assertEqual(self.router.describe()[0]["certificate"], "pending")
        issued = record("buyer.test", days=20)
        self.selector.addRecord("buyer.test", issued)
        self.selector.addRecord("later.test", record("later.test", days=50))
        self.assertEqual(self.router.describe()[0]["certificate"], issued.notAfter.date().isoformat())


@attr.s(auto_attribs=True)
class _Request:
    """
    Just what L{Router.redirectFor} reads of a request.
    """

    host: bytes
    uri: bytes = b"/p?q=1"
    secure: bool = False

    @property
    def path(self) -> bytes:
        return self.uri.split(b"?")[0]

    def getHeader(self, name: bytes) -> Optional[bytes]:
        return self.host if name == b"host" else None

    def isSecure(self) -> bool:
        return self.secure


class RedirectTests(_RouterCase):
    """
    Plain HTTP to a TLS service with a certificate is redirected to HTTPS;
    ACME challenges are answered first and never redirected.
    """

    def setUp(self) -> None:
        super().setUp()
        self.router.httpsPort = 8443
        self.deploy("a", tlsOptions("a.test"))
        self.selector.addRecord("a.test", record("a.test"))

    def redirect(self, request: _Request, name: str = "a") -> Optional[bytes]:
        router = self.router
        service = router.services[name]
        return redirectFor(request, service, request.path, router.certificates, router.httpsPort)  # type: ignore[arg-type]

    def test_redirectWithCertificate(self) -> None:
        """
        The host (without the HTTP port) and the request URI are kept; a
        non-default HTTPS port is named.
        """
        self.assertEqual(self.redirect(_Request(b"a.test:8080")), b"https://a.test:8443/p?q=1")
        self.router.httpsPort = 443
        self.assertEqual(self.redirect(_Request(b"a.test")), b"https://a.test/p?q=1")

    def test_noRedirect(self) -> None:
        """
        No redirect over TLS, for the challenge path, without a
        certificate yet, or with C{--tls-redirect=false}.
        """
        self.assertIsNone(self.redirect(_Request(b"a.test", secure=True)))
        self.assertIsNone(self.redirect(_Request(b"a.test", uri=b"/.well-known/acme-challenge/x")))
        self.deploy("b", tlsOptions("b.test"))
        self.assertIsNone(self.redirect(_Request(b"b.test"), "b"))
        self.deploy("c", tlsOptions("c.test", tls_redirect=False))
        self.selector.addRecord("c.test", record("c.test"))
        self.assertIsNone(self.redirect(_Request(b"c.test"), "c"))

    def test_pathServiceUnderCustomCertificate(self) -> None:
        """
        A service below a path prefix of a host whose root service has a
        custom certificate is redirected too: the listener serves that
        certificate for the host.
        """
        certificate, key = writePair(self, "c.test")
        self.deploy("c", tlsOptions("c.test", tls_certificate_path=certificate, tls_private_key_path=key))
        self.deploy("api", DeployOptions(service=ServiceOptions(hosts=("c.test",), path_prefixes=("/api",)), force=True))
        self.assertEqual(self.redirect(_Request(b"c.test", uri=b"/api/x"), "api"), b"https://c.test:8443/api/x")
        self.assertEqual(self.selector.status(self.router.services["api"]), self.selector.status(self.router.services["c"]))
        self.assertNotEqual(self.selector.status(self.router.services["api"]), "pending")

    def test_noSelectorNoRedirect(self) -> None:
        """
        A router without an HTTPS listener never redirects.
        """
        self.router.certificates = None
        self.assertIsNone(self.redirect(_Request(b"a.test")))

    def test_canonicalHost(self) -> None:
        """
        Another host goes to the canonical one, with the TLS redirect in the
        same hop; without TLS the scheme and port are kept.
        """
        self.deploy("a", tlsOptions("a.test", "www.a.test", canonical_host="a.test"))
        self.assertEqual(self.redirect(_Request(b"www.a.test")), b"https://a.test:8443/p?q=1")
        self.assertEqual(self.redirect(_Request(b"www.a.test", secure=True)), b"https://a.test/p?q=1")
        self.assertIsNone(self.redirect(_Request(b"a.test", secure=True)))
        self.deploy("p", DeployOptions(service=ServiceOptions(hosts=("p.test", "www.p.test"), canonical_host="p.test"), force=True))
        self.assertEqual(self.redirect(_Request(b"www.p.test:8080"), "p"), b"http://p.test:8080/p?q=1")

    def test_rendered(self) -> None:
        """
        Over a connection: the redirect is a 301 with C{Location}; the
        challenge path answers the key authorization for any host, routed
        or not, never reaching an app.
        """
        responder = HTTP01Responder()
        responder.startResponding("tok", "tok.thumb")
        self.router.challenges = responder
        protocol, client, _ = proxyConnection(self.router, self.clock)
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        response = client.value()
        self.assertEqual(statusOf(response), 301)
        self.assertIn(b"\r\nLocation: https://a.test:8443/x\r\n", response)
        for request in (
            b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a.test\r\n\r\n",
            # a host no service owns
            b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: nobody.test\r\n\r\n",
            # with a body, which would otherwise be streamed to the app
            b"POST /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\n{}",
        ):
            protocol, client, _ = proxyConnection(self.router, self.clock)  # the last one was closed
            protocol.dataReceived(request)
            response = client.value()
            self.assertEqual(statusOf(response), 200, request)
            self.assertTrue(response.endswith(b"\r\n\r\ntok.thumb"), response)
        self.assertEqual(self.targets.connections, [])

    def test_unbufferedBodyRedirected(self) -> None:
        """
        A request whose body would be streamed (buffering off) is redirected
        too, not forwarded.
        """
        protocol, client, _ = proxyConnection(self.router, self.clock)
        protocol.dataReceived(b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(statusOf(client.value()), 301)
        self.assertEqual(self.targets.connections, [])


@implementer(ISSLTransport)
class _SecureTransport(StringTransport):
    """
    A transport the request sees as TLS.
    """

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class ConnectionCloseAndTLSOnlyTests(_RouterCase):
    """
    The redirect to HTTPS closes the connection; TLS to a service without
    TLS gets 503; path services inherit TLS from their host's root service.
    """

    def setUp(self) -> None:
        super().setUp()
        self.deploy("a", tlsOptions("a.test"))
        self.selector.addRecord("a.test", record("a.test"))

    def test_redirectClosesConnection(self) -> None:
        """
        The 301 to HTTPS carries C{Connection: close} and the connection is
        closed after it; a canonical-host redirect over TLS keeps it open.
        """
        protocol, client, _ = proxyConnection(self.router, self.clock)
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
        response = client.value()
        self.assertEqual(statusOf(response), 301)
        self.assertIn(b"\r\nConnection: close\r\n", response)
        self.assertTrue(client.disconnecting)

        self.deploy("w", tlsOptions("w.test", "www.w.test", canonical_host="w.test"))
        self.selector.addRecord("w.test", record("w.test"))
        protocol, client, _ = self.secureConnection()
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: www.w.test\r\n\r\n")
        response = client.value()
        self.assertEqual(statusOf(response), 301)
        self.assertNotIn(b"Connection: close", response)
        self.assertFalse(client.disconnecting)

    def secureConnection(self) -> Any:
        site = ProxySite(self.router, self.clock)
        protocol = site.buildProtocol(None)
        transport = _SecureTransport()
        protocol.makeConnection(transport)
        return protocol, transport, site

    def test_tlsToServiceWithoutTLS503(self) -> None:
        """
        A request over TLS for a host whose service has no TLS (e.g. SNI
        of a TLS host, another C{Host}) gets 503 and is not forwarded, with
        or without a body; a TLS service is served.
        """
        self.deploy("p", DeployOptions(service=ServiceOptions(hosts=("p.test",)), force=True))
        for request in (b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n",
                        b"POST / HTTP/1.1\r\nHost: p.test\r\nContent-Length: 3\r\n\r\nabc"):
            protocol, client, _ = self.secureConnection()
            protocol.dataReceived(request)
            self.assertEqual(statusOf(client.value()), 503)
        self.assertEqual(self.targets.connections, [])
        protocol, client, _ = self.secureConnection()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual(len(self.targets.connections), 1)

    def test_pathServiceInheritsTLSFromRoot(self) -> None:
        """
        A service below a path prefix takes C{tls} and C{tls-redirect} from
        the service owning C{/} for its first host, follows it when it
        changes, and gets the defaults (no TLS, redirect on) without one.
        """
        api = DeployOptions(service=ServiceOptions(hosts=("a.test",), path_prefixes=("/api",)), force=True)
        self.deploy("api", api)
        self.assertEqual(self.tlsOf("api"), (True, True))
        self.deploy("a", tlsOptions("a.test", tls_redirect=False))
        self.assertEqual(self.tlsOf("api"), (True, False))
        self.deploy("a", DeployOptions(service=ServiceOptions(hosts=("a.test",)), force=True))
        self.assertEqual(self.tlsOf("api"), (False, True))
        self.router.remove("a")
        self.deploy("api", DeployOptions(service=ServiceOptions(
            hosts=("a.test",), path_prefixes=("/api",), tls_enabled=True, tls_redirect=False), force=True))
        self.assertEqual(self.tlsOf("api"), (False, True))
        # The root service itself keeps its own settings.
        self.deploy("a", tlsOptions("a.test"))
        self.assertEqual((self.tlsOf("a"), self.tlsOf("api")), ((True, True), (True, True)))

    def tlsOf(self, name: str) -> tuple[bool, bool]:
        options = self.router.services[name].options.service
        return options.tls_enabled, options.tls_redirect


class H2CTests(SynchronousTestCase):
    """
    With C{h2c} on, a plain connection starting with the HTTP/2 preface is
    handed to L{ProxyH2Connection}; others stay HTTP/1.1.
    """

    def connect(self, h2c: bool) -> Any:
        clock = MemoryReactorClock()
        router = Router(clock, FakeTargets().connectorFor)
        self.addCleanup(router.stop)
        protocol, client, site = proxyConnection(router, clock)
        protocol._h2cBuffer = b"" if h2c else None  # as buildChannelProtocol with site.h2c
        return protocol, client

    def test_preface(self) -> None:
        """
        The preface, even split over reads, switches to L{ProxyH2Connection},
        which answers with its SETTINGS frame.
        """
        from kamalproxy.http.http2 import ProxyH2Connection

        protocol, client = self.connect(True)
        protocol.dataReceived(H2_PREFACE[:5])
        self.assertIsInstance(protocol._channel, ProxyChannel)
        protocol.dataReceived(H2_PREFACE[5:] + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        self.assertIsInstance(protocol._channel, ProxyH2Connection)
        self.assertEqual(client.value()[3:4], b"\x04")  # a SETTINGS frame

    def test_http11(self) -> None:
        """
        Anything else is HTTP/1.1, with h2c on or off.
        """
        for h2c in (True, False):
            protocol, client = self.connect(h2c)
            protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIsInstance(protocol._channel, ProxyChannel)
            self.assertEqual(statusOf(client.value()), 404)
        protocol, client = self.connect(False)
        protocol.dataReceived(H2_PREFACE)
        self.assertIsInstance(protocol._channel, ProxyChannel)

    def test_notOverTLS(self) -> None:
        """
        Over TLS (a transport that negotiates, e.g. by ALPN) the preface is
        not sniffed: ALPN decides.
        """
        from zope.interface import alsoProvides
        from twisted.internet.interfaces import INegotiated

        protocol, client = self.connect(True)
        alsoProvides(client, INegotiated)
        client.negotiatedProtocol = b"http/1.1"
        protocol.dataReceived(H2_PREFACE)
        self.assertIsInstance(protocol._channel, ProxyChannel)
