"""
The target side: the HTTP/1.1 client and pool, forwarding, streaming, targets and health checks.
"""
