"""The parts of a source sync that need no network: settings, the fetch plan and its bounds, the
content store's lock and its disk errors."""

from __future__ import annotations

import errno
import fcntl
import gzip
import hashlib
import lzma
import os
from pathlib import Path

import pytest

from dpm_schemas import DpmError, E
from dpm_updater.adapters.content import ContentStore
from dpm_updater.sources.adapters import store as store_module
from dpm_updater.sources.adapters.store import receive
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.domain.plan import decoded_index, decompress, plan_indexes
from dpm_updater.sources.domain.release import IndexFile, Release


def cfg(**kw: object) -> SourceConfig:
    values: dict[str, object] = {"name": "s", "url": "http://repo.example:8080/debian", "suite": "stable",
                                 "components": ("main",), "architectures": ("amd64",)}  # fmt: skip
    return SourceConfig(**(values | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"url": "ftp://repo.example/"}, E.SOURCE_URL_INVALID.code),
        ({"url": "http://repo.example:99999/"}, E.SOURCE_URL_INVALID.code),
        ({"url": "http:///debian"}, E.SOURCE_URL_INVALID.code),
        ({"url": "http://repo example/"}, E.SOURCE_URL_INVALID.code),
        ({"proxy": "https://p.example:3128"}, E.SOURCE_URL_INVALID.code),
        ({"proxy": "http://u:pw@p.example:3128/path"}, E.SOURCE_URL_INVALID.code),
        ({"suite": "../etc"}, E.SOURCE_SETTING_INVALID.code),
        ({"components": ()}, E.SOURCE_SETTING_INVALID.code),
        ({"architectures": ("amd64", "a/b")}, E.SOURCE_SETTING_INVALID.code),
        ({"key_file": Path("/nonexistent/key.asc")}, E.SOURCE_SETTING_INVALID.code),
        ({"read_timeout": 0}, E.SOURCE_SETTING_INVALID.code),
    ],
)
def test_settings_are_refused_with_their_code(kw: dict[str, object], code: str) -> None:
    with pytest.raises(DpmError) as err:
        cfg(**kw)
    assert err.value.code == code


def test_a_proxy_password_never_appears_in_the_refusal() -> None:
    with pytest.raises(DpmError) as err:
        cfg(proxy="http://u:hunter2@p.example:3128/x")
    assert "hunter2" not in err.value.message
    assert cfg(proxy="http://u:pw@p.example:3128").dists_url("InRelease") == (
        "http://repo.example:8080/debian/dists/stable/InRelease"
    )


TEXT = b"Package: foo\nVersion: 1\nArchitecture: all\nFilename: pool/foo.deb\nSize: 1\nSHA256: " + b"a" * 64 + b"\n"


def listed(path: str, data: bytes) -> IndexFile:
    return IndexFile(path, len(data), hashlib.sha256(data).hexdigest())


def release(*files: IndexFile) -> Release:
    return Release("stable", "dpm", "", ("main",), ("amd64",), files)


def test_the_plan_prefers_xz_then_gz_and_bounds_by_the_plain_index() -> None:
    xz, gz = lzma.compress(TEXT), gzip.compress(TEXT)
    plain = listed("main/binary-amd64/Packages", TEXT)
    r = release(plain, listed("main/binary-amd64/Packages.gz", gz), listed("main/binary-amd64/Packages.xz", xz))
    (item,) = plan_indexes(r, source="s", suite="stable", components=("main",), architectures=("amd64",))
    assert (item.listed.path, item.encoding, item.plain) == ("main/binary-amd64/Packages.xz", ".xz", plain)
    assert decoded_index(xz, item, limit=1 << 20, source="s", url="u") == TEXT
    only_gz = release(listed("main/binary-amd64/Packages.gz", gz))
    (item,) = plan_indexes(only_gz, source="s", suite="stable", components=("main",), architectures=("amd64",))
    assert item.encoding == ".gz" and decoded_index(gz, item, limit=1 << 20, source="s", url="u") == TEXT
    with pytest.raises(DpmError) as err:
        plan_indexes(r, source="s", suite="stable", components=("main",), architectures=("arm64",))
    assert err.value.code == E.SOURCE_INDEX_MISSING.code


@pytest.mark.parametrize(
    ("data", "encoding", "code"),
    [
        (lzma.compress(b"\n" * 100_000), ".xz", E.SOURCE_RESPONSE_TOO_LARGE.code),  # a small bomb
        (gzip.compress(b"\n" * 100_000), ".gz", E.SOURCE_RESPONSE_TOO_LARGE.code),
        (lzma.compress(TEXT)[:-8], ".xz", E.SOURCE_INDEX_INVALID.code),  # truncated
        (b"not gzip", ".gz", E.SOURCE_INDEX_INVALID.code),
    ],
)
def test_decompression_is_bounded_and_checked(data: bytes, encoding: str, code: str) -> None:
    with pytest.raises(DpmError) as err:
        decompress(data, encoding, limit=1000, source="s", url="u")
    assert err.value.code == code


def test_an_index_whose_decompressed_text_differs_from_the_release_is_refused() -> None:
    xz = lzma.compress(TEXT + b"Extra: 1\n")
    r = release(listed("main/binary-amd64/Packages", TEXT), listed("main/binary-amd64/Packages.xz", xz))
    (item,) = plan_indexes(r, source="s", suite="stable", components=("main",), architectures=("amd64",))
    with pytest.raises(DpmError) as err:
        decoded_index(xz, item, limit=1 << 20, source="s", url="u")
    assert err.value.code == E.SOURCE_RESPONSE_TOO_LARGE.code  # bounded by the plain index's listed size


def put(store: ContentStore, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    with receive(store, digest, len(data), source="s", url="u") as receiver:
        assert receiver is not None
        receiver.write(data)
    return store.path_of(digest)


def test_the_store_refuses_wrong_bytes_and_keeps_nothing_partial(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    assert put(store, b"deb").read_bytes() == b"deb"
    digest = hashlib.sha256(b"right").hexdigest()
    with pytest.raises(DpmError) as err, receive(store, digest, 5, source="s", url="u") as receiver:
        assert receiver is not None
        receiver.write(b"wrong")
    assert err.value.code == E.SOURCE_HASH_MISMATCH.code
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [hashlib.sha256(b"deb").hexdigest()]


def test_a_file_another_sync_is_fetching_is_busy(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    digest = hashlib.sha256(b"x").hexdigest()
    with receive(store, digest, 1, source="s", url="u") as first:
        assert first is not None
        lock = store.path_of(digest).with_name(digest + ".lock")
        fd = os.open(lock, os.O_RDWR)  # a second open file description, as a second sync's would be
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        with pytest.raises(DpmError) as err, receive(store, digest, 1, source="s", url="u"):
            pass
        assert err.value.code == E.SOURCE_FILE_BUSY.code
        first.write(b"x")
    assert store.has(digest, 1) and not lock.exists()


@pytest.mark.parametrize(
    ("number", "code"),
    [(errno.ENOSPC, E.SOURCE_DISK_FULL.code), (errno.EROFS, E.SOURCE_STORE_UNWRITABLE.code),
     (errno.EACCES, E.SOURCE_STORE_UNWRITABLE.code)],
)  # fmt: skip
def test_disk_errors_have_their_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, number: int, code: str) -> None:
    def refuse(fd: int, data: object) -> int:
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(store_module.os, "write", refuse)
    with pytest.raises(DpmError) as err:
        put(ContentStore(tmp_path), b"deb")
    assert err.value.code == code
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
