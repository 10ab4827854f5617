"""
Integration tests: the real daemon and command line as subprocesses, real
backends and clients on 127.0.0.1.
"""
