"""
Tests for L{kamalproxy.status.report}: the C{/status.json} schema from the
router's listing, the live statistics and the deploy history.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.interfaces import IDeployObserver
from kamalproxy.observe.livestats import LiveStats
from kamalproxy.routing.deploys import DEPLOY, FAILED, SUCCEEDED, DeployRecord
from kamalproxy.status.report import DEPLOYS_KEPT, DeployHistory, StatusReport

NOW = 1_700_000_000.0

LISTING: list[dict[str, Any]] = [
    {
        "service": "api",
        "hosts": ["api.example.com"],
        "path_prefixes": ["/"],
        "targets": ["10.0.0.3:80"],
        "health": {"10.0.0.3:80": "unhealthy"},
        "state": "paused",
        "held": 2,
        "tls": True,
        "certificate": "2027-02-24",
    },
    {
        "service": "web",
        "hosts": [],
        "path_prefixes": ["/app"],
        "targets": ["10.0.0.1:80"],
        "health": {"10.0.0.1:80": "healthy"},
        "state": "running",
        "held": 0,
        "tls": False,
        "rollout": {"targets": ["10.0.0.2:80"], "health": {"10.0.0.2:80": "healthy"}, "percentage": 25, "allowlist": ["a"]},
    },
]

SERVICE_KEYS = {"name", "hosts", "path_prefixes", "state", "held_requests", "tls", "certificate", "targets", "rollout", "stats"}
STATS_KEYS = {"requests", "rps", "p50_ms", "p99_ms", "error_rate", "cache_hit_ratio", "series"}
POINT_KEYS = {"time", "rps", "p50_ms", "p99_ms", "errors"}


def _record(service: str, outcome: str = SUCCEEDED, error: str = "") -> DeployRecord:
    return DeployRecord(service, DEPLOY, ("10.0.0.1:80",), NOW - 5, 1.23456, outcome, error)


class StatusReportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.deploys = DeployHistory()
        self.report = StatusReport(self.clock, lambda: LISTING, LiveStats(self.clock), self.deploys)

    def test_schema(self) -> None:
        """
        The report has the documented top-level keys, and each service the
        documented keys and values.
        """
        self.deploys.deployFinished(_record("web"))
        report = self.report.report()
        self.assertEqual(set(report), {"version", "time", "window", "services", "unrouted", "deploys"})
        self.assertEqual(report["version"], 1)
        self.assertEqual(report["time"], NOW)
        self.assertEqual(report["window"], {"seconds": 300, "bucket_seconds": 10})
        api, web = report["services"]
        for service in (api, web):
            self.assertEqual(set(service), SERVICE_KEYS)
            self.assertEqual(set(service["stats"]), STATS_KEYS)
            self.assertEqual(set(service["stats"]["series"][0]), POINT_KEYS)
        self.assertEqual(set(report["unrouted"]), STATS_KEYS)
        self.assertEqual(
            {k: api[k] for k in SERVICE_KEYS - {"stats"}},
            {
                "name": "api",
                "hosts": ["api.example.com"],
                "path_prefixes": ["/"],
                "state": "paused",
                "held_requests": 2,
                "tls": True,
                "certificate": "2027-02-24",
                "targets": [{"address": "10.0.0.3:80", "health": "unhealthy"}],
                "rollout": None,
            },
        )
        self.assertIsNone(web["certificate"])
        self.assertEqual(
            web["rollout"],
            {"percentage": 25, "allowlist": ["a"], "targets": [{"address": "10.0.0.2:80", "health": "healthy"}]},
        )
        self.assertEqual(
            report["deploys"],
            [
                {
                    "service": "web",
                    "kind": "deploy",
                    "targets": ["10.0.0.1:80"],
                    "started": NOW - 5,
                    "duration": 1.235,
                    "outcome": "succeeded",
                    "error": "",
                }
            ],
        )


class DeployHistoryTests(SynchronousTestCase):
    def test_newestFirstAndBounded(self) -> None:
        history = DeployHistory()
        self.assertTrue(IDeployObserver.providedBy(history))
        for i in range(DEPLOYS_KEPT + 3):
            history.deployFinished(_record(f"s{i}"))
        history.deployFinished(_record("last", FAILED, "target failed to become healthy"))
        self.assertEqual(len(history.records), DEPLOYS_KEPT)
        self.assertEqual(history.records[0].service, "last")
        self.assertEqual(history.records[1].service, f"s{DEPLOYS_KEPT + 2}")
