# -*- test-case-name: tests.pipeline.test_rollout -*-
"""
Stage: the rollout split. When the service has a rollout group and a split
(C{rollout set}), a request whose C{kamal-rollout} cookie the split selects
is balanced over the rollout group instead of the main one (see
L{kamalproxy.routing.rollout}). Services without a split cost one attribute
look-up; the C{Cookie} header is read only when there is a split.
"""

from __future__ import annotations

from typing import Callable

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.rollout import rolloutCookie


def splitRollout(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    slot = exchange.service.rollout
    if slot is not None and slot.split is not None:
        cookies = exchange.request.requestHeaders.getRawHeaders(b"cookie")
        if cookies and slot.split.usesRollout(rolloutCookie(cookies)):
            exchange.group = slot.group
    proceed(exchange)
