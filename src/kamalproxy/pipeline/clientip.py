# -*- test-case-name: tests.pipeline.test_clientip -*-
"""
Stage: the client's address from a header a balancer or CDN in front sets
(C{--client-ip-header}, e.g. C{CF-Connecting-IP}).

The named header's values replace the request's C{X-Forwarded-For} (which
the client could have written itself); without the header the request
carries no C{X-Forwarded-For} at all. The forwarding rules then apply as
usual: with C{--forward-headers} the target gets C{X-Forwarded-For: <that
address>, <peer>}, without it only the peer; the request log's
C{remote_addr} is that address either way.
"""

from __future__ import annotations

from typing import Callable

from kamalproxy.pipeline.exchange import Exchange


def takeClientAddress(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    name = exchange.service.options.service.client_ip_header
    if name:
        headers = exchange.request.requestHeaders
        values = headers.getRawHeaders(name.encode("ascii"))
        if values:
            headers.setRawHeaders(b"x-forwarded-for", values)
        else:
            headers.removeHeader(b"x-forwarded-for")
        exchange.trustForwarded = True  # for the log: the address is the header's
    proceed(exchange)


__all__ = ["takeClientAddress"]
