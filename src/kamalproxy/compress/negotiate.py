# -*- test-case-name: tests.compress.test_negotiate -*-
"""
Content negotiation of the response's coding from the request's
C{Accept-Encoding} (RFC 9110 section 12.5.3).

Each listed coding has a weight (C{q}, 1 when absent, 0 meaning "not
acceptable"); C{*} stands for every coding not listed; C{identity} (no
coding) is acceptable unless excluded by C{identity;q=0} or C{*;q=0}. The
coding with the highest weight wins, equal weights going to the better
compression (zstd, then brotli, then gzip); identity wins over a coding
only when the client gave it (by name or as C{*}) a strictly higher weight
(C{gzip;q=0.5} alone still gets gzip: the weight only ranks codings). No C{Accept-Encoding} at all, or an
empty one, gets identity (as every server and proxy does, although the RFC
would allow any coding). C{x-gzip} is gzip (RFC 9110 section 8.4.1.3). An
element that cannot be parsed is ignored.
"""

from __future__ import annotations

from typing import Optional, Sequence

GZIP = "gzip"
ZSTD = "zstd"
BROTLI = "br"

PREFERENCE: tuple[str, ...] = (ZSTD, BROTLI, GZIP)
"""
The codings the proxy can produce, best first: ties between equal weights
are broken in this order.
"""

_ALIASES = {"x-gzip": GZIP}
_CACHE_LIMIT = 512
_chosen: dict[bytes, Optional[str]] = {}


def parseQuality(text: str) -> Optional[float]:
    """
    A C{qvalue} (C{0}, C{0.5}, C{1.000}), or L{None} when C{text} is not
    one: at most three decimals, not above 1.
    """
    whole, dot, decimals = text.partition(".")
    if whole not in ("0", "1") or len(decimals) > 3 or not (decimals.isdigit() or not decimals):
        return None
    value = float(whole + "." + (decimals or "0"))
    return value if value <= 1 else None


def parseAcceptEncoding(value: str) -> dict[str, float]:
    """
    The weight of each coding named in an C{Accept-Encoding} value (names
    lower-cased, C{x-gzip} read as C{gzip}, C{*} kept as it is). A coding
    named twice keeps its first weight.
    """
    weights: dict[str, float] = {}
    for element in value.split(","):
        coding, _, parameters = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        quality = 1.0
        if parameters:
            name, equals, text = parameters.strip().partition("=")
            parsed = parseQuality(text.strip()) if equals and name.strip().lower() == "q" else None
            if parsed is None:
                continue
            quality = parsed
        coding = _ALIASES.get(coding, coding)
        weights.setdefault(coding, quality)
    return weights


def chooseCoding(weights: dict[str, float], available: Sequence[str] = PREFERENCE) -> Optional[str]:
    """
    The coding of C{available} (in preference order) to answer with, or
    L{None} for identity.
    """
    anything = weights.get("*")
    best, bestQuality = None, 0.0
    for coding in available:
        quality = weights.get(coding, anything if anything is not None else 0.0)
        if quality > bestQuality:
            best, bestQuality = coding, quality
    if best is None:
        return None
    identity = weights.get("identity", anything)
    return best if identity is None or bestQuality >= identity else None


def codingFor(values: Optional[Sequence[bytes]]) -> Optional[str]:
    """
    The coding to answer a request with, from its raw C{Accept-Encoding}
    field values (L{None} when it has none). Answers for the few values
    browsers send are remembered, so the usual request costs one lookup.
    """
    if not values:
        return None
    key = values[0] if len(values) == 1 else b",".join(values)
    try:
        return _chosen[key]
    except KeyError:
        pass
    coding = chooseCoding(parseAcceptEncoding(key.decode("latin-1")))
    if len(_chosen) >= _CACHE_LIMIT:
        _chosen.clear()
    _chosen[key] = coding
    return coding


__all__ = ["BROTLI", "GZIP", "PREFERENCE", "ZSTD", "chooseCoding", "codingFor", "parseAcceptEncoding", "parseQuality"]
