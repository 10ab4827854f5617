# -*- test-case-name: tests.routing.test_table -*-
"""
The routing table: which service answers a host and path.

Hosts are looked up exactly, then as a one-label wildcard (C{*.example.com}
matches C{a.example.com}, not C{a.b.example.com} nor C{example.com}), then
as the default (host-less) binding. Within the chosen host the longest path
prefix matching on a segment boundary wins; there is no fall-through to a
less specific host when no prefix matches.
"""

from __future__ import annotations

from typing import Generic, Iterable, Optional, TypeVar

S = TypeVar("S")

DEFAULT_HOST = b""


def hostKey(host: str) -> bytes:
    """
    The table key for a host name (lower-case bytes; C{""} for the default).
    """
    return host.lower().encode("ascii")


def requestHost(header: Optional[bytes]) -> bytes:
    """
    The host of a C{Host} header value, lower-cased, without its port.
    """
    if not header:
        return b""
    if header.startswith(b"["):
        end = header.find(b"]")
        return header[: end + 1].lower() if end > 0 else header.lower()
    colon = header.find(b":")
    if colon >= 0:
        header = header[:colon]
    return header.lower()


def requestPort(header: Optional[bytes]) -> Optional[int]:
    """
    The port of a C{Host} header value, or L{None}.
    """
    if not header:
        return None
    if header.startswith(b"["):
        end = header.find(b"]")
        rest = header[end + 1 :] if end > 0 else b""
    else:
        colon = header.find(b":")
        rest = header[colon:] if colon >= 0 else b""
    if rest.startswith(b":") and rest[1:].isdigit():
        return int(rest[1:])
    return None


class RoutingTable(Generic[S]):
    """
    An immutable map of (host, path prefix) bindings to services; a new table
    is built for every change and swapped in whole.
    """

    def __init__(self, bindings: Iterable[tuple[str, str, S]] = ()) -> None:
        """
        @param bindings: C{(host, prefix, service)}; host C{""} is the
            default binding.
        """
        table: dict[bytes, list[tuple[bytes, bytes, S]]] = {}
        for host, prefix, service in bindings:
            p = prefix.encode("ascii")
            table.setdefault(hostKey(host), []).append(
                (p, b"" if p == b"/" else p + b"/", service)
            )
        for entries in table.values():
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._table = table

    def bindingsFor(self, host: bytes) -> Optional[list[tuple[bytes, bytes, S]]]:
        """
        The bindings that answer for C{host}: exact, wildcard, then default.
        """
        table = self._table
        entries = table.get(host)
        if entries is None:
            dot = host.find(b".")
            if dot > 0:
                entries = table.get(b"*" + host[dot:])
            if entries is None:
                entries = table.get(DEFAULT_HOST)
        return entries

    def lookup(self, host: bytes, path: bytes) -> Optional[tuple[S, bytes]]:
        """
        The service for C{host} (already lower-cased, without port) and
        C{path}, with the prefix that matched; L{None} when nothing does.
        """
        entries = self.bindingsFor(host)
        if entries is None:
            return None
        for prefix, prefixSlash, service in entries:
            if not prefixSlash or path == prefix or path.startswith(prefixSlash):
                return service, prefix
        return None

    def owner(self, host: str, prefix: str) -> Optional[S]:
        """
        The service bound to exactly C{(host, prefix)}, if any.
        """
        p = prefix.encode("ascii")
        for bound, _, service in self._table.get(hostKey(host), ()):
            if bound == p:
                return service
        return None


def strippedPath(path: bytes, prefix: bytes) -> bytes:
    """
    C{path} without C{prefix} (C{"/"} when nothing is left).
    """
    if prefix == b"/":
        return path
    rest = path[len(prefix) :]
    return rest if rest else b"/"
