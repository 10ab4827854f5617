"""
The request pipeline: the stages every request goes through, composed in
one place (L{kamalproxy.pipeline.chain.buildChain}), and the dispatcher that
runs them when a request's head arrives.
"""
