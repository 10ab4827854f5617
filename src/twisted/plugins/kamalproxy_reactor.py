"""
C{twistd --reactor=kamal-epoll}: the epoll reactor C{kamal-proxy run} uses
(L{kamalproxy.daemon.leanreactor}).
"""

from twisted.application.reactors import Reactor

kamalEpoll = Reactor(
    "kamal-epoll",
    "kamalproxy.daemon.leanreactor",
    "epoll reactor without the legacy logging context around each event (kamal-proxy's)",
)
