# -*- test-case-name: tests.tls.test_sni -*-
"""
Choosing the server certificate by TLS server name (SNI), and loading the
certificates it chooses from: custom PEM pairs given at deploy and ACME
records from the issuing service.

One L{CertificateOptions} serves the whole HTTPS listener; it has no
certificate of its own, and its C{contextForServerName} callback switches
each handshake to the context of the service that owns C{/} for the name
(exact, then one-label wildcard, then the default service).  A name no TLS
service owns, or one whose certificate has not arrived yet, keeps the
certificate-less context, so the handshake fails (the client sees a TLS
alert) rather than being answered with another host's certificate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Dict, Iterable, Optional

import attr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.logger import Logger

from kamalproxy.tls.store import CertificateRecord

__all__ = [
    "CertificateSelector",
    "LoadedCertificate",
    "contextFor",
    "loadCertificatePair",
]

log = Logger()

MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""
The TLS 1.2 cipher suites offered (TLS 1.3's are all modern): forward
secret, AEAD only, as Mozilla's "intermediate" profile and Go's defaults;
no static RSA key exchange and no CBC.
"""


def _ciphers() -> Any:
    return AcceptableCiphers.fromOpenSSLCipherString(MODERN_CIPHERS)


@attr.s(frozen=True, auto_attribs=True)
class LoadedCertificate:
    """
    A certificate ready to serve: its OpenSSL context and the leaf's expiry.
    """

    context: SSL.Context
    notAfter: datetime


def contextFor(record: CertificateRecord) -> LoadedCertificate:
    """
    An OpenSSL server context (TLS 1.2 or later with L{MODERN_CIPHERS},
    ALPN from the listening site) serving C{record}'s chain.

    @raise ValueError: the key does not match the certificate, or either is
        unreadable.
    """
    chain = record.certificates()
    if not chain:
        raise ValueError("no certificate")
    try:
        key = serialization.load_pem_private_key(record.key, password=None)
    except (TypeError, ValueError) as e:
        raise ValueError(f"unreadable private key ({e})") from None
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=_ciphers(),
        enableSessionTickets=True,  # returning clients resume instead of a full handshake
    )
    try:
        context = options.getContext()
    except SSL.Error as e:
        raise ValueError("private key does not match the certificate") from e
    return LoadedCertificate(context, chain[0].not_valid_after_utc)


def loadCertificatePair(certificatePath: str, keyPath: str) -> LoadedCertificate:
    """
    Read a PEM certificate chain and its PEM private key (custom
    certificates, C{--tls-certificate-path}/C{--tls-private-key-path}).

    @raise ValueError: C{"unable to load certificate: <reason>"}.
    """
    try:
        with open(certificatePath, "rb") as f:
            chain = f.read()
        with open(keyPath, "rb") as f:
            key = f.read()
    except OSError as e:
        raise ValueError(
            f"unable to load certificate: {e.strerror or e}: {e.filename}"
        ) from None
    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise ValueError(
            f"unable to load certificate: no PEM certificate in {certificatePath}"
        ) from None
    try:
        record = CertificateRecord(key=key, chain=chain, notAfter=certificates[0].not_valid_after_utc)
        return contextFor(record)
    except ValueError as e:
        raise ValueError(f"unable to load certificate: {e}") from None


def _decodeName(name: Optional[bytes]) -> Optional[str]:
    if not name:
        return None
    try:
        return name.decode("ascii").rstrip(".").lower()
    except UnicodeDecodeError:
        return None


