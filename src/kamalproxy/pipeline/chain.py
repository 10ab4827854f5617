# -*- test-case-name: tests.pipeline.test_chain -*-
"""
The one place where the request pipeline is composed.

Each stage is a function C{stage(exchange, proceed)} that looks at the
exchange when the request's head has arrived (before the body is read) and
either answers (a page, a redirect, a refusal) or calls C{proceed(exchange)}
to hand it to the next stage, possibly later (response buffering of the
request body waits for the body). Stages that act on the response wrap
C{exchange.sink}. A new per-request concern is one module and one line in
L{buildChain}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.balance import balance
from kamalproxy.pipeline.bodylimits import limitBody
from kamalproxy.pipeline.cache import cacheResponses
from kamalproxy.pipeline.challenge import answerChallenges
from kamalproxy.pipeline.clientip import takeClientAddress
from kamalproxy.pipeline.compression import compressResponses
from kamalproxy.pipeline.cookiescope import scopeCookies
from kamalproxy.pipeline.forward import forward
from kamalproxy.pipeline.pausegate import pauseGate
from kamalproxy.pipeline.responsebuffer import bufferResponses
from kamalproxy.pipeline.rollout import splitRollout
from kamalproxy.pipeline.route import route
from kamalproxy.pipeline.sendfile import sendfile
from kamalproxy.pipeline.tlsgate import secureChannel

Handler = Callable[[Exchange], None]
Stage = Callable[[Exchange, Handler], None]


def compose(*stages: Stage, last: Handler) -> Handler:
    """
    One handler that runs C{stages} in order, then C{last}.
    """
    handler = last
    for stage in reversed(stages):
        handler = _bind(stage, handler)
    return handler


def _bind(stage: Stage, proceed: Handler) -> Handler:
    def handle(exchange: Exchange) -> None:
        stage(exchange, proceed)

    handle.__qualname__ = getattr(stage, "__qualname__", "stage")
    return handle


def buildChain(router: Any, clock: IReactorTime, send: Handler = forward) -> Handler:
    """
    The proxy's request pipeline, in the order a request goes through it:

      1. an ACME HTTP-01 challenge is answered (before anything can
         redirect or refuse it);
      2. the request is routed by host and path prefix (404 when nothing
         matches);
      3. TLS gate: TLS to a service without TLS is refused (503), plain
         HTTP redirected to HTTPS, other hosts to the canonical host;
      4. client address: with C{--client-ip-header}, that header's
         address replaces the client's C{X-Forwarded-For};
      5. pause gate: a stopped service answers 503 (maintenance page), a
         paused one holds the request until resumed; its health-check
         path answers 200;
      6. body limits: a declared body over the maximum is refused at once
         (413), the body is buffered (memory, then disk) or streamed;
      7. cookie scope: with C{--scope-cookie-paths}, the response's
         cookies get paths under the matched prefix;
      8. compression: the sink encodes the response (zstd, brotli, gzip)
         when the client accepts it and the response is worth it; it is
         the innermost of the stages that change the body, so the ones after it (the
         X-Sendfile stage, the cache) see identity responses;
      9. X-Sendfile: the app is told it may hand files over (when the
         service has sendfile roots) and the sink replaces a response
         naming a file with the file; the header never reaches the client;
     10. response buffering wraps the response sink when the service
         buffers responses;
     11. rollout split: a request the service's rollout split selects (by
         its C{kamal-rollout} cookie) goes to the rollout group;
     12. cache: a request the HTTP cache can answer is answered from it;
         otherwise the response sink is wrapped to store the response
         (the key knows the group chosen above);
     13. balance: a healthy target is picked (503 when there is none);
     14. forward: the request is sent to the target and its response
         flows back out through the sinks.

    C{router} supplies the routes, the ACME responder, the certificate
    selector, the HTTP cache and the HTTPS port (see L{kamalproxy.routing.router.Router}); C{send}
    replaces the last stage (a test's or an embedding application's own).
    """
    return compose(
        answerChallenges(router),
        route(router),
        secureChannel(router),
        takeClientAddress,
        pauseGate,
        limitBody,
        scopeCookies,
        compressResponses(router),
        sendfile,
        bufferResponses,
        splitRollout,
        cacheResponses(router),
        balance,
        last=send,
    )
