# -*- test-case-name: tests.daemon.test_state -*-
"""
The state file: every deployed service, saved atomically after each change
and read back at start.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from kamalproxy.daemon.atomicfile import atomicWrite, staleTemporaryFiles

STATE_FILE_NAME = "kamal-proxy.state"


class SaveFailed(Exception):
    """
    The state file could not be written (a full disk, a read-only
    directory); the old file is as it was. The message is the one-line
    reason for the user: C{cannot save state: No space left on device}.
    """


class StateStore:
    """
    Keeps the router's snapshot in C{<directory>/kamal-proxy.state}.
    """

    log = Logger()

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE_NAME)

    def save(self, snapshot: list[dict[str, Any]]) -> None:
        """
        Write C{snapshot} atomically: a temporary file in the same directory,
        flushed to disk, then renamed over the old one.

        @raise SaveFailed: it could not be written; the old file is kept.
        """
        data = json.dumps(snapshot, indent=2, sort_keys=True).encode("utf-8")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            atomicWrite(FilePath(self.path), data, 0o600)
        except OSError as e:
            raise SaveFailed(f"cannot save state: {e.strerror or e}") from e

    def load(self) -> list[dict[str, Any]]:
        """
        The saved snapshot; empty when there is none. A file that cannot be
        read as a snapshot is logged, moved aside (C{.corrupt-<time>}) and
        treated as empty, so the daemon starts rather than crash-loops.

        Meant for start-up: temporary files left by a save that was killed
        (C{.kamal-proxy.state.<hex>.tmp}) are removed first.
        """
        self._removeStaleTemporaryFiles()
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            self.log.info("No previous state to restore")
            return []
        try:
            snapshot = json.loads(raw)
            if not isinstance(snapshot, list) or not all(
                isinstance(entry, dict) for entry in snapshot
            ):
                raise ValueError("expected a list of services")
        except ValueError as e:
            aside = f"{self.path}.corrupt-{time.time_ns()}"
            os.replace(self.path, aside)
            self.log.error(
                "State file {path} is corrupt ({error}); moved it to {aside} and "
                "started with no services",
                path=self.path,
                error=str(e),
                aside=aside,
            )
            return []
        return snapshot

    def _removeStaleTemporaryFiles(self) -> None:
        for stale in staleTemporaryFiles(FilePath(self.path)):
            try:
                stale.remove()
            except OSError as e:
                self.log.warn(
                    "Cannot remove {path}, left by an interrupted save: {error}",
                    path=stale.path,
                    error=e.strerror or str(e),
                )
            else:
                self.log.info("Removed {path}, left by an interrupted save", path=stale.path)
