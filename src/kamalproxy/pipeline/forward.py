# -*- test-case-name: tests.pipeline.test_chain -*-
"""
The last stage: send the request to its target. A request whose body is
complete goes in one piece (L{kamalproxy.upstream.forwarding.Forwarding}); one whose
body is still arriving is streamed
(L{kamalproxy.upstream.streaming.StreamingForwarding}). The response flows back
through C{exchange.sink}.
"""

from __future__ import annotations

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.upstream.forwarding import Forwarding, stampRequest
from kamalproxy.routing.table import strippedPath
from kamalproxy.upstream.streaming import StreamingForwarding


def forward(exchange: Exchange) -> None:
    service = exchange.service
    options = service.options.target
    path = exchange.path
    if service.options.service.strip_prefix:
        path = strippedPath(path, exchange.prefix)
    exchange.upstreamPath = path + exchange.query
    headers = stampRequest(exchange, options)
    if exchange.complete:
        Forwarding(exchange, options).start(headers)
    else:
        StreamingForwarding(exchange, options).startStreaming(headers)
