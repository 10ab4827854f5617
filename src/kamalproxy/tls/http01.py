# -*- test-case-name: tests.tls.test_acme_unit -*-
"""
The HTTP-01 challenge responder (RFC 8555 section 8.3).

Mount L{HTTP01Responder.resource} at C{/.well-known/acme-challenge/} on the
plain-HTTP listener (port 80).  The CA fetches
C{http://<host>/.well-known/acme-challenge/<token>} (Pebble and Let's
Encrypt fetch it several times, from several vantage points) and expects the
key authorization as the body.
"""

from __future__ import annotations

from typing import Dict, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from kamalproxy.tls.interfaces import IResponder

__all__ = ["HTTP01Responder", "CHALLENGE_PATH"]

CHALLENGE_PATH = b"/.well-known/acme-challenge/"


class _ChallengeResource(Resource):
    """
    A leaf answering C{GET /<token>} with the token's key authorization.
    """

    isLeaf = True

    def __init__(self, tokens: Dict[str, str]) -> None:
        super().__init__()
        self._tokens = tokens

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        postpath = request.postpath or []
        if len(postpath) == 1:
            try:
                token = postpath[0].decode("ascii")
            except UnicodeDecodeError:
                token = None
            if token is not None and token in self._tokens:
                return self._tokens[token].encode("ascii")
        request.setResponseCode(404)
        return b"Not Found\n"


@implementer(IResponder)
class HTTP01Responder:
    """
    Serves HTTP-01 key authorizations from memory.

    @ivar resource: the L{Resource} to mount at
        C{/.well-known/acme-challenge/}.
    """

    challengeType = "http-01"

    def __init__(self) -> None:
        self._tokens: Dict[str, str] = {}
        self.resource: Resource = _ChallengeResource(self._tokens)

    def startResponding(self, token: str, keyAuthorization: str) -> None:
        self._tokens[token] = keyAuthorization

    def stopResponding(self, token: str) -> None:
        self._tokens.pop(token, None)

    def keyAuthorizationForPath(self, path: bytes) -> Optional[str]:
        """
        The key authorization to answer for a full request path such as
        C{/.well-known/acme-challenge/<token>}, or L{None}; for routers that
        are leaf resources and cannot mount L{resource}.
        """
        if not path.startswith(CHALLENGE_PATH):
            return None
        token = path[len(CHALLENGE_PATH):].split(b"?", 1)[0]
        if not token or b"/" in token:
            return None
        try:
            return self._tokens.get(token.decode("ascii"))
        except UnicodeDecodeError:
            return None

    def tokens(self) -> Dict[str, str]:
        """
        The tokens being answered (a copy), for tests and diagnostics.
        """
        return dict(self._tokens)
