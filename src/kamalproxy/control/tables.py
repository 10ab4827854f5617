# -*- test-case-name: tests.control.test_ctl -*-
"""
Plain-text tables, as the original's commands print them (Go's
C{tabwriter}): C{list} and C{status}.
"""

from __future__ import annotations

from typing import Sequence


def formatTable(rows: Sequence[Sequence[str]]) -> str:
    """
    Align C{rows} in columns separated by two spaces, as Go's C{tabwriter}
    would (no trailing spaces); each row ends with a newline.
    """
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join(cells).rstrip() + "\n")
    return "".join(lines)


__all__ = ["formatTable"]
