"""
C{kamal-proxy thrust COMMAND [ARGS...]}: the proxy in front of one app in
its container, configured by Thruster's environment, with the app run as
its child process.
"""
