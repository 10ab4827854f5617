# -*- test-case-name: tests.routing.test_router -*-
"""
A deployed service: its options, the target group it currently forwards
to, and its rollout slot.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime

from kamalproxy.routing.options import DeployOptions
from kamalproxy.routing.pausing import RUNNING, PauseController
from kamalproxy.routing.rollout import RolloutSlot
from kamalproxy.upstream.deadlines import Deadlines
from kamalproxy.upstream.targets import TargetGroup

__all__ = ["RUNNING", "Service"]


class Service:
    """
    A named service; its group is replaced in one assignment on deploy.

    @ivar rollout: the rollout group and split (L{None}: no C{rollout
        deploy} yet), replaced in one assignment on each change.
    @ivar responseDeadlines: the response timeouts of the requests
        forwarded for this service (L{kamalproxy.upstream.forwarding}).
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
        self.rollout: Optional[RolloutSlot] = None
        self.responseDeadlines = Deadlines(clock)

    def __repr__(self) -> str:
        return f"<Service {self.name} {self.group.addresses}>"

    @property
    def groups(self) -> list[TargetGroup]:
        """
        Every target group of the service: the main one, then the rollout
        group if there is one.
        """
        rollout = self.rollout
        return [self.group] if rollout is None else [self.group, rollout.group]

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
        described = {
            "service": self.name,
            "hosts": list(self.options.service.hosts),
            "path_prefixes": list(self.options.service.path_prefixes),
            "targets": self.group.addresses,
            "read_targets": self.group.readerAddresses,
            "health": {t.address: t.state for t in self.group.targets},
            "state": self.state,
            "held": len(self.pause.queue),
            "tls": self.options.service.tls_enabled,
        }
        if self.rollout is not None:
            described["rollout"] = self.rollout.describe()
        return described
