# -*- test-case-name: tests.tls.test_reload -*-
"""
Custom certificates (C{deploy --tls-certificate-path/--tls-private-key-path})
reloaded when their files change, so that a renewed pair is served without
a deploy.

Every C{interval} seconds L{CertificateReloader} compares each such pair's
file signature (inode, size, modification time of both files) with the one
taken when it was last loaded; a changed pair is read again and, if it
loads, serves every new handshake from then on.  A pair that does not load
(a rotation caught half-way, a key that does not match) is logged once and
the previous certificate stays in use until the files change again.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from kamalproxy.tls.sni import loadCertificatePair

__all__ = ["DEFAULT_RELOAD_INTERVAL", "CertificateReloader", "fileSignature"]

DEFAULT_RELOAD_INTERVAL = 10.0

FileSignature = Optional[tuple[tuple[int, int, int], ...]]


def fileSignature(*paths: str) -> FileSignature:
    """
    What changes when any of C{paths} is rewritten or replaced: inode, size
    and modification time of each; L{None} if one cannot be read.
    """
    try:
        stats = [os.stat(path) for path in paths]
    except OSError:
        return None
    return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats)


class CertificateReloader(Service):
    """
    Reloads the custom certificate of every service of C{router} whose files
    changed, every C{interval} seconds on C{clock}.

    Services carry the signature of the files they were loaded from as
    C{tlsCertificateSignature} (set by the router at deploy and restore).
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, router: Any, interval: float = DEFAULT_RELOAD_INTERVAL) -> None:
        self.clock = clock
        self.router = router
        self.interval = interval
        self._loop: Optional[LoopingCall] = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self) -> None:
        """
        Reload every custom certificate whose files changed since it was
        loaded.
        """
        for name, service in list(self.router.services.items()):
            options = service.options.service
            if not options.customCertificate:
                continue
            paths = (options.tls_certificate_path, options.tls_private_key_path)
            signature = fileSignature(*paths)
            if signature == getattr(service, "tlsCertificateSignature", None):
                continue
            service.tlsCertificateSignature = signature
            try:
                loaded = loadCertificatePair(*paths)
            except ValueError as e:
                self.log.error(
                    "Reloading the TLS certificate of {service} failed, still serving the "
                    "previous one: {error}",
                    service=name,
                    error=e,
                )
                continue
            service.tlsCertificate = loaded
            self.log.info(
                "Reloaded the TLS certificate of {service} from {path}",
                service=name,
                path=options.tls_certificate_path,
            )
