"""
kamal-proxy for Twisted: a reverse proxy for gapless deploys, host routing and
(later) automatic HTTPS, drivable by Kamal.
"""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "kamal-proxy"


@cache
def version() -> str:
    """
    This package's version, from its installed metadata (distribution
    C{kamal-proxy}); C{0+unknown} when it is not installed.
    """
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def versionLine(prog: str = DISTRIBUTION) -> str:
    """
    What C{--version} prints, as cobra prints it for the original:
    C{kamal-proxy version 0.1.0}.
    """
    return f"{prog} version {version()}"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DISTRIBUTION", "__version__", "version", "versionLine"]
