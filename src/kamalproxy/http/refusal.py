# -*- test-case-name: tests.http.test_channel -*-
"""
The one refusal path: a request answered at once, before its body is read,
on HTTP/1.1 (page, C{Connection: close}, connection closed), on HTTP/2
(page on the stream, stream reset) or on any other channel (page written
raw, connection closed).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from kamalproxy.http import pages

_log = Logger()


def refuseOn(channel: Any, status: int, reason: str) -> None:
    """
    Answer C{status} with its page straight on C{channel} and stop reading
    the request: through the channel's own C{refuse} when it has one
    (L{kamalproxy.http.channel.ProxyChannel}, L{kamalproxy.http.http2.ProxyH2Stream}:
    one log line, the right way to close), else directly.
    """
    refuse = getattr(channel, "refuse", None)
    if refuse is not None:
        refuse(status, reason)
        return
    transport = channel.transport
    _log.info(
        "Refused a request from {peer} with {status}: {reason}",
        peer=getattr(transport.getPeer(), "host", "?") if transport is not None else "?",
        status=status,
        reason=reason,
    )
    if transport is not None:
        transport.write(pages.rawResponse(status))
        transport.loseConnection()
