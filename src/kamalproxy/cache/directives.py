# -*- test-case-name: tests.cache.test_directives -*-
"""
Reading C{Cache-Control} (RFC 9111 §5.2), the field the cache decides by,
strictly: names case-insensitive, values as tokens or quoted strings,
duplicates and invalid values noticed; and C{CDN-Cache-Control} (RFC 9213).
HTTP dates and header look-ups are in L{kamalproxy.http.validators} and
L{kamalproxy.http.fields}.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

from kamalproxy.http.fields import headerValues
from kamalproxy.upstream.client import RawHeaders

#: The greatest delta-seconds the cache represents (RFC 9111 §1.2.2).
MAX_DELTA = 2147483648

#: What L{CacheControl.seconds} gives for a directive whose value cannot be
#: used (missing, not digits, or given twice with different values).
INVALID = -1

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+\Z")


def _directives(value: bytes) -> Iterable[tuple[str, Optional[str], bool]]:
    """
    The directives of one C{Cache-Control} field value: C{(name, argument,
    wellFormed)}, with the argument unquoted.
    """
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in b" \t,":
            i += 1
        if i >= n:
            return
        match = _TOKEN.match(value, i)
        if match is None:  # garbage up to the next comma
            end = value.find(b",", i)
            i = n if end < 0 else end
            continue
        name = match.group().decode("ascii").lower()
        i = match.end()
        argument: Optional[str] = None
        wellFormed = True
        while i < n and value[i] in b" \t":
            i += 1
        if i < n and value[i : i + 1] == b"=":
            i += 1
            while i < n and value[i] in b" \t":
                i += 1
            if i < n and value[i : i + 1] == b'"':
                i += 1
                chars = bytearray()
                closed = False
                while i < n:
                    c = value[i]
                    if c == 0x5C and i + 1 < n:  # quoted-pair
                        chars.append(value[i + 1])
                        i += 2
                        continue
                    i += 1
                    if c == 0x22:
                        closed = True
                        break
                    chars.append(c)
                argument = chars.decode("latin-1")
                wellFormed = closed
            else:
                token = _TOKEN.match(value, i)
                if token is None:
                    argument = ""
                    wellFormed = False
                else:
                    argument = token.group().decode("latin-1")
                    i = token.end()
        while i < n and value[i] in b" \t":
            i += 1
        if i < n and value[i : i + 1] != b",":  # trailing junk spoils the directive
            wellFormed = False
            end = value.find(b",", i)
            i = n if end < 0 else end
        yield name, argument, wellFormed


_SF_MEMBER = re.compile(
    rb'[a-z*][a-z0-9_\-.*]*(=(-?[0-9]{1,15}(\.[0-9]{1,3})?|"[^"\\]*"|[A-Za-z*][!#$%&\'*+\-.^_`|~0-9A-Za-z:/]*|\?[01]))?'
    rb'(;[a-z*][a-z0-9_\-.*]*(=[^;,]*)?)*\Z'
)
_SF_INTEGER = re.compile(rb"[a-z-]+=[0-9]{1,15}(;.*)?\Z")
_DELTA_DIRECTIVES = (b"max-age", b"s-maxage", b"stale-while-revalidate", b"stale-if-error")


def _validTargeted(value: bytes) -> bool:
    """
    Whether a C{CDN-Cache-Control} value is a valid structured dictionary
    (RFC 9213 §2.1, RFC 8941) whose freshness directives are integers; an
    invalid one is ignored as a whole.
    """
    for member in value.split(b","):
        member = member.strip(b" \t")
        if not member or not _SF_MEMBER.match(member):
            return False
        name = member.split(b"=", 1)[0].split(b";", 1)[0]
        if name in _DELTA_DIRECTIVES and not _SF_INTEGER.match(member):
            return False
    return True


class CacheControl:
    """
    The C{Cache-Control} directives of a request or response.

    @ivar directives: each directive's argument (L{None}: none given) by
        lower-case name; the first occurrence's.
    @ivar spoiled: names given twice with different arguments, or badly
        formed; their values are not used (L{seconds} gives L{INVALID}).
    """

    __slots__ = ("directives", "spoiled")

    def __init__(self, values: Sequence[bytes] = ()) -> None:
        self.directives: dict[str, Optional[str]] = {}
        self.spoiled: set[str] = set()
        for value in values:
            for name, argument, wellFormed in _directives(value):
                if not wellFormed:
                    self.spoiled.add(name)
                if name in self.directives:
                    if self.directives[name] != argument:
                        self.spoiled.add(name)
                else:
                    self.directives[name] = argument

    @classmethod
    def parsed(cls, values: Sequence[bytes]) -> "CacheControl":
        """
        The directives of these field values, remembered: the same few
        values come again and again (treat the result as read-only).
        """
        key = tuple(values)
        control = _PARSED.get(key)
        if control is None:
            if len(_PARSED) >= _MAX_PARSED:
                _PARSED.clear()
            control = _PARSED[key] = cls(key)
        return control

    @classmethod
    def of(cls, headers: RawHeaders) -> "CacheControl":
        """
        The directives of C{headers}' C{Cache-Control} fields.
        """
        return cls.parsed(headerValues(headers, b"cache-control"))

    @classmethod
    def forResponse(cls, headers: RawHeaders) -> "CacheControl":
        """
        The directives this cache obeys in a response: its
        C{CDN-Cache-Control} (RFC 9213, which targets caches like this
        one) when it has one, instead of its C{Cache-Control}.
        """
        targeted = headerValues(headers, b"cdn-cache-control")
        if targeted and all(_validTargeted(value) for value in targeted):
            return cls.parsed(targeted)
        return cls.of(headers)

    def __contains__(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str) -> Optional[int]:
        """
        The delta-seconds argument of C{name}: L{None} when absent,
        L{INVALID} when it cannot be used, capped at L{MAX_DELTA}.
        """
        if name not in self.directives:
            return None
        argument = self.directives[name]
        if name in self.spoiled or argument is None or not _DIGITS.match(argument):
            return INVALID
        return min(int(argument), MAX_DELTA)

    def __repr__(self) -> str:
        return f"<CacheControl {self.directives!r} spoiled={sorted(self.spoiled)!r}>"


_PARSED: dict[tuple[bytes, ...], "CacheControl"] = {}
_MAX_PARSED = 512
