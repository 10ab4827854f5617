"""
Seeing what the proxy does: the request log (and, later, metrics and the status page).
"""
