"""
Automatic TLS certificates over ACME (RFC 8555): an asynchronous client on
treq and certbot's C{acme} message types, a certificate store, an HTTP-01
responder, and an issuing service that renews ahead of expiry.
"""

__all__ = [
    "client",
    "http01",
    "interfaces",
    "keys",
    "service",
    "store",
]
