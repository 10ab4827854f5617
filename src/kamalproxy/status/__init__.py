"""
The proxy's status: the facts C{/status.json}, the live status page and
C{kamal-proxy status} show (L{kamalproxy.status.report}), the page's web
resources (L{kamalproxy.status.page}) and the terminal summary
(L{kamalproxy.status.summary}).
"""
