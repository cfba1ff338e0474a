"""Downloads of a package source into the updater's content store (``adapters.content``:
``<root>/sha256/<first two hex>/<hex>``, the layout agents are served from).

A file is named by its content, so a package two sources (or two syncs) list is stored once, and a
file already present is never fetched again. A download goes to a private temporary file (0600) in
the target's own directory (0700), is hashed while it is written, fsynced and renamed into place
only when its size and SHA256 are the listed ones: a reader never sees a partial or wrong file.
A per-file lock (``fcntl.flock`` on ``<hex>.lock``) keeps two syncs from fetching the same file at
once; the second is refused (DPM-E261) instead of waiting behind an unbounded download."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from dpm_schemas import DpmError, E
from dpm_updater.adapters.content import ContentStore

_FULL = (errno.ENOSPC, errno.EDQUOT)


class Receiver:
    """One download into the store: ``write`` chunks, then ``commit``. Too many bytes, or the wrong
    ones, are DPM-E265; nothing partial survives (see ContentStore.receive)."""

    def __init__(self, fd: int, *, size: int, sha256: str, source: str, url: str) -> None:
        self._fd, self._size, self._sha256 = fd, size, sha256
        self._source, self._url = source, url
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self.written += len(chunk)
        if self.written > self._size:
            self._mismatch("(more bytes than listed)")
        self._hash.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    def check(self) -> None:
        actual = self._hash.hexdigest()
        if self.written != self._size or actual != self._sha256:
            self._mismatch(actual)

    def _mismatch(self, actual: str) -> None:
        raise E.SOURCE_HASH_MISMATCH(
            source=self._source,
            url=self._url,
            actual=actual,
            size=self.written,
            listed="the Packages index",
            expected=self._sha256,
            expected_size=self._size,
        )


@contextlib.contextmanager
def receive(store: ContentStore, sha256: str, size: int, *, source: str, url: str) -> Iterator[Receiver | None]:
    """A Receiver for the file, or None when it is already stored (another sync got it first).
    On leaving without error the file is checked, fsynced and renamed into place."""
    target = store.path_of(sha256)
    with _os_errors(source, target.parent, size), _locked(store, target, source):
        if store.has(sha256, size):
            yield None
            return
        temp = target.with_name(f".{sha256}.part")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            receiver = Receiver(fd, size=size, sha256=sha256, source=source, url=url)
            yield receiver
            receiver.check()
            os.fsync(fd)
            os.rename(temp, target)
            _fsync_dir(target.parent)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


@contextlib.contextmanager
def _locked(store: ContentStore, target: Path, source: str) -> Iterator[None]:
    """Hold ``<hex>.lock``; removed on release. The inode is compared after locking, so a lock file
    another holder unlinked meanwhile is not mistaken for the live one."""
    for parent in (store.root, store.objects, target.parent):
        parent.mkdir(mode=0o700, exist_ok=True)
    lock = target.with_name(target.name + ".lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise E.SOURCE_FILE_BUSY(source=source, path=str(target), reason="another sync is downloading it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def _os_errors(source: str, where: Path, size: int) -> Iterator[None]:
    """OSErrors as codes: a full disk DPM-E259, anything else that stops the write DPM-E260."""
    try:
        yield
    except DpmError:
        raise
    except OSError as exc:
        if exc.errno in _FULL:
            raise E.SOURCE_DISK_FULL(
                source=source, path=str(where), free=_free(where), required=size, what="a package"
            ) from None
        raise E.SOURCE_STORE_UNWRITABLE(source=source, path=str(where), reason=exc.strerror or str(exc)) from None


def _free(path: Path) -> int:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
