"""
C{python -m kamalproxy.thrust COMMAND [ARGS...]}: the C{thrust} console script.
"""

from kamalproxy.thrust.runner import main

main()
