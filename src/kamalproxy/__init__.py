"""
kamal-proxy for Twisted: a reverse proxy for gapless deploys, host routing and
(later) automatic HTTPS, drivable by Kamal.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
