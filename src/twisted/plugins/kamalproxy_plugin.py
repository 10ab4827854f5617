"""
twistd plugin: C{twistd kamal-proxy} runs the proxy daemon.

The options and service come from L{kamalproxy.daemon.tap}, imported only when the
plugin is used, so C{twistd --help} stays cheap.
"""

from twisted.application.service import ServiceMaker

kamalProxy = ServiceMaker(
    "kamal-proxy",  # display name
    "kamalproxy.daemon.tap",  # module with Options and makeService
    "Zero-downtime deploy proxy (kamal-proxy + Thruster for Twisted)",
    "kamal-proxy",  # the twistd subcommand
)
