"""
Connections before HTTP: the connection limit (and, later, the PROXY protocol).
"""
