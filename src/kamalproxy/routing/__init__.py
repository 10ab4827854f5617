"""
Services and where requests go: the router, the routing table, services and their options.
"""
