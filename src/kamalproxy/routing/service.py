# -*- test-case-name: tests.routing.test_router -*-
"""
A deployed service: its options and the target group it currently forwards
to.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime

from kamalproxy.routing.options import DeployOptions
from kamalproxy.routing.pausing import RUNNING, PauseController
from kamalproxy.upstream.targets import TargetGroup

__all__ = ["RUNNING", "Service"]


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
            (see L{kamalproxy.http.errorpages}).
        """
        self.clock = clock
        self.name = name
        self.options = options
        self.group = group
        self.pause = PauseController(clock)  # kept across redeploys (Router.deploy)
        self.pause.owner = self
        self.errorPages = errorPages
        self.tlsCertificate: Any = None  # a custom certificate (kamalproxy.tls.sni.LoadedCertificate)
        self.tlsCertificateSignature: Any = None  # of its files when loaded (kamalproxy.tls.reload)

    def __repr__(self) -> str:
        return f"<Service {self.name} {self.group.addresses}>"

    @property
    def state(self) -> str:
        """
        C{running}, C{paused} or C{stopped} (see L{PauseController}).
        """
        return self.pause.state

    def bindings(self) -> list[tuple[str, str]]:
        """
        The C{(host, prefix)} pairs this service owns (host C{""} = default).
        """
        hosts = self.options.service.hosts or ("",)
        return [(h, p) for h in hosts for p in self.options.service.path_prefixes]

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
            "held": len(self.pause.queue),
            "tls": self.options.service.tls_enabled,
        }
