# -*- test-case-name: tests.status.test_summary -*-
"""
C{kamal-proxy status}: the status report (C{/status.json}) as a summary
for the terminal: a services table, the certificates, the last deploys.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional, Sequence

from kamalproxy.control.tables import formatTable

_SERVICE_HEADER = ("Service", "Host", "State", "Targets", "Req/s", "p50", "p99", "Errors", "Cache")
_DEPLOY_HEADER = ("When", "Service", "Kind", "Targets", "Outcome", "Took")
DEPLOYS_SHOWN = 5


def _ms(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1f}ms"


def _percent(value: Optional[float]) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _targets(service: Mapping[str, Any]) -> str:
    """
    C{web-1:80 healthy, web-2:80 UNHEALTHY}, then the rollout group:
    C{(rollout 25%: web-3:80 healthy)}.
    """

    def shown(targets: Sequence[Mapping[str, Any]]) -> str:
        return ", ".join(
            f"{t['address']} {t['health'] if t['health'] == 'healthy' else str(t['health']).upper()}"
            for t in targets
        ) or "none"

    cell = shown(service.get("targets") or [])
    rollout = service.get("rollout")
    if rollout:
        split = f" {rollout['percentage']}%" if rollout.get("percentage") is not None else ""
        cell += f" (rollout{split}: {shown(rollout.get('targets') or [])})"
    return cell


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def formatStatus(report: Mapping[str, Any]) -> str:
    """
    The terminal summary of a status report.
    """
    services = report.get("services") or []
    out = []
    rows = [_SERVICE_HEADER]
    for s in services:
        stats = s.get("stats") or {}
        rows.append(
            (
                str(s["name"]),
                ",".join(s.get("hosts") or ()) or "*",
                str(s.get("state", "")) + (f" ({s['held_requests']} held)" if s.get("held_requests") else ""),
                _targets(s),
                f"{stats.get('rps') or 0:.1f}",
                _ms(stats.get("p50_ms")),
                _ms(stats.get("p99_ms")),
                _percent(stats.get("error_rate")),
                _percent(stats.get("cache_hit_ratio")),
            )
        )
    out.append(formatTable(rows) if services else "No services deployed.\n")
    certificates = [s for s in services if s.get("tls")]
    if certificates:
        out.append("\nCertificates\n")
        out.append(
            formatTable(
                [("Service", "Hosts", "Expires")]
                + [
                    (
                        str(s["name"]),
                        ",".join(s.get("hosts") or ()) or "(on demand)",
                        str(s.get("certificate") or "pending"),
                    )
                    for s in certificates
                ]
            )
        )
    deploys = (report.get("deploys") or [])[:DEPLOYS_SHOWN]
    out.append("\nLast deploys\n")
    if deploys:
        out.append(
            formatTable(
                [_DEPLOY_HEADER]
                + [
                    (
                        _when(d["started"]),
                        str(d["service"]),
                        str(d["kind"]),
                        ",".join(d.get("targets") or ()),
                        str(d["outcome"]) + (f": {d['error']}" if d.get("error") else ""),
                        f"{d['duration']:.1f}s",
                    )
                    for d in deploys
                ]
            )
        )
    else:
        out.append("none since the proxy started\n")
    window = report.get("window") or {}
    out.append(
        f"\nReq/s over the last minute; latency, errors and cache over the last "
        f"{int(window.get('seconds', 300)) // 60} minutes.\n"
    )
    return "".join(out)


__all__ = ["formatStatus"]
