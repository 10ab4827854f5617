# -*- test-case-name: tests.tls.test_acme_unit -*-
"""
Private keys: ECDSA P-256 for certificates and for the ACME account.

Key generation is CPU work, so it runs in the reactor's thread pool
(L{generatePrivateKeyPEM}); only parsing tiny PEM files happens on the reactor
thread.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import josepy as jose
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from kamalproxy.tls.store import atomicWrite

__all__ = [
    "deferToReactorThreadPool",
    "generatePrivateKeyPEM",
    "loadOrCreateAccountKey",
    "newPrivateKeyPEM",
]

log = Logger()
_T = TypeVar("_T")


def newPrivateKeyPEM() -> bytes:
    """
    Generate an ECDSA P-256 key, synchronously.

    @return: the key as unencrypted PKCS#8 PEM.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def deferToReactorThreadPool(
    reactor: Any, f: Callable[..., _T], *args: Any, **kwargs: Any
) -> "Deferred[_T]":
    """
    Run C{f} in C{reactor}'s thread pool.

    @param reactor: an L{IReactorThreads} provider.
    """
    return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args, **kwargs)


def generatePrivateKeyPEM(reactor: Any) -> "Deferred[bytes]":
    """
    Generate an ECDSA P-256 key off the reactor thread.

    @param reactor: an L{IReactorThreads} provider.

    @return: a L{Deferred} firing with the PKCS#8 PEM key.
    """
    return deferToReactorThreadPool(reactor, newPrivateKeyPEM)


def _jwkFromPEM(pem: bytes) -> jose.JWK:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the ACME account key must be an ECDSA key")
    return jose.JWKEC(key=key)


async def loadOrCreateAccountKey(reactor: Any, path: FilePath) -> jose.JWK:
    """
    Load the ACME account key from C{path} (PEM), or generate one off the
    reactor thread and save it there with mode C{0600}.

    @param reactor: an L{IReactorThreads} provider.
    @param path: usually L{kamalproxy.tls.store.DirectoryStore.accountKeyPath}.

    @return: the key as a josepy L{jose.JWKEC}.
    """
    if path.exists():
        return _jwkFromPEM(path.getContent())
    pem = await generatePrivateKeyPEM(reactor)
    os.makedirs(path.parent().path, mode=0o700, exist_ok=True)
    atomicWrite(path, pem, 0o600)
    log.info("Created ACME account key {path}", path=path.path)
    return _jwkFromPEM(pem)
