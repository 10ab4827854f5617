# -*- test-case-name: tests.routing.test_durations -*-
"""
Durations in Go's C{time.ParseDuration} format (C{500ms}, C{30s}, C{1m30s}),
as Kamal writes them on the command line.
"""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


class InvalidDuration(ValueError):
    """
    A string is not a Go-style duration.
    """


def parseDuration(text: str) -> float:
    """
    Parse a Go duration (C{"1m30s"}, C{"500ms"}, C{"0"}) into seconds.

    @raise InvalidDuration: for anything Go's parser would refuse, and for
        negative durations, which no option here accepts.
    """
    s = text.strip()
    if s in ("0", "+0"):
        return 0.0
    if s.startswith("+"):
        s = s[1:]
    if not s or s.startswith("-"):
        raise InvalidDuration(f'invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        match = _PART.match(s, pos)
        if match is None:
            raise InvalidDuration(f'invalid duration "{text}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total


def formatDuration(seconds: float) -> str:
    """
    Format seconds the way Go prints a C{time.Duration} (C{30s}, C{1m30s},
    C{500ms}), for messages and listings.
    """
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}\u00b5s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    return out + f"{secs:g}s"
