# -*- test-case-name: tests.tls.test_acme_unit -*-
"""
Certificate records and the stores that keep them.

L{DirectoryStore} does B{synchronous} file I/O on the reactor thread: each
file is a few kilobytes, read once at start-up and written once per issuance
(a handful of times per host per quarter), so a thread hop would cost more
than the C{open}/C{fsync}/C{rename} it avoids.  Writes are atomic (temporary
file, C{fsync}, C{rename}, directory C{fsync}) and every file holding a
private key is created with mode C{0600}.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta
from typing import Dict, List, Optional, Union

import attr
from cryptography import x509
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

from kamalproxy.daemon.atomicfile import atomicWrite
from kamalproxy.tls.interfaces import ICertificateStore

__all__ = [
    "CertificateRecord",
    "DirectoryStore",
    "MemoryStore",
    "cacheDirectoryFor",
    "notAfterFromPEM",
]

log = Logger()

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL
)
_HOST = re.compile(r"^[a-z0-9_*](?:[a-z0-9_.*-]{0,252})$")


def notAfterFromPEM(chain: bytes) -> datetime:
    """
    The expiry time of the first (leaf) certificate of a PEM chain.

    @param chain: one or more PEM C{CERTIFICATE} blocks, leaf first.

    @return: a timezone-aware UTC L{datetime}.

    @raise ValueError: if C{chain} holds no certificate.
    """
    certificates = x509.load_pem_x509_certificates(chain)
    return certificates[0].not_valid_after_utc


def _splitPEM(data: bytes) -> Dict[str, List[bytes]]:
    """
    Sort the PEM blocks of C{data} into C{"key"} and C{"chain"} lists.
    """
    result: Dict[str, List[bytes]] = {"key": [], "chain": []}
    for match in _PEM_BLOCK.finditer(data):
        block = match.group(0)
        if not block.endswith(b"\n"):
            block += b"\n"
        label = match.group(1)
        if label.endswith(b"PRIVATE KEY"):
            result["key"].append(block)
        elif label == b"CERTIFICATE":
            result["chain"].append(block)
    return result


@attr.s(frozen=True, auto_attribs=True)
class CertificateRecord:
    """
    A private key and its certificate chain.

    @ivar key: the private key, PEM (PKCS#8).
    @ivar chain: the certificate chain, PEM, leaf first.
    @ivar notAfter: when the leaf expires (timezone-aware, UTC).
    """

    key: bytes
    chain: bytes
    notAfter: datetime

    @classmethod
    def fromPEM(cls, key: bytes, chain: bytes) -> "CertificateRecord":
        """
        Build a record, reading C{notAfter} from the leaf of C{chain}.
        """
        return cls(key=key, chain=chain, notAfter=notAfterFromPEM(chain))

    @classmethod
    def fromCombinedPEM(cls, data: bytes) -> "CertificateRecord":
        """
        Parse the output of L{toPEM}: one private key plus the chain.

        @raise ValueError: if there is not exactly one key or no certificate.
        """
        blocks = _splitPEM(data)
        if len(blocks["key"]) != 1 or not blocks["chain"]:
            raise ValueError("expected one private key and at least one certificate")
        return cls.fromPEM(blocks["key"][0], b"".join(blocks["chain"]))

    def toPEM(self) -> bytes:
        """
        The key followed by the chain, as one PEM document.
        """
        key = self.key if self.key.endswith(b"\n") else self.key + b"\n"
        return key + self.chain

    def certificates(self) -> List[x509.Certificate]:
        """
        The parsed chain, leaf first.
        """
        return x509.load_pem_x509_certificates(self.chain)

    def expiresWithin(self, now: datetime, margin: timedelta) -> bool:
        """
        Whether the leaf expires within C{margin} of C{now} (or already has).
        """
        return self.notAfter - now <= margin


def _checkHost(host: str) -> str:
    """
    Make sure C{host} is a lower-case DNS name usable as a file name.
    """
    if not _HOST.match(host) or ".." in host:
        raise ValueError(f"not a storable host name: {host!r}")
    return host


def cacheDirectoryFor(base: Union[str, FilePath], directoryURL: str) -> FilePath:
    """
    The per-CA cache directory: C{base/<hex sha256 of directoryURL>}, so
    changing the ACME directory starts a fresh certificate set (as
    kamal-proxy does).
    """
    if not isinstance(base, FilePath):
        base = FilePath(base)
    return base.child(hashlib.sha256(directoryURL.encode("utf-8")).hexdigest())


@implementer(ICertificateStore)
class MemoryStore:
    """
    An L{ICertificateStore} in a C{dict}, for tests and ephemeral use.
    """

    def __init__(self, records: Optional[Dict[str, CertificateRecord]] = None) -> None:
        self._records: Dict[str, CertificateRecord] = dict(records or {})

    def get(self, host: str) -> "Deferred[Optional[CertificateRecord]]":
        return succeed(self._records.get(host))

    def store(self, host: str, record: CertificateRecord) -> "Deferred[None]":
        self._records[host] = record
        return succeed(None)

    def all(self) -> "Deferred[Dict[str, CertificateRecord]]":
        return succeed(dict(self._records))


@implementer(ICertificateStore)
class DirectoryStore:
    """
    An L{ICertificateStore} keeping one C{<host>.pem} file (private key +
    chain, mode C{0600}) per host in a directory (created mode C{0700}).

    The account key lives next to them as C{account.key}; see
    L{kamalproxy.tls.keys.loadOrCreateAccountKey} and L{accountKeyPath}.
    """

    suffix = ".pem"

    def __init__(self, path: Union[str, FilePath]) -> None:
        self.path = path if isinstance(path, FilePath) else FilePath(path)

    def _ensureDirectory(self) -> None:
        if not self.path.isdir():
            os.makedirs(self.path.path, mode=0o700, exist_ok=True)

    def _file(self, host: str) -> FilePath:
        return self.path.child(_checkHost(host) + self.suffix)

    @property
    def accountKeyPath(self) -> FilePath:
        """
        Where the ACME account key of this store lives.
        """
        return self.path.child("account.key")

    def _read(self, path: FilePath) -> Optional[CertificateRecord]:
        try:
            data = path.getContent()
        except FileNotFoundError:
            return None
        try:
            return CertificateRecord.fromCombinedPEM(data)
        except ValueError as e:
            log.warn("Ignoring unreadable certificate file {path}: {error}",
                     path=path.path, error=str(e))
            return None

    def get(self, host: str) -> "Deferred[Optional[CertificateRecord]]":
        return succeed(self._read(self._file(host)))

    def store(self, host: str, record: CertificateRecord) -> "Deferred[None]":
        self._ensureDirectory()
        atomicWrite(self._file(host), record.toPEM(), 0o600)
        return succeed(None)

    def all(self) -> "Deferred[Dict[str, CertificateRecord]]":
        records: Dict[str, CertificateRecord] = {}
        if self.path.isdir():
            for child in sorted(self.path.children()):
                name = child.basename()
                if not name.endswith(self.suffix) or name.startswith("."):
                    continue
                record = self._read(child)
                if record is not None:
                    records[name[: -len(self.suffix)]] = record
        return succeed(records)
