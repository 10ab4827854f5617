"""
Tests for L{kamalproxy.tls.issuers}: one ACME issuer per (directory, cache)
in use, and C{deploy --tls-acme-cache-path}.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Sequence

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.control.flags import parseDeploy
from kamalproxy.routing.options import InvalidOptions, normalizeDeploy
from kamalproxy.routing.router import Router
from kamalproxy.tls.http01 import HTTP01Responder
from kamalproxy.tls.issuers import AcmeIssuers
from kamalproxy.tls.sni import CertificateSelector
from kamalproxy.tls.store import DirectoryStore, cacheDirectoryFor

from .._helpers import FakeTargets, tempDir
from tests.tls.test_sni import record, tlsOptions

DIRECTORY = "https://ca.test/directory"
STAGING = "https://ca.test/staging"


class _Issuer:
    """
    A fake ACME client: a self-signed certificate for whatever is asked.
    """

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def issue(self, names: Sequence[str], responder: Any) -> Any:
        self.asked.append(tuple(names))
        return succeed(record(*names))


class FlagTests(SynchronousTestCase):
    """
    The deploy flag and its checks.
    """

    def test_madeAbsolute(self) -> None:
        """
        C{--tls-acme-cache-path} is carried, made absolute against the
        command's working directory.
        """
        _, _, options = parseDeploy(
            ["s", "--target", "web", "--host", "a.test", "--tls", "--tls-acme-cache-path", "certs"]
        )
        self.assertEqual(options.service.tls_acme_cache_path, os.path.abspath("certs"))

    def test_relativeRefused(self) -> None:
        """
        A relative path sent to the daemon directly (not through the CLI) is
        refused: the daemon's working directory means nothing to the caller.
        """
        error = self.assertRaises(
            InvalidOptions,
            normalizeDeploy,
            "s",
            ["web:80"],
            tlsOptions("a.test", tls_acme_cache_path="certs"),
        )
        self.assertEqual(str(error), "--tls-acme-cache-path must be an absolute path")


class PoolTests(SynchronousTestCase):
    """
    L{AcmeIssuers} over a real L{Router} and L{CertificateSelector}.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.router = Router(self.clock, FakeTargets().connectorFor)
        self.addCleanup(self.router.stop)
        self.selector = CertificateSelector(self.router.serviceForHost)
        self.router.certificates = self.selector
        self.root = tempDir(self)
        self.defaultCache = os.path.join(self.root, "state", "certs")
        self.clients: dict[str, _Issuer] = {}

        async def clientFor(url: str, store: DirectoryStore) -> _Issuer:
            return self.clients.setdefault(store.path.path, _Issuer())

        self.pool = AcmeIssuers(
            self.clock,
            self.router,
            self.selector,
            HTTP01Responder(),
            lambda options: STAGING if options.tls_staging else DIRECTORY,
            self.defaultCache,
            clientFor,
        )
        self.router.onChange = lambda snapshot: self.pool.update()

    def deploy(self, name: str, *hosts: str, **service: Any) -> None:
        d = self.router.deploy(name, ["10.0.0.1:3000"], tlsOptions(*hosts, **service))
        self.successResultOf(d)

    def test_oneIssuerPerDirectoryAndCache(self) -> None:
        """
        Services using the default cache share its issuer; a service naming
        its own cache, or staging, gets another, each keeping only its own
        services' hosts.
        """
        own = os.path.join(self.root, "own")
        self.deploy("a", "a.test")
        self.deploy("b", "b.test")
        self.deploy("c", "c.test", tls_acme_cache_path=own)
        self.deploy("s", "s.test", tls_staging=True)
        keys = sorted(self.pool.issuers)
        self.assertEqual(
            keys,
            sorted([(DIRECTORY, self.defaultCache), (DIRECTORY, own), (STAGING, self.defaultCache)]),
        )
        self.assertEqual(self.pool.hostsFor((DIRECTORY, self.defaultCache)), ["a.test", "b.test"])
        self.assertEqual(self.pool.hostsFor((DIRECTORY, own)), ["c.test"])
        self.assertEqual(self.pool.hostsFor((STAGING, self.defaultCache)), ["s.test"])
        store = self.pool.issuers[(DIRECTORY, own)].store
        self.assertEqual(store.path, cacheDirectoryFor(own, DIRECTORY))

    def test_issuanceFailedGivenToEveryIssuer(self) -> None:
        """
        The pool's C{issuanceFailed} (the metrics') is every issuer's.
        """
        self.pool.issuanceFailed = observer = lambda host, failure: None
        self.deploy("a", "a.test")
        self.deploy("s", "s.test", tls_staging=True)
        self.assertTrue(self.pool.issuers)
        for issuer in self.pool.issuers.values():
            self.assertIs(issuer.issuanceFailed, observer)

    def test_issuesIntoTheNamedCache(self) -> None:
        """
        A running pool issues a deployed host's certificate into the cache
        the deploy named (key file mode 0600), and serves it.
        """
        own = os.path.join(self.root, "own")
        self.pool.startService()
        self.addCleanup(self.pool.stopService)
        self.deploy("c", "c.test", tls_acme_cache_path=own)
        self.clock.advance(0)
        path = os.path.join(cacheDirectoryFor(own, DIRECTORY).path, "c.test.pem")
        self.assertTrue(os.path.exists(path))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertIn("c.test", self.selector.acme)
        self.assertFalse(os.path.exists(os.path.join(self.defaultCache)))

    def test_cachedCertificatesServed(self) -> None:
        """
        Certificates already in a named cache are served as soon as a
        service using that cache is deployed, without asking the CA.
        """
        own = os.path.join(self.root, "own")
        store = DirectoryStore(cacheDirectoryFor(own, DIRECTORY))
        self.successResultOf(store.store("c.test", record("c.test")))
        self.pool.startService()
        self.addCleanup(self.pool.stopService)
        self.deploy("c", "c.test", tls_acme_cache_path=own)
        self.clock.advance(0)
        self.assertIn("c.test", self.selector.acme)
        self.assertEqual(self.clients.get(store.path.path, _Issuer()).asked, [])

    def test_unusableCacheRefused(self) -> None:
        """
        A cache path that cannot be made a directory fails the deploy with a
        clear message and changes nothing.
        """
        self.deploy("c", "c.test")
        before = self.router.services["c"]
        blocker = os.path.join(self.root, "file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        d = self.router.deploy(
            "c", ["10.0.0.2:3000"],
            tlsOptions("c.test", tls_acme_cache_path=os.path.join(blocker, "certs")),
        )
        error = self.failureResultOf(d, InvalidOptions).value
        self.assertRegex(str(error), r"^unable to use ACME cache path .*/file/certs: ")
        self.assertIs(self.router.services["c"], before)

    def test_customCertificateNeedsNoIssuer(self) -> None:
        """
        Services without ACME (no TLS, or a custom certificate) make no
        issuer.
        """
        from tests.tls.test_sni import writePair

        certificate, key = writePair(self, "c.test")
        self.deploy(
            "c", "c.test", tls_certificate_path=certificate, tls_private_key_path=key,
            tls_acme_cache_path=os.path.join(self.root, "unused"),
        )
        self.assertEqual(self.pool.issuers, {})
        self.assertFalse(os.path.exists(os.path.join(self.root, "unused")))

    def test_onDemandHostsFollowTheirService(self) -> None:
        """
        On-demand hosts are kept by the issuer of the on-demand service's
        cache.
        """
        own = os.path.join(self.root, "own")
        d = self.router.deploy(
            "shop", ["10.0.0.1:3000"],
            tlsOptions(tls_on_demand_url="/allow", tls_acme_cache_path=own),
        )
        self.successResultOf(d)
        self.selector.addRecord("buyer.test", record("buyer.test"))
        self.assertEqual(self.pool.hostsFor((DIRECTORY, own)), ["buyer.test"])
        self.assertEqual(self.pool.hostsFor((DIRECTORY, self.defaultCache)), [])
        self.assertIs(
            self.pool.issuerFor(self.router.services["shop"].options.service),
            self.pool.issuers[(DIRECTORY, own)],
        )

