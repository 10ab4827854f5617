"""
The shared HTTP cache (RFC 9111) kept in memory: C{Cache-Control} parsing,
freshness and age, the store (LRU by bytes), conditional and range answers.
The pipeline stage that uses it is L{kamalproxy.pipeline.cache}.
"""

__all__: list[str] = []
