"""
Protection tests: misbehaving clients on 127.0.0.1 against the real daemon
(slowloris, slow uploads and readers, oversized and smuggled requests,
header floods, garbage, abrupt disconnects), each proving that the target
sees no partial or smuggled request, that the daemon's memory and temporary
files stay bounded, and that a well-behaved client alongside is unaffected.
"""
