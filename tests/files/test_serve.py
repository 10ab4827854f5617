"""
Tests for L{kamalproxy.files.serve}: the status, headers and pieces a file
makes for a request.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kamalproxy.files import serve
from kamalproxy.files.serve import FileAnswer, answerFor, contentTypeFor, strongETag
from kamalproxy.http.validators import httpDate


def _headers(**values: bytes) -> Headers:
    return Headers({name.replace("_", "-").encode(): [value] for name, value in values.items()})


class ETagTests(SynchronousTestCase):
    def test_strongAndChangesWithFile(self) -> None:
        """
        A file's entity tag is strong and changes with its modification time.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"one")
        first = strongETag(os.stat(path))
        self.assertTrue(first.startswith(b'"') and first.endswith(b'"'))
        os.utime(path, ns=(0, 1_000_000_001))
        self.assertNotEqual(strongETag(os.stat(path)), first)


class AnswerForTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "report.txt")
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "wb") as f:
            f.write(b"0123456789" * 10)
        self.stat = os.stat(self.path)
        self.etag = strongETag(self.stat)

    def answer(self, method: bytes = b"GET", status: int = 200, app: list | None = None, **request: bytes) -> FileAnswer:  # type: ignore[type-arg]
        return answerFor(method, _headers(**request), status, app or [], self.path, self.stat, b"BOUNDARY")

    def header(self, answer: FileAnswer, name: bytes) -> list[bytes]:
        return [v for n, v in answer.headers if n.lower() == name.lower()]

    def test_whole(self) -> None:
        answer = self.answer()
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.pieces, [(0, 100)])
        self.assertEqual(self.header(answer, b"content-length"), [b"100"])
        self.assertEqual(self.header(answer, b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertEqual(self.header(answer, b"accept-ranges"), [b"bytes"])
        self.assertEqual(self.header(answer, b"etag"), [self.etag])
        self.assertEqual(self.header(answer, b"last-modified"), [httpDate(int(self.stat.st_mtime))])

    def test_head(self) -> None:
        answer = self.answer(b"HEAD")
        self.assertEqual((answer.status, answer.pieces), (200, []))
        self.assertEqual(self.header(answer, b"content-length"), [b"100"])

    def test_appHeadersKeptExceptBodyOnes(self) -> None:
        app = [
            (b"Cache-Control", b"public, max-age=60"),
            (b"Content-Type", b"application/pdf"),
            (b"Content-Encoding", b"gzip"),
            (b"Content-Length", b"0"),
            (b"ETag", b'"app"'),
            (b"Last-Modified", b"yesterday"),
            (b"Content-Range", b"bytes 0-0/1"),
        ]
        answer = self.answer(app=app)
        self.assertEqual(self.header(answer, b"cache-control"), [b"public, max-age=60"])
        self.assertEqual(self.header(answer, b"content-type"), [b"application/pdf"])
        self.assertEqual(self.header(answer, b"content-encoding"), [b"gzip"])
        self.assertEqual(self.header(answer, b"content-length"), [b"100"])
        self.assertEqual(self.header(answer, b"etag"), [self.etag])
        self.assertEqual(self.header(answer, b"content-range"), [])

    def test_appRangeAnswerReplaced(self) -> None:
        """
        Rack answers a C{Range} itself (206 with its own C{Content-Range});
        the proxy answers it again from the file.
        """
        answer = self.answer(status=206, app=[(b"Content-Range", b"bytes 0-9/100")], range=b"bytes=10-19")
        self.assertEqual(answer.status, 206)
        self.assertEqual(self.header(answer, b"content-range"), [b"bytes 10-19/100"])
        self.assertEqual(answer.pieces, [(10, 10)])

    def test_otherAppStatusWholeFile(self) -> None:
        answer = self.answer(status=404, range=b"bytes=0-1", if_none_match=b"*")
        self.assertEqual((answer.status, answer.pieces), (404, [(0, 100)]))

    def test_otherAppStatusTyped(self) -> None:
        """
        A file sent with another status says its type: the app's, else the
        one of its extension; the fields come in the order of a 200's.
        """
        modified = httpDate(int(self.stat.st_mtime))
        answer = self.answer(status=404, app=[(b"X-App", b"1")])
        self.assertEqual(
            answer.headers,
            [
                (b"X-App", b"1"),
                (b"ETag", self.etag),
                (b"Last-Modified", modified),
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", b"100"),
            ],
        )
        answer = self.answer(status=404, app=[(b"content-type", b"text/html")])
        self.assertEqual(self.header(answer, b"content-type"), [b"text/html"])

    def test_wholeFields(self) -> None:
        """
        A 200's fields: the app's, the validators, C{Accept-Ranges}, then
        the type and length.
        """
        answer = self.answer(app=[(b"X-App", b"1")])
        self.assertEqual(
            answer.headers,
            [
                (b"X-App", b"1"),
                (b"ETag", self.etag),
                (b"Last-Modified", httpDate(int(self.stat.st_mtime))),
                (b"Accept-Ranges", b"bytes"),
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", b"100"),
            ],
        )

    def test_typeLookedUpOnlyWhenSent(self) -> None:
        """
        The type of the file's extension is looked up only for an answer
        that says it: not for a 304 or a 412, nor when the app gave one.
        """
        looked: list[str] = []

        def contentTypeFor(path: str) -> bytes:
            looked.append(path)
            return b"text/plain"

        self.patch(serve, "contentTypeFor", contentTypeFor)
        self.assertEqual(self.answer(if_none_match=self.etag).status, 304)
        self.assertEqual(self.answer(if_match=b'"nope"').status, 412)
        self.assertEqual(self.answer(app=[(b"Content-Type", b"text/x")]).status, 200)
        self.assertEqual(looked, [])
        for status, request in ((200, {}), (404, {}), (206, {"range": b"bytes=0-1,10-12"})):
            answer = self.answer(status=status, **request)
            self.assertEqual(answer.status, status)
        self.assertEqual(looked, [self.path] * 3)

    def test_notModified(self) -> None:
        answer = self.answer(app=[(b"Cache-Control", b"max-age=1"), (b"Content-Type", b"text/x")], if_none_match=self.etag)
        self.assertEqual((answer.status, answer.pieces), (304, []))
        self.assertEqual(self.header(answer, b"etag"), [self.etag])
        self.assertEqual(self.header(answer, b"cache-control"), [b"max-age=1"])
        self.assertEqual(self.header(answer, b"content-type"), [])

    def test_preconditionFailed(self) -> None:
        answer = self.answer(if_match=b'"nope"')
        self.assertEqual((answer.status, answer.pieces), (412, []))

    def test_singleRange(self) -> None:
        answer = self.answer(range=b"bytes=-5")
        self.assertEqual(answer.status, 206)
        self.assertEqual(answer.pieces, [(95, 5)])
        self.assertEqual(self.header(answer, b"content-range"), [b"bytes 95-99/100"])
        self.assertEqual(self.header(answer, b"content-length"), [b"5"])

    def test_rangeOnHeadHasNoBody(self) -> None:
        answer = self.answer(b"HEAD", range=b"bytes=0-4")
        self.assertEqual((answer.status, answer.pieces), (206, []))

    def test_rangeIgnoredForPost(self) -> None:
        self.assertEqual(self.answer(b"POST", range=b"bytes=0-4").status, 200)

    def test_multipleRanges(self) -> None:
        answer = self.answer(range=b"bytes=0-1,10-12")
        self.assertEqual(answer.status, 206)
        self.assertEqual(
            self.header(answer, b"content-type"), [b"multipart/byteranges; boundary=BOUNDARY"]
        )
        with open(self.path, "rb") as f:
            data = f.read()
        body = b"".join(p if isinstance(p, bytes) else data[p[0] : p[0] + p[1]] for p in answer.pieces)
        self.assertEqual(
            body,
            b"--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/100\r\n\r\n01"
            b"\r\n--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 10-12/100\r\n\r\n012"
            b"\r\n--BOUNDARY--\r\n",
        )
        self.assertEqual(self.header(answer, b"content-length"), [b"%d" % len(body)])

    def test_unsatisfiable(self) -> None:
        answer = self.answer(range=b"bytes=100-")
        self.assertEqual((answer.status, answer.pieces), (416, []))
        self.assertEqual(self.header(answer, b"content-range"), [b"bytes */100"])

    def test_ifRangeStale(self) -> None:
        answer = self.answer(range=b"bytes=0-1", if_range=b'"old"')
        self.assertEqual((answer.status, answer.pieces), (200, [(0, 100)]))

    def test_ifRangeCurrent(self) -> None:
        self.assertEqual(self.answer(range=b"bytes=0-1", if_range=self.etag).status, 206)

    def test_emptyFile(self) -> None:
        with open(self.path, "wb"):
            pass
        self.stat = os.stat(self.path)
        answer = self.answer()
        self.assertEqual((answer.status, answer.pieces), (200, []))
        self.assertEqual(self.header(answer, b"content-length"), [b"0"])


class ContentTypeTests(SynchronousTestCase):
    def test_types(self) -> None:
        self.assertEqual(contentTypeFor("/a/b.html"), b"text/html; charset=utf-8")
        self.assertEqual(contentTypeFor("/a/b.png"), b"image/png")
        self.assertEqual(contentTypeFor("/a/b.css.gz"), b"application/gzip")
        self.assertEqual(contentTypeFor("/a/b.unknownext"), b"application/octet-stream")
        self.assertEqual(contentTypeFor("/a/noext"), b"application/octet-stream")
