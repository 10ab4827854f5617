# -*- test-case-name: tests.pipeline.test_chain -*-
"""
Stage: pick the target the request goes to, round-robin over the healthy
targets of the exchange's group (the service's, unless a stage before
chose another) (503 when none is healthy or the group is being
drained).
"""

from __future__ import annotations

from typing import Callable

from kamalproxy.pipeline.exchange import Exchange


def balance(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    target = exchange.group.pick()
    if target is None or target.draining:
        exchange.respondWithPage(503)
        return
    exchange.target = target
    proceed(exchange)
