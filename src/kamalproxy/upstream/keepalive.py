# -*- test-case-name: tests.upstream.test_keepalive -*-
"""
How long a kept-alive target connection may wait in the pool.

A target closes a keep-alive connection it has not used for a while: Node
after 5 s (and says so: C{Keep-Alive: timeout=5}), Uvicorn and httpd after
5 s, Puma after 20 s.  A request the proxy sends on a pooled connection just
as the target closes it is lost before any response byte; only a request
that may be replayed can then be retried (see
L{Forwarding.responseFailed<kamalproxy.upstream.forwarding.Forwarding.responseFailed>}),
any other ends as 502.  So the pool closes an idle connection first:

  - when the target announced C{Keep-Alive: timeout=N}: after
    C{max(N - 1, N / 2)} seconds idle (4 s for Node's 5, 19 s for 20, 0.5 s
    for 1), a margin for the response's transit and the two clocks;
  - otherwise after L{DEFAULT_IDLE_TIMEOUT} (4 s): below the common
    servers' own idle timeouts (Node, Uvicorn and httpd 5 s, Puma 20 s);
    a target that idles out sooner without saying so (gunicorn's threaded
    workers: 2 s) still relies on the retry, for replayable requests.

The time counts from when the connection became idle, on the pool's clock.
"""

from __future__ import annotations

import math
from typing import Optional

DEFAULT_IDLE_TIMEOUT = 4.0
"""Seconds an idle connection is kept when the target announced no timeout."""

ANNOUNCED_MARGIN = 1.0
"""Seconds before an announced timeout that a connection is closed (at most half of it)."""


def announcedTimeout(value: bytes) -> Optional[float]:
    """
    The C{timeout} parameter of a C{Keep-Alive} header value (C{timeout=5,
    max=1000}), in seconds, or L{None} when it has none or a bad one.
    """
    for parameter in value.split(b","):
        name, sep, number = parameter.partition(b"=")
        if sep and name.strip().lower() == b"timeout":
            try:
                seconds = float(number.strip())
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def idleLimit(announced: Optional[float], default: float = DEFAULT_IDLE_TIMEOUT) -> float:
    """
    Seconds a connection may stay idle in the pool, given the timeout its
    target announced (L{None}: none).
    """
    if announced is None:
        return default
    return max(announced - ANNOUNCED_MARGIN, announced / 2)


__all__ = ["ANNOUNCED_MARGIN", "DEFAULT_IDLE_TIMEOUT", "announcedTimeout", "idleLimit"]
