# -*- test-case-name: tests.pipeline.test_chain -*-
"""
Stage: find the service that owns the request's host and path (404 when
none does; 400 for a request target that is not a path).
"""

from __future__ import annotations

from typing import Any, Callable

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.twistedcompat import fieldKey, rawHeaders

_HOST = fieldKey(b"host")


def route(router: Any) -> Callable[[Exchange, Callable[[Exchange], None]], None]:
    """
    The routing stage over C{router}'s table (L{kamalproxy.routing.router.Router.routeFor}).
    """
    routeFor = router.routeFor

    def routeRequest(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
        path = exchange.path
        if not path.startswith(b"/"):
            exchange.respondWithPage(400)
            return
        match = routeFor((rawHeaders(exchange.request.requestHeaders).get(_HOST) or (None,))[0], path)
        if match is None:
            exchange.respondWithPage(404)
            return
        service, exchange.prefix = match
        exchange.service = service
        exchange.group = service.group
        exchange.errorPages = service.errorPages
        proceed(exchange)

    return routeRequest
