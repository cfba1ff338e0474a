"""The package content store: ``sha256/<aa>/<hex>`` under the updater's root, each file stored once
whatever number of packages name it, and ``uploads/<upload id>.part`` for content still arriving.
Package sources download into the same layout (``sources.adapters.store.receive``), so a synced
package is served to agents like an uploaded one.

Directories are 0700 and files 0600, created with that mode. Each request's bytes are fsynced before
the new offset is reported, so an offset the client was told survives a crash; a request that dies
midway leaves a part file that simply holds fewer bytes (the next HEAD says how many). Complete
content is hashed, fsynced and renamed into place, so the store never holds a file under a digest it
does not have. One request at a time per upload (an exclusive lock on its part file, across replicas
on one file system).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from dpm_schemas import E

_BLOCK = 1 << 20


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads = root / "uploads"
        self.objects = root / "sha256"

    def open(self) -> ContentStore:
        for d in (self.root, self.uploads, self.objects):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            d.chmod(0o700)  # an older or hand-made directory too
        return self

    def part(self, upload_id: UUID) -> Path:
        return self.uploads / f"{upload_id}.part"

    def path_of(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def held(self, upload_id: UUID) -> int:
        """How many bytes of the upload the store holds (what the client resumes from)."""
        try:
            return self.part(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    def has(self, sha256: str, size: int | None = None) -> bool:
        """The content is stored (of exactly ``size`` bytes, when given: a source sync's check)."""
        try:
            st = self.path_of(sha256).stat()
        except OSError:
            return False
        return st.st_size == size if size is not None else stat.S_ISREG(st.st_mode)

    @contextmanager
    def writing(self, upload_id: UUID) -> Iterator[int]:
        """The part file open for appending (its descriptor), locked against a second request."""
        fd = os.open(self.part(upload_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise E.PACKAGE_UPLOAD_BUSY(upload=str(upload_id)) from None
            yield fd
        finally:
            os.close(fd)

    def write(self, fd: int, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise self._refusal(exc, len(data)) from exc

    def sync(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            raise self._refusal(exc, 0) from exc

    def digest(self, upload_id: UUID) -> str:
        h = hashlib.sha256()
        with open(self.part(upload_id), "rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
        return h.hexdigest()

    def keep(self, upload_id: UUID, sha256: str) -> Path:
        """Move complete content to its digest's place (a copy already there wins: same bytes)."""
        target = self.path_of(sha256)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        part = self.part(upload_id)
        if target.exists():
            part.unlink(missing_ok=True)
        else:
            os.replace(part, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return target

    def discard(self, upload_id: UUID) -> None:
        self.part(upload_id).unlink(missing_ok=True)

    def _refusal(self, exc: OSError, needed: int) -> Exception:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(self.root).free
            return E.PACKAGE_STORE_FULL(path=str(self.root), needed=needed, free=free)
        return exc
