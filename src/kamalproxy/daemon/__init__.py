"""
The process: daemon options and service tree, kamal-proxy run, the state file.
"""
