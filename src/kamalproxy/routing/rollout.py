# -*- test-case-name: tests.routing.test_rollout -*-
"""
Rollouts: a service's second target group (the rollout slot) and the split
that sends some requests to it.

The split key is the value of the request cookie C{kamal-rollout}, which
the application sets (the proxy never does). A request without it goes to
the main group. A value in the split's allowlist goes to the rollout group;
any other value goes there when its FNV-1a 32-bit hash is at most
C{percentage / 100} of the hash range, as the original's
C{RolloutController} decides, so a given value always lands on the same
side.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import attr

from kamalproxy.routing.options import InvalidOptions
from kamalproxy.upstream.targets import TargetGroup

ROLLOUT_COOKIE = b"kamal-rollout"

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MAX_HASH = 0xFFFFFFFF

# Bytes a cookie value may hold, as Go's net/http accepts them (printable
# ASCII without '"', ';' and '\'); a cookie with any other byte is ignored.
_COOKIE_VALUE_BYTES = bytes(b for b in range(0x20, 0x7F) if b not in b'";\\')
_WHITESPACE = b" \t\r\n"

DECISIONS_KEPT = 10_000
"""
How many cookie values a split remembers the side of (a user's requests
carry the same value; hashing one costs a few microseconds in Python).
"""


def fnv1a32(data: bytes) -> int:
    """
    The 32-bit FNV-1a hash of C{data} (Go's C{hash/fnv} C{New32a}).
    """
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MAX_HASH
    return value


def splitPoint(percentage: int) -> float:
    """
    The largest hash (as a float, the original's C{percentage_split_point})
    that goes to the rollout group at C{percentage}.
    """
    return float(_MAX_HASH) * (percentage / 100.0)


def rolloutCookie(headers: Sequence[bytes]) -> Optional[bytes]:
    """
    The value of the first valid C{kamal-rollout} cookie in the C{Cookie}
    header values C{headers}, read as Go's C{Request.Cookie} reads it
    (surrounding double quotes removed), or L{None} when there is none.
    """
    for line in headers:
        if ROLLOUT_COOKIE not in line:
            continue
        for part in line.split(b";"):
            name, equals, value = part.strip(_WHITESPACE).partition(b"=")
            if name.strip(_WHITESPACE) != ROLLOUT_COOKIE:
                continue
            if len(value) > 1 and value[0] == 0x22 and value[-1] == 0x22:
                value = value[1:-1]
            if not value.translate(None, _COOKIE_VALUE_BYTES):
                return value
    return None


def describeSplit(percentage: object, allowlist: Sequence[str]) -> str:
    """
    A split in a few words, as C{list} shows it: C{25%}, C{25%, list a,b}.
    """
    shown = f"{percentage}%"
    if allowlist:
        shown += ", list " + ",".join(allowlist)
    return shown


def checkPercentage(percentage: int) -> int:
    """
    @raise InvalidOptions: C{percentage} is not 0 to 100.
    """
    if not 0 <= percentage <= 100:
        raise InvalidOptions(f"invalid percent: {percentage} (must be between 0 and 100)")
    return percentage


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attr.s(auto_attribs=True, frozen=True, slots=True)
class RolloutSplit:
    """
    Which requests go to the rollout group (C{rollout set}).

    @ivar percentage: the share of cookie values sent to the rollout group,
        0 to 100.
    @ivar allowlist: cookie values always sent to the rollout group.
    """

    percentage: int = attr.ib(converter=checkPercentage)
    allowlist: tuple[str, ...] = attr.ib(default=(), converter=_strings)
    _point: float = attr.ib(init=False, eq=False, repr=False)
    _allowed: frozenset[bytes] = attr.ib(init=False, eq=False, repr=False)
    _decided: dict[bytes, bool] = attr.ib(init=False, eq=False, repr=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_point", splitPoint(self.percentage))
        object.__setattr__(self, "_allowed", frozenset(v.encode("utf-8") for v in self.allowlist))

    def usesRollout(self, value: Optional[bytes]) -> bool:
        """
        Whether a request whose C{kamal-rollout} cookie is C{value} (L{None}:
        no such cookie) goes to the rollout group.
        """
        if not value:
            return False
        decided = self._decided.get(value)
        if decided is None:
            decided = value in self._allowed or float(fnv1a32(value)) <= self._point
            if len(self._decided) >= DECISIONS_KEPT:
                self._decided.clear()
            self._decided[value] = decided
        return decided

    def describe(self) -> str:
        """
        The split in a few words (L{describeSplit}).
        """
        return describeSplit(self.percentage, self.allowlist)

    def toJSON(self) -> dict[str, Any]:
        """
        The split as the state file keeps it (the original's
        C{rollout_controller}).
        """
        return {
            "percentage": self.percentage,
            "percentage_split_point": self._point,
            "allowlist": list(self.allowlist),
        }

    @classmethod
    def fromJSON(cls, data: Mapping[str, Any]) -> "RolloutSplit":
        """
        A split from L{toJSON}'s output (the split point is computed again
        from the percentage).

        @raise InvalidOptions: it cannot be read.
        """
        if not isinstance(data, Mapping):
            raise InvalidOptions("expected an object for the rollout split")
        percentage = data.get("percentage", 0)
        allowlist = data.get("allowlist") or []
        if not isinstance(percentage, int) or isinstance(percentage, bool):
            raise InvalidOptions(f"invalid rollout percentage: {percentage!r}")
        if not isinstance(allowlist, list) or not all(isinstance(v, str) for v in allowlist):
            raise InvalidOptions(f"invalid rollout allowlist: {allowlist!r}")
        return cls(percentage, allowlist)


@attr.s(auto_attribs=True, frozen=True, slots=True)
class RolloutSlot:
    """
    A service's rollout: its target group (C{rollout deploy}) and the split
    (C{rollout set}; L{None} before it and after C{rollout stop}, when every
    request goes to the main group). Replaced whole on each change.
    """

    group: TargetGroup
    split: Optional[RolloutSplit] = None

    def toJSON(self) -> dict[str, Any]:
        """
        The slot's keys of a service's entry in the state file.
        """
        entry: dict[str, Any] = {"rollout_targets": self.group.addresses}
        if self.group.readers:
            entry["rollout_readers"] = self.group.readerAddresses
        if self.split is not None:
            entry["rollout_controller"] = self.split.toJSON()
        return entry

    def describe(self) -> dict[str, Any]:
        """
        What C{list} shows of the rollout: its targets and their health,
        and the split.
        """
        described: dict[str, Any] = {
            "targets": self.group.addresses,
            "health": {t.address: t.state for t in self.group.targets},
        }
        if self.group.readers:
            described["read_targets"] = self.group.readerAddresses
        if self.split is not None:
            described["percentage"] = self.split.percentage
            described["allowlist"] = list(self.split.allowlist)
        return described


__all__ = [
    "ROLLOUT_COOKIE",
    "RolloutSlot",
    "RolloutSplit",
    "checkPercentage",
    "describeSplit",
    "fnv1a32",
    "rolloutCookie",
    "splitPoint",
]
