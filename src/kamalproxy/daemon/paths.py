# -*- test-case-name: tests.control.test_ctl -*-
"""
Where kamal-proxy keeps its control socket and its state, found the way the
original does (C{internal/server/config.go}).
"""

from __future__ import annotations

import os.path
import tempfile
from typing import Mapping

SOCKET_NAME = "kamal-proxy.sock"


def defaultSocketPath(environ: Mapping[str, str]) -> str:
    """
    The control socket's path: C{$KAMAL_PROXY_SOCKET}, else
    C{$XDG_RUNTIME_DIR/kamal-proxy.sock}, else C{kamal-proxy.sock} in the
    temporary directory. Empty variables count as unset.

    @param environ: the environment to read, usually C{os.environ}.
    """
    explicit = environ.get("KAMAL_PROXY_SOCKET", "")
    if explicit:
        return explicit
    runtimeDir = environ.get("XDG_RUNTIME_DIR", "") or tempfile.gettempdir()
    return os.path.join(runtimeDir, SOCKET_NAME)


def defaultStateDir(environ: Mapping[str, str]) -> str:
    """
    The directory for the state file and certificates:
    C{~/.config/kamal-proxy}.

    @param environ: the environment to read C{HOME} from; without it the
        user's home directory comes from the password database.
    """
    home = environ.get("HOME", "") or os.path.expanduser("~")
    return os.path.join(home, ".config", "kamal-proxy")


__all__ = ["defaultSocketPath", "defaultStateDir", "SOCKET_NAME"]
