# -*- test-case-name: tests.files.test_confine -*-
"""
Which files an app may hand to the proxy: only regular files under one of
its service's sendfile roots, once every symbolic link and C{..} of the path
is resolved (the roots' own links are resolved at each request, so a root
that is a symbolic link switched by a release keeps working).
"""

from __future__ import annotations

import os
import stat
from typing import Sequence


class Forbidden(Exception):
    """
    The path is not one the app may hand over (403); the message says why.
    """


class Missing(Exception):
    """
    There is no regular file at the path (404).
    """


def confine(path: str, roots: Sequence[str]) -> str:
    """
    C{path} resolved, when it lies under one of C{roots}.

    @raise Forbidden: it is relative, or outside every root.
    """
    if not os.path.isabs(path):
        raise Forbidden("not an absolute path")
    try:
        real = os.path.realpath(path)
    except (ValueError, OSError) as e:
        raise Forbidden(f"cannot be resolved: {e}") from None
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return real
    raise Forbidden("outside the service's sendfile roots")


def openRegular(path: str) -> tuple[int, os.stat_result]:
    """
    Open the resolved C{path} for reading without following a link put in
    its place meanwhile and without blocking (a FIFO), and check that it is
    a regular file.

    @return: the file descriptor (the caller closes it) and its status.
    @raise Missing: nothing there, or not a regular file.
    @raise Forbidden: the proxy may not read it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as e:
        raise Forbidden(f"not readable: {e.strerror}") from None
    except OSError as e:
        raise Missing(e.strerror or str(e)) from None
    try:
        status = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise Missing(e.strerror or str(e)) from None
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise Missing("not a regular file")
    return fd, status
