"""
Seeing what the proxy does: the request log, Prometheus metrics (and, later, the status page).
"""
