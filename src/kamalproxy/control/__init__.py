"""
The command line and the control socket: AMP commands and responders, kamal-proxy-ctl, the kamal-proxy drop-in.
"""
