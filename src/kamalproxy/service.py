# -*- test-case-name: tests.test_router -*-
"""
A deployed service: its options and the target group it currently forwards
to.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from kamalproxy import pages
from kamalproxy.forwarding import forward
from kamalproxy.options import DeployOptions
from kamalproxy.routing import strippedPath
from kamalproxy.streaming import StreamingForwarding, forwardStreaming
from kamalproxy.targets import Target, TargetGroup

RUNNING = "running"


class Service:
    """
    A named service; its group is replaced in one assignment on deploy.
    """

    def __init__(
        self,
        clock: IReactorTime,
        name: str,
        options: DeployOptions,
        group: TargetGroup,
        errorPages: Optional[dict[int, bytes]] = None,
    ) -> None:
        """
        @param errorPages: the service's own error page templates by status
            (see L{kamalproxy.errorpages}).
        """
        self.clock = clock
        self.name = name
        self.options = options
        self.group = group
        self.state = RUNNING
        self.errorPages = errorPages
        self.tlsCertificate: Any = None  # a custom certificate (kamalproxy.tls.sni.LoadedCertificate)
        self.tlsCertificateSignature: Any = None  # of its files when loaded (kamalproxy.tls.reload)

    def __repr__(self) -> str:
        return f"<Service {self.name} {self.group.addresses}>"

    def bindings(self) -> list[tuple[str, str]]:
        """
        The C{(host, prefix)} pairs this service owns (host C{""} = default).
        """
        hosts = self.options.service.hosts or ("",)
        return [(h, p) for h in hosts for p in self.options.service.path_prefixes]

    def render(self, request: IRequest, path: bytes, prefix: bytes, query: bytes) -> Any:
        """
        Forward C{request}, whose path C{path} matched C{prefix}.
        """
        target = self._claim(request)
        if target is None:
            return pages.renderPage(request, 503)
        return forward(self.clock, request, target, self.options.target, self._upstreamPath(path, prefix, query))

    def startStreaming(
        self, request: IRequest, method: bytes, path: bytes, prefix: bytes, query: bytes, length: Optional[int]
    ) -> Optional[StreamingForwarding]:
        """
        Start forwarding C{request} while its body is still arriving; L{None}
        when no target is healthy.
        """
        target = self._claim(request)
        if target is None:
            return None
        return forwardStreaming(
            self.clock,
            request,
            target,
            self.options.target,
            method,
            self._upstreamPath(path, prefix, query),
            length,
        )

    def _claim(self, request: IRequest) -> Optional[Target]:
        request.kamalService = self.name  # type: ignore[attr-defined]
        if self.errorPages:
            request.kamalErrorPages = self.errorPages  # type: ignore[attr-defined]
        target = self.group.pick()
        if target is None or target.draining:
            return None
        return target

    def _upstreamPath(self, path: bytes, prefix: bytes, query: bytes) -> bytes:
        if self.options.service.strip_prefix:
            path = strippedPath(path, prefix)
        return path + query

    def describe(self) -> dict[str, Any]:
        """
        What C{list} shows about this service.
        """
        return {
            "service": self.name,
            "hosts": list(self.options.service.hosts),
            "path_prefixes": list(self.options.service.path_prefixes),
            "targets": self.group.addresses,
            "health": {t.address: t.state for t in self.group.targets},
            "state": self.state,
            "tls": self.options.service.tls_enabled,
        }
