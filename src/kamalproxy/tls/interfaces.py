# -*- test-case-name: tests.tls.test_acme_unit -*-
"""
Interfaces of the ACME layer: where certificates are kept and who answers
challenges.

Every zope Interface of L{kamalproxy.tls} lives here, so that type checkers
and readers find them in one place (klein C{_interfaces.py} style).
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

__all__ = ["ICertificateStore", "IResponder"]


class ICertificateStore(Interface):
    """
    A mapping from host names to L{kamalproxy.tls.store.CertificateRecord}s.

    Every method returns a L{Deferred}, so a store may be backed by anything
    (a directory, a database, memory).  Host names are lower-case ASCII
    (IDNA-encoded) strings.
    """

    def get(host: str) -> Any:
        """
        Look a host's certificate up.

        @param host: the host name.

        @return: a L{Deferred} firing with the
            L{kamalproxy.tls.store.CertificateRecord}, or with L{None} if
            there is none.
        """

    def store(host: str, record: Any) -> Any:
        """
        Save (or replace) a host's certificate.

        @param host: the host name.
        @param record: a L{kamalproxy.tls.store.CertificateRecord}.

        @return: a L{Deferred} firing with L{None} once the record is saved.
        """

    def all() -> Any:
        """
        Every stored certificate.

        @return: a L{Deferred} firing with a C{dict} mapping host names to
            L{kamalproxy.tls.store.CertificateRecord}s.
        """


class IResponder(Interface):
    """
    Answers one type of ACME challenge (RFC 8555 section 8) for the CA's
    validation requests.
    """

    challengeType = Attribute(
        "The ACME challenge type this responder answers, e.g. C{'http-01'}."
    )

    def startResponding(token: str, keyAuthorization: str) -> object:
        """
        Start answering the challenge identified by C{token}.

        @param token: the challenge token (base64url).
        @param keyAuthorization: C{token + "." + thumbprint(accountKey)}.

        @return: L{None} or a L{Deferred} firing once the responder is ready.
        """

    def stopResponding(token: str) -> object:
        """
        Stop answering the challenge identified by C{token}; unknown tokens
        are ignored.

        @return: L{None} or a L{Deferred}.
        """
