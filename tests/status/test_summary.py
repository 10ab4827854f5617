"""
Tests for L{kamalproxy.status.summary}: C{kamal-proxy status}'s terminal
summary of a known report.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.status.summary import formatStatus


def _stats(rps: float, p50: Any, p99: Any, errors: Any, cache: Any = None) -> dict[str, Any]:
    return {"requests": 0, "rps": rps, "p50_ms": p50, "p99_ms": p99, "error_rate": errors, "cache_hit_ratio": cache, "series": []}


REPORT: dict[str, Any] = {
    "version": 1,
    "time": 1_700_000_000.0,
    "window": {"seconds": 300, "bucket_seconds": 10},
    "services": [
        {
            "name": "api",
            "hosts": ["api.example.com"],
            "path_prefixes": ["/"],
            "state": "paused",
            "held_requests": 3,
            "tls": True,
            "certificate": "2027-02-24",
            "targets": [{"address": "10.0.0.3:80", "health": "unhealthy"}],
            "rollout": None,
            "stats": _stats(0.0, None, None, None),
        },
        {
            "name": "web",
            "hosts": [],
            "path_prefixes": ["/"],
            "state": "running",
            "held_requests": 0,
            "tls": False,
            "certificate": None,
            "targets": [{"address": "10.0.0.1:80", "health": "healthy"}],
            "rollout": {"percentage": 25, "allowlist": [], "targets": [{"address": "10.0.0.2:80", "health": "healthy"}]},
            "stats": _stats(12.25, 3.2, 48.0, 0.0123, 0.5),
        },
    ],
    "unrouted": _stats(0.0, None, None, None),
    "deploys": [
        {"service": "web", "kind": "rollout", "targets": ["10.0.0.2:80"], "started": 1_699_999_990.0, "duration": 1.5, "outcome": "succeeded", "error": ""},
        {"service": "api", "kind": "deploy", "targets": ["10.0.0.3:80"], "started": 1_699_999_900.0, "duration": 30.0, "outcome": "failed", "error": "target failed to become healthy"},
    ],
}

EXPECTED = """\
Service  Host             State            Targets                                                 Req/s  p50    p99     Errors  Cache
api      api.example.com  paused (3 held)  10.0.0.3:80 UNHEALTHY                                   0.0    —      —       —       —
web      *                running          10.0.0.1:80 healthy (rollout 25%: 10.0.0.2:80 healthy)  12.2   3.2ms  48.0ms  1.2%    50.0%

Certificates
Service  Hosts            Expires
api      api.example.com  2027-02-24

Last deploys
When                  Service  Kind     Targets      Outcome                                  Took
2023-11-14 22:13:10Z  web      rollout  10.0.0.2:80  succeeded                                1.5s
2023-11-14 22:11:40Z  api      deploy   10.0.0.3:80  failed: target failed to become healthy  30.0s

Req/s over the last minute; latency, errors and cache over the last 5 minutes.
"""


class FormatStatusTests(SynchronousTestCase):
    def test_knownState(self) -> None:
        """
        Services (state, held requests, targets and their health, the
        rollout, rates and latency), certificates, the last deploys.
        """
        self.assertEqual(formatStatus(REPORT), EXPECTED)

    def test_nothingDeployed(self) -> None:
        report = {**REPORT, "services": [], "deploys": []}
        self.assertEqual(
            formatStatus(report),
            "No services deployed.\n\nLast deploys\nnone since the proxy started\n\n"
            "Req/s over the last minute; latency, errors and cache over the last 5 minutes.\n",
        )
