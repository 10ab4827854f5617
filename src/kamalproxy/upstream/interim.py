# -*- test-case-name: tests.upstream.test_interim -*-
"""
Interim (1xx) responses from a target, relayed to the client before the
final response: C{103 Early Hints} (Rails sends them through Puma) and any
other 1xx but C{100} and C{101}.

Go's C{ReverseProxy} (since Go 1.20) relays every 1xx its transport reports
through C{httptrace.Got1xxResponse}, and so do Caddy, httpd and Squid.  The
differences here, and why:

  - C{100 Continue} from the target is not relayed: the proxy answers a
    client's C{Expect: 100-continue} itself (Twisted's HTTP/1.1 channel and
    its HTTP/2 connection both send their own C{100} when the head
    arrives), so the target's would be a second one, or one the client did
    not ask for;
  - C{101} is not interim here: it is the upgrade (see
    L{kamalproxy.http.tunnel});
  - nothing is sent to an HTTP/1.0 client, which does not know 1xx (RFC
    9110 section 15.2: a server must not send it one);
  - nothing is sent once the final response has started (its head is
    written with the first body byte), nor after an error page.

Twisted's C{Request} has no API for interim responses: over HTTP/1.1 the
head is written straight to the connection's transport (as Twisted writes
its own C{100 Continue}), over HTTP/2 as a HEADERS frame without
END_STREAM on the request's stream (L{ProxyH2Stream.writeInterim}).
"""

from __future__ import annotations

import re
from typing import Any

from kamalproxy.http.fields import FIELD_NAME
from kamalproxy.twistedcompat import H2Stream
from twisted.web.iweb import IRequest

from kamalproxy.upstream.client import RawHeaders

_PHRASES = {102: b"Processing", 103: b"Early Hints"}
_LINE_BREAKS = re.compile(rb"[\r\n\x00]")


def interimRelayed(request: IRequest, status: int) -> bool:
    """
    Whether an interim response with C{status} may go to C{request}'s
    client now (see the module docstring).
    """
    return (
        100 < status < 200
        and status != 101
        and not request.startedWriting  # type: ignore[attr-defined]
        and not request.finished  # type: ignore[attr-defined]
        and request.clientproto != b"HTTP/1.0"  # type: ignore[attr-defined]
    )


def writeInterim(request: IRequest, status: int, headers: RawHeaders) -> bool:
    """
    Send C{request}'s client an interim response with C{status} and
    C{headers}, C{(name, value)} pairs already stripped of hop-by-hop
    fields, if it may have one (see L{interimRelayed}).

    @return: whether it was sent.
    """
    if not interimRelayed(request, status):
        return False
    channel: Any = request.channel  # type: ignore[attr-defined]
    fields = wellFormed(headers)
    if isinstance(channel, H2Stream):
        write = getattr(channel, "writeInterim", None)
        if write is None:  # Twisted's own stream: no way to send one
            return False
        write(status, fields)
        return True
    transport = getattr(channel, "transport", None)
    if transport is None or getattr(transport, "disconnecting", False):
        return False
    transport.write(interimHead(status, fields))
    return True


def wellFormed(headers: RawHeaders) -> RawHeaders:
    """
    C{headers} fit to be written as they are: a field whose name is not a
    token is dropped, and CR, LF or NUL in a value become spaces (RFC 9110
    section 5.5), as Twisted's L{Headers<twisted.web.http_headers.Headers>}
    does for a final response.
    """
    return [(name, _LINE_BREAKS.sub(b" ", value)) for name, value in headers if FIELD_NAME.match(name)]


def interimHead(status: int, fields: RawHeaders) -> bytes:
    """
    An HTTP/1.1 interim response head.
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b"Informational"))]
    for name, value in fields:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


__all__ = ["interimHead", "interimRelayed", "wellFormed", "writeInterim"]
