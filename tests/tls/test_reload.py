"""
Tests for L{kamalproxy.tls.reload}: custom certificate pairs reloaded when
their files change.
"""

from __future__ import annotations

import os

from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.routing.router import Router
from kamalproxy.tls.reload import CertificateReloader, fileSignature

from .._helpers import FakeTargets, tempDir
from tests.tls.test_sni import selfSigned, tlsOptions


def _subject(loaded: object) -> str:
    """
    The common name of the certificate a loaded pair's context serves.
    """
    served = SSL.Connection(loaded.context, None).get_certificate().to_cryptography()  # type: ignore[attr-defined]
    return str(served.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


class ReloadTests(SynchronousTestCase):
    """
    A deployed custom pair, its files rewritten on disk.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.router = Router(self.clock, FakeTargets().connectorFor)
        self.addCleanup(self.router.stop)
        self.dir = tempDir(self)
        self.certificate = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.write("first.test")
        d = self.router.deploy(
            "app", ["10.0.0.1:3000"],
            tlsOptions("first.test", "second.test", tls_certificate_path=self.certificate,
                       tls_private_key_path=self.key),
        )
        self.successResultOf(d)
        self.reloader = CertificateReloader(self.clock, self.router, interval=10)
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def write(self, name: str, key: bool = True, certificate: bool = True) -> None:
        chain, private = selfSigned(name)
        if certificate:
            with open(self.certificate, "wb") as f:
                f.write(chain)
        if key:
            with open(self.key, "wb") as f:
                f.write(private)
        # A new mtime even on filesystems with coarse timestamps.
        for path in (self.certificate, self.key):
            st = os.stat(path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    @property
    def served(self) -> str:
        return _subject(self.router.services["app"].tlsCertificate)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events if e.get("log_namespace", "").startswith("kamalproxy")]

    def test_unchangedNotReloaded(self) -> None:
        """
        Files that did not change are not read again.
        """
        before = self.router.services["app"].tlsCertificate
        self.clock.advance(10)
        self.assertIs(self.router.services["app"].tlsCertificate, before)

    def test_changedPairReloaded(self) -> None:
        """
        A rewritten pair is served from the next check on, and logged.
        """
        self.assertEqual(self.served, "first.test")
        self.write("renewed.test")
        self.clock.advance(9)
        self.assertEqual(self.served, "first.test")
        self.clock.advance(1)
        self.assertEqual(self.served, "renewed.test")
        self.assertTrue(any("Reloaded the TLS certificate of app" in m for m in self.messages()))

    def test_halfRotationKeepsOldCertificate(self) -> None:
        """
        A certificate rewritten before its key (the pair does not match)
        leaves the old certificate serving, with one error logged however
        many checks pass; once the key follows, the new pair is served.
        """
        self.write("renewed.test", key=False)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual(self.served, "first.test")
        errors = [m for m in self.messages() if "failed, still serving the previous one" in m]
        self.assertEqual(len(errors), 1, errors)
        # the key of the new certificate arrives
        chain = open(self.certificate, "rb").read()
        self.write("unused.test", certificate=False)
        with open(self.certificate, "wb") as f:
            f.write(chain)
        self.clock.advance(10)
        self.assertEqual(self.served, "first.test")  # that key is for another certificate
        self.write("final.test")
        self.clock.advance(10)
        self.assertEqual(self.served, "final.test")

    def test_removedFilesKeepOldCertificate(self) -> None:
        """
        Deleted files leave the loaded certificate serving.
        """
        os.unlink(self.certificate)
        self.clock.advance(10)
        self.assertEqual(self.served, "first.test")

    def test_signatureTracksReplacement(self) -> None:
        """
        Replacing a file by rename (as certbot and most tools do) changes
        the signature even with the same size and time.
        """
        before = fileSignature(self.certificate)
        replacement = self.certificate + ".new"
        with open(self.certificate, "rb") as f, open(replacement, "wb") as g:
            g.write(f.read())
        st = os.stat(self.certificate)
        os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(replacement, self.certificate)
        self.assertNotEqual(fileSignature(self.certificate), before)
        self.assertIsNone(fileSignature(os.path.join(self.dir, "missing")))
