"""
Tests for L{kamalproxy.daemon.state}: the state file.
"""

from __future__ import annotations

import errno
import json
import os

from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.daemon import atomicfile

from kamalproxy.daemon import state
from kamalproxy.daemon.state import STATE_FILE_NAME, SaveFailed, StateStore

from .._helpers import tempDir

SNAPSHOT = [
    {"name": "app", "targets": ["10.0.0.1:3000"], "options": {"deploy_timeout": 30.0}},
    {"name": "web", "targets": ["10.0.0.2:80", "10.0.0.3:80"], "options": {}},
]


class StateStoreTests(SynchronousTestCase):
    """
    L{StateStore} saves and loads the router's snapshot.
    """

    def setUp(self) -> None:
        self.directory = tempDir(self)
        self.store = StateStore(self.directory)

    def test_roundTrip(self) -> None:
        """
        What is saved is loaded back.
        """
        self.store.save(SNAPSHOT)
        self.assertEqual(self.store.load(), SNAPSHOT)
        self.assertEqual(self.store.path, os.path.join(self.directory, STATE_FILE_NAME))

    def test_overwrite(self) -> None:
        """
        A second save replaces the first.
        """
        self.store.save(SNAPSHOT)
        self.store.save(SNAPSHOT[:1])
        self.assertEqual(self.store.load(), SNAPSHOT[:1])

    def test_noTemporaryFilesLeft(self) -> None:
        """
        Saving leaves only the state file in the directory.
        """
        self.store.save(SNAPSHOT)
        self.store.save([])
        self.assertEqual(os.listdir(self.directory), [STATE_FILE_NAME])

    def test_createsDirectory(self) -> None:
        """
        A missing directory is created, private to the user.
        """
        directory = os.path.join(self.directory, "a", "b")
        StateStore(directory).save(SNAPSHOT)
        self.assertEqual(StateStore(directory).load(), SNAPSHOT)
        self.assertEqual(os.stat(directory).st_mode & 0o777, 0o700)

    def test_failedSaveKeepsOldFile(self) -> None:
        """
        A save that fails before the rename leaves the previous state file
        as it was and no temporary file behind.
        """
        self.store.save(SNAPSHOT)

        def broken(src: str, dst: str) -> None:
            raise OSError("disk full")

        self.patch(state.os, "replace", broken)
        self.assertRaises(SaveFailed, self.store.save, [])
        self.assertEqual(os.listdir(self.directory), [STATE_FILE_NAME])
        with open(self.store.path) as f:
            self.assertEqual(json.load(f), SNAPSHOT)

    def test_diskFull(self) -> None:
        """
        A disk that fills up during a save fails it with L{SaveFailed},
        whose message is the one line for the user; the previous state file
        is kept and no temporary file is left behind.
        """
        self.store.save(SNAPSHOT)

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(atomicfile.os, "write", full)
        error = self.assertRaises(SaveFailed, self.store.save, [])
        self.assertEqual(str(error), "cannot save state: No space left on device")
        self.assertEqual(os.listdir(self.directory), [STATE_FILE_NAME])
        with open(self.store.path) as f:
            self.assertEqual(json.load(f), SNAPSHOT)

    def test_directoryUnusable(self) -> None:
        """
        A state directory that cannot be made fails the save with
        L{SaveFailed} too.
        """
        blocker = os.path.join(self.directory, "file")
        open(blocker, "w").close()
        error = self.assertRaises(SaveFailed, StateStore(os.path.join(blocker, "dir")).save, [])
        self.assertEqual(str(error), "cannot save state: Not a directory")

    def test_staleTemporaryFilesRemoved(self) -> None:
        """
        Loading (at start-up) removes the temporary files a save killed
        midway leaves in the state directory, and only those: other files,
        even with similar names, are kept.
        """
        self.store.save(SNAPSHOT)
        stale = [".kamal-proxy.state.0123456789ab.tmp", ".kamal-proxy.state.fedcba987654.tmp"]
        kept = [
            ".kamal-proxy.state.0123456789AB.tmp",
            ".kamal-proxy.state.0123456789a.tmp",
            ".kamal-proxy.state.0123456789ab.tmp.bak",
            "kamal-proxy.state.0123456789ab.tmp",
            ".other.state.0123456789ab.tmp",
            "notes.txt",
        ]
        for name in stale + kept:
            with open(os.path.join(self.directory, name), "w") as f:
                f.write("x")
        os.mkdir(os.path.join(self.directory, ".kamal-proxy.state.00000000000a.tmp"))
        events: list[dict] = []
        self.patch(StateStore, "log", Logger(observer=events.append))
        self.assertEqual(self.store.load(), SNAPSHOT)
        self.assertEqual(
            sorted(os.listdir(self.directory)),
            sorted([STATE_FILE_NAME, ".kamal-proxy.state.00000000000a.tmp", *kept]),
        )
        self.assertEqual(
            [formatEvent(e) for e in events],
            [f"Removed {os.path.join(self.directory, name)}, left by an interrupted save" for name in stale],
        )

    def test_staleTemporaryFileNotRemovable(self) -> None:
        """
        A stale temporary file that cannot be removed is a warning; the
        state is loaded all the same.
        """
        self.store.save(SNAPSHOT)
        open(os.path.join(self.directory, ".kamal-proxy.state.0123456789ab.tmp"), "w").close()

        def refuse(path: FilePath) -> None:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        self.patch(FilePath, "remove", refuse)
        events: list[dict] = []
        self.patch(StateStore, "log", Logger(observer=events.append))
        self.assertEqual(self.store.load(), SNAPSHOT)
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertTrue(formatEvent(event).endswith("left by an interrupted save: Permission denied"))

    def test_noStateDirectory(self) -> None:
        """
        With no state directory at all, there is nothing to load or remove.
        """
        self.assertEqual(StateStore(os.path.join(self.directory, "none")).load(), [])

    def test_missing(self) -> None:
        """
        With no state file, the snapshot is empty.
        """
        self.assertEqual(self.store.load(), [])

    def _assertSetAside(self, content: bytes) -> None:
        with open(self.store.path, "wb") as f:
            f.write(content)
        self.assertEqual(self.store.load(), [])
        self.assertFalse(os.path.exists(self.store.path))
        [aside] = os.listdir(self.directory)
        self.assertTrue(aside.startswith(STATE_FILE_NAME + ".corrupt-"), aside)
        self.assertTrue(aside[len(STATE_FILE_NAME + ".corrupt-") :].isdigit(), aside)
        with open(os.path.join(self.directory, aside), "rb") as f:
            self.assertEqual(f.read(), content)

    def test_corrupt(self) -> None:
        """
        A file that is not JSON is moved aside as
        C{kamal-proxy.state.corrupt-<time>}, and the snapshot is empty.
        """
        self._assertSetAside(b'[{"name": "app", "targ')

    def test_notUTF8(self) -> None:
        """
        A file that is not text is moved aside too.
        """
        self._assertSetAside(b"\xff\xfe\x00garbage")

    def test_notAList(self) -> None:
        """
        JSON that is not a list is moved aside too.
        """
        self._assertSetAside(b'{"name": "app"}')

    def test_notAListOfObjects(self) -> None:
        """
        A list whose entries are not objects is moved aside too.
        """
        self._assertSetAside(b'[1, "two"]')

    def test_corruptThenSave(self) -> None:
        """
        After a corrupt file is set aside, saving writes a new state file
        next to it.
        """
        with open(self.store.path, "wb") as f:
            f.write(b"nonsense")
        self.assertEqual(self.store.load(), [])
        self.store.save(SNAPSHOT)
        self.assertEqual(self.store.load(), SNAPSHOT)
        self.assertEqual(len(os.listdir(self.directory)), 2)