class CertificateSelector:
    """
    The certificates the HTTPS listener can serve, and the choice among them.

    @ivar serviceFor: returns the service owning C{/} for a host name (C{""}
        for the default service), or L{None}; a service has C{options} and
        C{tlsCertificate} (a L{LoadedCertificate} or L{None}).
    @ivar acme: ACME certificates by lower-case host name.
    @ivar onDemand: called with C{(service, name)} when a handshake for a
        name of an on-demand TLS service finds no certificate (a
        L{kamalproxy.tls.ondemand.OnDemandTLS}), or L{None}.
    """

    def __init__(self, serviceFor: Callable[[str], Any]) -> None:
        self.serviceFor = serviceFor
        self.acme: Dict[str, LoadedCertificate] = {}
        self.onDemand: Optional[Callable[[Any, str], None]] = None

    def addRecord(self, host: str, record: CertificateRecord) -> None:
        """
        Serve C{record} for C{host} from now on (an issuing service's
        C{certificateChanged} observer); a broken record is logged and kept
        out.
        """
        try:
            self.acme[host.lower()] = contextFor(record)
        except ValueError as e:
            log.error("Not serving the certificate for {host}: {error}", host=host, error=e)
            return
        log.info("Serving a certificate for {host} valid until {until}",
                 host=host, until=record.notAfter.isoformat())

    def certificateFor(self, service: Any, host: str) -> Optional[LoadedCertificate]:
        """
        What C{service} serves for C{host}: its custom certificate, else the
        ACME one for C{host}, else L{None}.
        """
        if service is None or not service.options.service.tls_enabled:
            return None
        custom = getattr(service, "tlsCertificate", None)
        if service.options.service.customCertificate:
            return custom
        return self.acme.get(host.lower())

    def contextForServerName(self, name: Optional[bytes]) -> Optional[SSL.Context]:
        """
        The C{contextForServerName} callback: the context for the name sent
        by the client, or L{None} (no certificate: the handshake fails).
        Without SNI the default (host-less) service's certificate is used.
        """
        host = _decodeName(name)
        if host is None:
            if name:
                return None  # undecodable name
            host = ""
        service = self.serviceFor(host)
        loaded = self.certificateFor(service, host)
        if loaded is not None:
            return loaded.context
        if (
            host
            and self.onDemand is not None
            and service is not None
            and service.options.service.tls_enabled
            and service.options.service.tls_on_demand_url
        ):
            try:
                self.onDemand(service, host)
            except Exception:
                log.failure("On-demand TLS for {host} failed", host=host)
        return None

    def status(self, service: Any) -> Optional[str]:
        """
        What C{list} shows for a service's certificate: L{None} without TLS,
        C{"pending"} while any of its hosts has none, else the earliest
        expiry as an ISO 8601 date. A service below a path prefix shows the
        certificate of the service owning C{/} for its host, whose TLS it
        inherits.
        """
        options = service.options.service
        if not options.tls_enabled:
            return None
        owner = self.serviceFor(options.hosts[0]) if options.hosts else None
        if owner is not None and owner is not service:
            return self.status(owner)
        if service.options.service.customCertificate:
            loaded = service.tlsCertificate
            return loaded.notAfter.date().isoformat() if loaded is not None else "pending"
        expiries = []
        for host in self._acmeHosts(service):
            loaded = self.acme.get(host.lower())
            if loaded is None:
                return "pending"
            expiries.append(loaded.notAfter)
        return min(expiries).date().isoformat() if expiries else "pending"

    def expiries(self, services: Iterable[Any]) -> dict[str, datetime]:
        """
        When the certificate served for each host name of C{services}
        expires, by lower-case host name (C{*} for a default service's
        custom certificate); hosts still waiting for one are left out.
        """
        found: dict[str, datetime] = {}
        for service in services:
            options = service.options.service
            if not options.tls_enabled:
                continue
            if options.customCertificate:
                loaded = service.tlsCertificate
                if loaded is not None:
                    for host in options.hosts or ("*",):
                        found[host.lower()] = loaded.notAfter
                continue
            for host in self._acmeHosts(service):
                loaded = self.acme.get(host.lower())
                if loaded is not None:
                    found[host.lower()] = loaded.notAfter
        return found

    def _acmeHosts(self, service: Any) -> list[str]:
        """
        The host names an automatic TLS service gets ACME certificates
        for: its hosts, or for on-demand TLS (no hosts of its own) the
        names issued on demand for it.
        """
        if service.options.service.tls_on_demand_url:
            return [h for h in list(self.acme) if self.serviceFor(h) is service]
        return list(service.options.service.hosts)

    def serverOptions(self) -> CertificateOptions:
        """
        The listener's TLS options: TLS 1.2 or later with L{MODERN_CIPHERS},
        a certificate per server name.
        """
        return CertificateOptions(
            raiseMinimumTo=TLSVersion.TLSv1_2,
            acceptableCiphers=_ciphers(),
            enableSessionTickets=True,
            contextForServerName=self.contextForServerName,
        )
