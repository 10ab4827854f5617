"""
The client side of HTTP: the HTTP/1.1 channel, HTTP/2, the site, refusals, tunnels, error pages and body buffers;
and the HTTP rules shared across the proxy: fields, validators and conditional requests, ranges.
"""
