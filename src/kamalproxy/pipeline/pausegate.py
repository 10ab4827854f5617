# -*- test-case-name: tests.pipeline.test_pausegate -*-
"""
Stage: the pause gate. While the service runs, requests go straight on.
While it is stopped they get the 503 maintenance page with the stop
message; while it is paused they are held (see
L{kamalproxy.routing.pausing}) until C{resume} (they go on), C{stop} (503)
or their C{--max-pause} (504). Either way, C{GET}/C{HEAD} on the service's
health-check path (as the target would see it, after prefix stripping)
answer 200 with an empty body, so a load balancer in front keeps the host.

A held request reads none of its body beyond what already arrived: the
client (its connection, or its HTTP/2 stream) is paused once
L{HELD_BODY_LIMIT} bytes are kept, and what was kept is handed to the next
stages when the request goes on.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Callable

from twisted.logger import Logger

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.pausing import PROCEED, STOPPED, TIMED_OUT, PauseController
from kamalproxy.routing.table import strippedPath

Handler = Callable[[Exchange], None]

HELD_BODY_LIMIT = 64 * 1024
"""Body bytes kept for a held request before its client is paused."""

_log = Logger()


def pauseGate(exchange: Exchange, proceed: Handler) -> None:
    controller: PauseController = exchange.service.pause
    if controller.passing:
        proceed(exchange)
        return
    if _isHealthCheck(exchange):
        exchange.respond(_healthy)
        return
    if controller.state == STOPPED:
        exchange.message = controller.message
        exchange.respondWithPage(503)
        return
    _HeldRequest(exchange, proceed).hold(controller)


def _isHealthCheck(exchange: Exchange) -> bool:
    """
    Whether the request is a C{GET} or C{HEAD} of the service's
    health-check path, as the target would see it.
    """
    if exchange.request.method not in (b"GET", b"HEAD"):
        return False
    service = exchange.service
    path = exchange.path
    if service.options.service.strip_prefix:
        path = strippedPath(path, exchange.prefix)
    return path == service.options.target.health_check.path.encode("utf-8")


def _healthy(request: Any) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-length", b"0")
    return b""


class _HeldRequest:
    """
    One request held while its service is paused.
    """

    __slots__ = ("exchange", "proceed", "chunks", "size", "clientPaused", "consumer")

    def __init__(self, exchange: Exchange, proceed: Handler) -> None:
        self.exchange = exchange
        self.proceed = proceed
        self.chunks: list[bytes] = []
        self.size = 0
        self.clientPaused = False
        self.consumer = exchange.bodyConsumer

    def hold(self, controller: PauseController) -> None:
        exchange = self.exchange
        waiter = controller.hold(self.released)
        if waiter is None:
            _log.warn(
                "Rejecting request: {count} requests already held for {service}",
                count=len(controller.queue),
                service=exchange.service.name,
            )
            exchange.respondWithPage(503)
            return
        exchange.onClientGone = waiter.cancel
        if not exchange.complete:
            exchange.bodyConsumer = self.bodyChunk

    def bodyChunk(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HELD_BODY_LIMIT and not self.clientPaused:
            self.clientPaused = True
            _clientOf(self.exchange).pauseProducing()

    def released(self, outcome: str) -> None:
        exchange = self.exchange
        exchange.onClientGone = None
        if exchange.ended:
            return
        exchange.bodyConsumer = self.consumer
        chunks, self.chunks = self.chunks, []
        if outcome == PROCEED:
            owner = exchange.service.pause.owner
            if owner is not None and owner is not exchange.service:
                # Redeployed while held: on to the new targets.
                exchange.service, exchange.group, exchange.errorPages = owner, owner.group, owner.errorPages
            if exchange.complete:
                if chunks:
                    exchange.request.content = BytesIO(b"".join(chunks))
                chunks = []
            self.proceed(exchange)
            for data in chunks:
                if exchange.ended:
                    break
                exchange.bodyConsumer(data)
        elif outcome == TIMED_OUT:
            _log.warn("Rejecting request due to expired pause")
            exchange.respondWithPage(504)
        else:
            exchange.message = exchange.service.pause.message
            exchange.respondWithPage(503)
        if self.clientPaused:
            self.clientPaused = False
            _clientOf(exchange).resumeProducing()


def _clientOf(exchange: Exchange) -> Any:
    """
    What to pause to stop reading a request's body: its connection, or its
    HTTP/2 stream (which then stops opening the client's window).
    """
    channel = exchange.request.channel
    return channel.transport if channel.transport is not None else channel
