# -*- test-case-name: tests.pipeline.test_chain -*-
"""
Stage: the TLS gate. A request over TLS to a service without TLS is
answered 503; plain HTTP to a service with TLS, C{tls_redirect} and a
certificate for the host is redirected to C{https://}; a host other than the
service's canonical host is redirected to it (both in one hop).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.web.iweb import IRequest

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.challenge import CHALLENGE_PATH
from kamalproxy.routing.table import requestHost, requestPort


def redirectFor(
    request: IRequest, service: Any, path: bytes, certificates: Any, httpsPort: int
) -> Optional[bytes]:
    """
    Where to send C{request} instead of forwarding it to C{service}, or
    L{None}. ACME challenge paths are never redirected.

    @param certificates: the HTTPS listener's certificate selector (plain
        HTTP is redirected only to a host it has a certificate for), or
        L{None} when there is no HTTPS listener.
    @param httpsPort: the HTTPS port named in redirects (omitted when 443).
    """
    options = service.options.service
    secure = request.isSecure()
    mayGoToHTTPS = not secure and options.tls_enabled and options.tls_redirect and certificates is not None
    if (not mayGoToHTTPS and not options.canonical_host) or path.startswith(CHALLENGE_PATH):
        return None  # (most requests: nothing to parse)
    header = request.getHeader(b"host") or b""
    host = requestHost(header)
    canonical = options.canonical_host.encode("ascii").lower()
    toCanonical = bool(canonical) and host != canonical
    target = canonical if toCanonical else host
    toHTTPS = mayGoToHTTPS and _servesHTTPS(certificates, service, target.decode("ascii", "replace"))
    if not toHTTPS and not toCanonical:
        return None
    if toHTTPS or secure:
        scheme = b"https"
        port = httpsPort if toHTTPS else requestPort(header)
        if port and port != 443:
            target += b":%d" % port
    else:
        scheme = b"http"
        port = requestPort(header)
        if port and port != 80:
            target += b":%d" % port
    return scheme + b"://" + target + (getattr(request, "uri", None) or path)


def _servesHTTPS(certificates: Any, service: Any, host: str) -> bool:
    """
    Whether the HTTPS listener has a certificate for C{host}: the one of
    the service owning C{/} for it, as the listener picks it by server name
    (a service below a path prefix inherits TLS from that service, and has
    no certificate of its own when that one's is a custom certificate).
    """
    owner = certificates.serviceFor(host) or service
    return certificates.certificateFor(owner, host) is not None


def redirect(location: bytes, close: bool) -> Callable[[IRequest], bytes]:
    """
    A renderer answering with a 301 to C{location}.

    @param close: close the connection after it (HTTP/1.x: with
        C{Connection: close}), as the original does for the redirect from
        HTTP to HTTPS.
    """

    def render(request: IRequest) -> bytes:
        request.setResponseCode(301)
        request.setHeader(b"location", location)
        if close and getattr(request, "clientproto", b"") != b"HTTP/2":
            request.setHeader(b"connection", b"close")
            channel = getattr(request, "channel", None)
            if channel is not None and hasattr(channel, "persistent"):
                channel.persistent = False
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Moved Permanently\n"

    return render


def secureChannel(router: Any) -> Callable[[Exchange, Callable[[Exchange], None]], None]:
    """
    The TLS gate, with C{router.certificates} and C{router.httpsPort}.
    """

    def gate(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
        request = exchange.request
        service = exchange.service
        secure = exchange.secure
        if secure and not service.options.service.tls_enabled:
            exchange.respondWithPage(503)
            return
        location = redirectFor(request, service, exchange.path, router.certificates, router.httpsPort)
        if location is not None:
            exchange.respond(redirect(location, close=not secure and location.startswith(b"https:")))
            return
        proceed(exchange)

    return gate
