"""
Tests for L{kamalproxy.files.confine}: only regular files under a root,
symbolic links and C{..} resolved.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.files.confine import Forbidden, Missing, confine, openRegular


class ConfineTests(SynchronousTestCase):
    def setUp(self) -> None:
        base = os.path.realpath(self.mktemp())
        self.root = os.path.join(base, "public")
        self.outside = os.path.join(base, "secret")
        os.makedirs(os.path.join(self.root, "assets"))
        os.makedirs(self.outside)
        self.inside = os.path.join(self.root, "assets", "app.css")
        with open(self.inside, "w") as f:
            f.write("body{}")
        self.secret = os.path.join(self.outside, "key")
        with open(self.secret, "w") as f:
            f.write("secret")

    def test_inside(self) -> None:
        self.assertEqual(confine(self.inside, [self.root]), self.inside)

    def test_anyRoot(self) -> None:
        self.assertEqual(confine(self.secret, [self.root, self.outside]), self.secret)

    def test_dotDotOut(self) -> None:
        path = os.path.join(self.root, "assets", "..", "..", "secret", "key")
        self.assertRaises(Forbidden, confine, path, [self.root])

    def test_dotDotStayingInside(self) -> None:
        path = os.path.join(self.root, "assets", "..", "assets", "app.css")
        self.assertEqual(confine(path, [self.root]), self.inside)

    def test_symlinkOut(self) -> None:
        link = os.path.join(self.root, "escape")
        os.symlink(self.secret, link)
        self.assertRaises(Forbidden, confine, link, [self.root])
        directory = os.path.join(self.root, "dir")
        os.symlink(self.outside, directory)
        self.assertRaises(Forbidden, confine, os.path.join(directory, "key"), [self.root])

    def test_symlinkInside(self) -> None:
        link = os.path.join(self.root, "alias.css")
        os.symlink(self.inside, link)
        self.assertEqual(confine(link, [self.root]), self.inside)

    def test_rootIsSymlink(self) -> None:
        """
        A root that is a link (a release's C{current}) is followed at each
        request.
        """
        link = os.path.join(os.path.dirname(self.root), "current")
        os.symlink(self.root, link)
        self.assertEqual(confine(os.path.join(link, "assets", "app.css"), [link]), self.inside)

    def test_siblingWithSamePrefix(self) -> None:
        sibling = self.root + "-other"
        os.makedirs(sibling)
        self.assertRaises(Forbidden, confine, os.path.join(sibling, "x"), [self.root])

    def test_relative(self) -> None:
        self.assertRaises(Forbidden, confine, "public/assets/app.css", [self.root])

    def test_nul(self) -> None:
        self.assertRaises(Forbidden, confine, self.root + "/a\0b", [self.root])

    def test_missingOutsideIsForbidden(self) -> None:
        """
        Outside the roots, whether a file exists is not told.
        """
        self.assertRaises(Forbidden, confine, os.path.join(self.outside, "nothing"), [self.root])


class OpenRegularTests(SynchronousTestCase):
    def test_regular(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"12345")
        fd, stat = openRegular(path)
        self.addCleanup(os.close, fd)
        self.assertEqual(stat.st_size, 5)
        self.assertEqual(os.pread(fd, 5, 0), b"12345")

    def test_missing(self) -> None:
        self.assertRaises(Missing, openRegular, self.mktemp())

    def test_directory(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        self.assertRaises(Missing, openRegular, path)

    def test_fifoDoesNotBlock(self) -> None:
        path = self.mktemp()
        os.mkfifo(path)
        self.assertRaises(Missing, openRegular, path)

    def test_unreadable(self) -> None:
        if os.geteuid() == 0:
            self.skipTest("root reads anything")
        path = self.mktemp()
        with open(path, "wb"):
            pass
        os.chmod(path, 0)
        self.assertRaises(Forbidden, openRegular, path)
