# -*- test-case-name: tests.status.test_report -*-
"""
The status report: what the router says of every service (L{Router.describe}),
the live request statistics (L{kamalproxy.observe.livestats}) and the last
deploys, as one JSON-ready C{dict} whose schema is documented in the README
(C{/status.json}).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

from zope.interface import implementer

from kamalproxy.interfaces import IDeployObserver
from kamalproxy.observe.livestats import BUCKET_SECONDS, WINDOW_BUCKETS, LiveStats
from kamalproxy.routing.deploys import DeployRecord

SCHEMA_VERSION = 1
DEPLOYS_KEPT = 20


@implementer(IDeployObserver)
class DeployHistory:
    """
    The last L{DEPLOYS_KEPT} deploys and rollout deploys, newest first.
    """

    def __init__(self, kept: int = DEPLOYS_KEPT) -> None:
        self.records: deque[DeployRecord] = deque(maxlen=kept)

    def deployFinished(self, record: DeployRecord) -> None:
        self.records.appendleft(record)


def _deploy(record: DeployRecord) -> dict[str, Any]:
    return {
        "service": record.service,
        "kind": record.kind,
        "targets": list(record.targets),
        "started": record.started,
        "duration": round(record.duration, 3),
        "outcome": record.outcome,
        "error": record.error,
    }


def _service(described: dict[str, Any], stats: LiveStats) -> dict[str, Any]:
    health = described.get("health", {})
    rollout = described.get("rollout")
    entry: dict[str, Any] = {
        "name": described["service"],
        "hosts": list(described.get("hosts", [])),
        "path_prefixes": list(described.get("path_prefixes", [])),
        "state": described.get("state", "running"),
        "held_requests": described.get("held", 0),
        "tls": bool(described.get("tls")),
        "certificate": described.get("certificate"),
        "targets": [
            {"address": a, "health": health.get(a, "unknown")} for a in described.get("targets", [])
        ],
        "rollout": None,
        "stats": stats.summary(described["service"]),
    }
    if rollout is not None:
        entry["rollout"] = {
            "percentage": rollout.get("percentage"),
            "allowlist": list(rollout.get("allowlist", [])),
            "targets": [
                {"address": a, "health": rollout.get("health", {}).get(a, "unknown")}
                for a in rollout.get("targets", [])
            ],
        }
    return entry


class StatusReport:
    """
    Builds the status report on demand.

    @ivar describe: returns the router's listing (L{Router.describe}).
    @ivar stats: the live request statistics.
    @ivar deploys: the last deploys.
    """

    def __init__(self, clock: Any, describe: Any, stats: LiveStats, deploys: DeployHistory) -> None:
        self.clock = clock
        self.describe = describe
        self.stats = stats
        self.deploys = deploys

    def report(self) -> dict[str, Any]:
        """
        The status now (the C{/status.json} schema). The statistics of
        services no longer deployed are dropped on the way.
        """
        described: Sequence[dict[str, Any]] = self.describe()
        self.stats.forget({d["service"] for d in described})
        return {
            "version": SCHEMA_VERSION,
            "time": self.clock.seconds(),
            "window": {"seconds": BUCKET_SECONDS * WINDOW_BUCKETS, "bucket_seconds": BUCKET_SECONDS},
            "services": [_service(d, self.stats) for d in described],
            "unrouted": self.stats.summary(""),
            "deploys": [_deploy(r) for r in self.deploys.records],
        }


__all__ = ["DeployHistory", "SCHEMA_VERSION", "StatusReport"]
