# -*- test-case-name: tests.pipeline.test_chain -*-
"""
Stage: the request body rules of the service, decided when the head has
arrived. A declared body over C{--max-request-body} is refused at once
(413, before it is read); with C{--buffer-requests} the body is kept in
memory up to C{--buffer-memory}, in an unnamed temporary file beyond, and
the rest of the chain waits for it; without, the chain goes on at once and
the body is streamed to the target as it arrives. A chunked body that
crosses the maximum is cut off with 413 either way.
"""

from __future__ import annotations

from typing import IO, Callable

from kamalproxy.http.buffering import bodyFile
from kamalproxy.pipeline.exchange import Exchange

Handler = Callable[[Exchange], None]


def limitBody(exchange: Exchange, proceed: Handler) -> None:
    options = exchange.service.options.target
    limit = options.max_request_body_size
    request = exchange.request
    if exchange.complete:  # rendered after Twisted read the body (a plain Site)
        if limit and _size(request.content) > limit:
            exchange.respondWithPage(413)
        else:
            proceed(exchange)
        return
    length = exchange.declaredLength
    if limit and length is not None and length > limit:
        exchange.refuse(413, f"declared body of {length} bytes is over the limit")
        return
    if not options.buffer_requests and length != 0:
        proceed(exchange)  # the forward stage streams the body
        if limit and length is None and not exchange.ended:
            exchange.bodyConsumer = _limited(exchange, exchange.bodyConsumer, limit)
        return
    content = request.content = bodyFile(length, options.max_memory_buffer_size)
    exchange.bodyConsumer = _limited(exchange, content.write, limit) if limit else content.write
    exchange.whenComplete(lambda: proceed(exchange))


def _limited(exchange: Exchange, consume: Callable[[bytes], object], limit: int) -> Callable[[bytes], None]:
    """
    C{consume}, refusing the request with 413 once more than C{limit}
    bytes came through.
    """
    received = 0

    def consumeWithin(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if received > limit:
            exchange.refuse(413, "body is over the limit")
            return
        consume(data)

    return consumeWithin


def _size(content: IO[bytes] | None) -> int:
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return size
