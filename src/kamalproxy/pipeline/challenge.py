# -*- test-case-name: tests.pipeline.test_chain -*-
"""
Stage: answer ACME HTTP-01 challenges ahead of routing, so that neither a
redirect nor a missing route can stand in a certificate's way.
"""

from __future__ import annotations

from typing import Any, Callable

from kamalproxy.pipeline.exchange import Exchange

CHALLENGE_PATH = b"/.well-known/acme-challenge/"


def answerChallenges(router: Any) -> Callable[[Exchange, Callable[[Exchange], None]], None]:
    """
    The stage answering the challenges of C{router.challenges} (an
    L{kamalproxy.tls.http01.HTTP01Responder}, or L{None}).
    """

    def answerChallenge(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
        challenges = router.challenges
        if challenges is not None and exchange.path.startswith(CHALLENGE_PATH):
            keyAuthorization = challenges.keyAuthorizationForPath(exchange.path)
            if keyAuthorization is not None:
                body = keyAuthorization.encode("ascii")

                def render(request: Any) -> bytes:
                    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                    request.setHeader(b"cache-control", b"no-store")
                    request.setHeader(b"content-length", b"%d" % len(body))
                    return body

                exchange.respond(render)
                return
        proceed(exchange)

    return answerChallenge
