"""
Serving files from disk (the X-Sendfile stage): confinement to the
service's roots, byte ranges, conditional requests and a streaming producer.
"""
