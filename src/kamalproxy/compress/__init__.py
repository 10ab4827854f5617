"""
Response compression: which content coding a client gets (L{negotiate}),
which responses are compressed and how their head changes (L{policy}), the
encoders themselves with BREACH jitter (L{encoders}), and the counters
(L{stats}). The pipeline stage using them is
L{kamalproxy.pipeline.compression}; nothing here knows about sinks, so a
cache can encode a stored identity response with the same code.
"""
