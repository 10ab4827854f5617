# -*- test-case-name: tests.tls.test_acme_issuers -*-
"""
L{AcmeIssuers}: the certificate issuers the deployed services need.

A service with automatic TLS gets its certificates from one ACME directory
(C{--acme-directory}, else Let's Encrypt or, with C{--tls-staging}, its
staging directory) and keeps them in one cache directory (C{deploy
--tls-acme-cache-path}, else C{<state-dir>/certs}), under
C{<cache>/<hex sha256 of the directory URL>} as the original does.  Each
(directory, cache) pair in use gets its own L{AcmeIssuingService} with its
own account key, made when the first service naming it is deployed or
restored; the certificates already in its cache are served at once.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from kamalproxy.routing.options import ServiceOptions
from kamalproxy.tls.service import AcmeIssuingService
from kamalproxy.tls.store import DirectoryStore, cacheDirectoryFor

__all__ = ["AcmeIssuers", "IssuerKey"]

log = Logger()

IssuerKey = tuple[str, str]
"""An issuer's ACME directory URL and certificate cache base directory."""


class AcmeIssuers(MultiService):
    """
    One L{AcmeIssuingService} per (ACME directory, cache directory) in use,
    each keeping the hosts of the services that use that pair issued and
    renewed.

    @ivar router: the L{kamalproxy.routing.router.Router} whose services need
        certificates.
    @ivar selector: the L{kamalproxy.tls.sni.CertificateSelector} serving
        them (told of every certificate loaded or issued).
    """

    def __init__(
        self,
        clock: IReactorTime,
        router: Any,
        selector: Any,
        responder: Any,
        directoryFor: Callable[[ServiceOptions], str],
        defaultCache: str,
        clientFor: Callable[[str, DirectoryStore], Any],
        issuanceFailed: Optional[Callable[[str, Failure], Any]] = None,
        **timing: Any,
    ) -> None:
        """
        @param directoryFor: the ACME directory URL of a service's options.
        @param defaultCache: the cache base when a deploy names none.
        @param clientFor: an async callable making the ACME client for a
            directory URL and the store that holds its account key.
        @param issuanceFailed: called with C{(host, failure)} whenever an
            issuer fails to get a certificate (for metrics).
        @param timing: C{renewBefore}/C{checkInterval} for every issuer.
        """
        super().__init__()
        self.clock = clock
        self.router = router
        self.selector = selector
        self.responder = responder
        self.directoryFor = directoryFor
        self.defaultCache = defaultCache
        self.clientFor = clientFor
        self.issuanceFailed = issuanceFailed
        self.timing = timing
        self.issuers: dict[IssuerKey, AcmeIssuingService] = {}

    def keyFor(self, options: ServiceOptions) -> IssuerKey:
        """
        The directory and cache a service's certificates come from.
        """
        return (self.directoryFor(options), options.tls_acme_cache_path or self.defaultCache)

    def issuerFor(self, options: ServiceOptions) -> AcmeIssuingService:
        """
        The issuer for a service's options, made (and started, if this
        service runs) on first use.
        """
        key = self.keyFor(options)
        issuer = self.issuers.get(key)
        if issuer is None:
            issuer = self._make(key)
        return issuer

    def hostsFor(self, key: IssuerKey) -> list[str]:
        """
        The hosts the issuer for C{key} keeps certificates for: those of its
        automatic TLS services, and the on-demand hosts it has issued.
        """
        hosts = set(self.router.tlsHosts(lambda options: self.keyFor(options) == key))
        for host in list(self.selector.acme):
            service = self.router.serviceForHost(host)
            if service is None:
                continue
            options = service.options.service
            if options.tls_enabled and options.tls_on_demand_url and self.keyFor(options) == key:
                hosts.add(host)
        return sorted(hosts)

    def update(self) -> None:
        """
        Make the issuers that deployed services need and have every running
        one look for certificates to issue now (after a deploy or remove).
        """
        for service in list(self.router.services.values()):
            options = service.options.service
            if options.tls_enabled and not options.customCertificate:
                self.issuerFor(options)
        if self.running:
            for issuer in self.issuers.values():
                issuer.check()

    def _make(self, key: IssuerKey) -> AcmeIssuingService:
        url, cache = key
        store = DirectoryStore(cacheDirectoryFor(cache, url))
        store.all().addCallbacks(
            lambda records: [self.selector.addRecord(h, r) for h, r in records.items()],
            lambda failure: log.failure("Reading certificates in {path}", failure, path=store.path.path),
        )

        async def makeClient() -> Any:
            return await self.clientFor(url, store)

        issuer = AcmeIssuingService(
            clock=self.clock,
            store=store,
            responder=self.responder,
            hosts=lambda: self.hostsFor(key),
            clientFactory=makeClient,
            certificateChanged=self.selector.addRecord,
            issuanceFailed=self.issuanceFailed,
            **self.timing,
        )
        self.issuers[key] = issuer
        issuer.setServiceParent(self)
        return issuer

    def defaults(self, directories: list[str]) -> None:
        """
        Make the issuers for C{directories} with the default cache, so that
        their certificates are served from the start.
        """
        for url in directories:
            key = (url, self.defaultCache)
            if key not in self.issuers:
                self._make(key)
