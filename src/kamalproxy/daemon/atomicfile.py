# -*- test-case-name: tests.daemon.test_state -*-
"""
Replacing a file atomically: readers see the old content or the new, never a
part, and a crash leaves one of the two on disk.
"""

from __future__ import annotations

import os
import re
import secrets

from twisted.python.filepath import FilePath

_TOKEN_BYTES = 6


def _temporaryPattern(path: FilePath) -> re.Pattern[str]:
    """
    The names of L{atomicWrite}'s temporary files for C{path}:
    C{.<name>.<12 hex digits>.tmp}.
    """
    return re.compile(rf"\.{re.escape(path.basename())}\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp\Z")


def staleTemporaryFiles(path: FilePath) -> list[FilePath]:
    """
    The temporary files of L{atomicWrite} for C{path} that are still in its
    directory: a process killed while writing leaves one behind. (Only to
    be removed when no process is writing C{path}.)
    """
    directory = path.parent()
    if not directory.isdir():
        return []
    pattern = _temporaryPattern(path)
    return sorted(
        child for child in directory.children() if pattern.match(child.basename()) and child.isfile()
    )


def atomicWrite(path: FilePath, data: bytes, mode: int = 0o600) -> None:
    """
    Replace C{path} with C{data} atomically: write a temporary file created
    with C{mode}, C{fsync} it, rename it over C{path}, then C{fsync} the
    directory.

    @param path: the file to write.
    @param data: its new content.
    @param mode: the permission bits of the new file.
    """
    directory = path.parent()
    temporary = directory.child(f".{path.basename()}.{secrets.token_hex(_TOKEN_BYTES)}.tmp")
    fd = os.open(temporary.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # umask may have removed bits we asked for
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary.path, path.path)
    except BaseException:
        if temporary.exists():
            temporary.remove()
        raise
    dirfd = os.open(directory.path, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
