"""The source sync against a real, signed Debian repository served on 127.0.0.1 (see conftest.py):
every failure the operator can meet comes back with its own code."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from source_repo import INDEX, MISSING, Repo, Served, code_of, sha256, tmpfs

from dpm_schemas import DpmError, E
from dpm_updater.adapters.content import ContentStore
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.sync import SourceSync, SyncResult

pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (the Debian packages dpkg-dev, gnupg and gpgv)"
)


def config(url: str, key: Path | None, **kw: object) -> SourceConfig:
    base = SourceConfig(name="test", url=url, suite="stable", components=("main",), architectures=("amd64",),
                        key_file=key, connect_timeout=5, read_timeout=5)  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_good_sync_stores_by_hash_and_a_second_sync_fetches_nothing(
    sync: SourceSync, repo: Repo, web: Served, debs: dict[str, Path]
) -> None:
    cfg = config(web.url, repo.key)
    first = sync.run(cfg, None, fetch_packages=True)
    assert [(e.package, e.version, e.component) for e in first.index.entries] == [
        ("hello", "1.0", "main"),
        ("tool", "2.1", "main"),
    ]
    assert [e.package for e in first.changes.added] == ["hello", "tool"] and not first.failures
    assert "/dists/stable/main/binary-amd64/Packages.xz" in web.requests  # the smallest listed encoding
    for entry in first.index.entries:
        stored = sync.store.path_of(entry.sha256)
        assert stored == sync.store.root / "sha256" / entry.sha256[:2] / entry.sha256
        assert sha256(stored) == entry.sha256 and stored.stat().st_mode & 0o777 == 0o600
        assert stored.parent.stat().st_mode & 0o777 == 0o700
    assert first.package_bytes == sum(e.size for e in first.index.entries)
    assert not list(sync.store.root.rglob("*.part")) and not list(sync.store.root.rglob("*.lock"))

    web.requests.clear()
    second = sync.run(cfg, first.index, fetch_packages=True)
    assert second.changes.empty and second.downloaded == () and second.package_bytes == 0
    assert not [p for p in web.requests if p.startswith("/pool/")]

    repo.publish([debs["hello"], debs["tool-rebuilt"]])
    third = sync.run(cfg, second.index, fetch_packages=True)
    assert [(b.package, b.sha256 != a.sha256) for b, a in third.changes.changed] == [("tool", True)]
    assert [e.package for e in third.downloaded] == ["tool"]


def test_index_only_sync_downloads_no_package(sync: SourceSync, repo: Repo, web: Served) -> None:
    result: SyncResult = sync.run(config(web.url, repo.key), None)
    assert len(result.index.entries) == 2 and result.package_bytes == 0
    assert not [p for p in web.requests if p.startswith("/pool/")]


def test_detached_signature_is_used_without_inrelease(sync: SourceSync, repo: Repo, web: Served) -> None:
    (repo.dists / "InRelease").unlink()
    assert len(sync.run(config(web.url, repo.key), None).index.entries) == 2


def test_through_the_proxy_with_and_without_the_right_credentials(
    sync: SourceSync, repo: Repo, web: Served, proxy: Served
) -> None:
    good = config(web.url, repo.key, proxy=f"http://dpm:s3cret@127.0.0.1:{proxy.port}")
    assert len(sync.run(good, None, fetch_packages=True).downloaded) == 2
    assert any(p.endswith("/InRelease") for p in proxy.requests)
    wrong = replace(good, proxy=f"http://dpm:wrong@127.0.0.1:{proxy.port}")
    with pytest.raises(DpmError) as err:
        sync.run(wrong, None)
    assert err.value.code == E.SOURCE_PROXY_AUTH.code and "wrong" not in err.value.message


def test_closed_ports_name_the_hop_that_failed(sync: SourceSync, repo: Repo, web: Served) -> None:
    proxied = config(web.url, repo.key, proxy=f"http://127.0.0.1:{closed_port()}")
    assert code_of(sync, proxied) == E.SOURCE_PROXY_UNREACHABLE.code
    assert code_of(sync, config(f"http://127.0.0.1:{closed_port()}", repo.key)) == E.SOURCE_CONNECT_FAILED.code


def test_tls_is_verified_and_a_ca_file_is_honoured(
    sync: SourceSync, repo: Repo, tls_web: Served, certificate: tuple[Path, Path]
) -> None:
    assert code_of(sync, config(tls_web.url, repo.key)) == E.SOURCE_TLS_FAILED.code
    assert len(sync.run(config(tls_web.url, repo.key, ca_file=certificate[0]), None).index.entries) == 2


def test_a_server_that_does_not_answer_times_out(sync: SourceSync, repo: Repo, web: Served) -> None:
    web.stall.add("/dists/stable/InRelease")
    assert code_of(sync, config(web.url, repo.key, read_timeout=0.3)) == E.SOURCE_TIMEOUT.code


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/dists/stable/" + INDEX + ".xz", 404, E.SOURCE_HTTP_CLIENT_ERROR.code),
        ("/dists/stable/InRelease", 500, E.SOURCE_HTTP_SERVER_ERROR.code),  # only a 404 falls back
    ],
)
def test_http_status_codes(sync: SourceSync, repo: Repo, web: Served, path: str, status: int, code: str) -> None:
    web.status[path] = status
    assert code_of(sync, config(web.url, repo.key)) == code


def test_a_missing_package_is_a_per_file_failure(sync: SourceSync, repo: Repo, web: Served) -> None:
    web.status["/pool/main/hello_1.0_all.deb"] = 404
    result = sync.run(config(web.url, repo.key), None, fetch_packages=True)
    assert [(f.filename, f.code) for f in result.failures] == [
        ("pool/main/hello_1.0_all.deb", E.SOURCE_HTTP_CLIENT_ERROR.code)
    ]
    assert [e.package for e in result.downloaded] == ["tool"]


@pytest.mark.parametrize("form", ["InRelease", "Release"])
def test_a_release_changed_after_signing_is_refused(sync: SourceSync, repo: Repo, web: Served, form: str) -> None:
    if form == "Release":
        (repo.dists / "InRelease").unlink()
    signed = repo.dists / form
    signed.write_bytes(signed.read_bytes().replace(b"Codename: dpm", b"Codename: evil"))
    assert code_of(sync, config(web.url, repo.key)) == E.SOURCE_SIGNATURE_BAD.code


def test_another_key_is_refused(sync: SourceSync, repo: Repo, web: Served, tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="dpm-gpg-"))
    try:
        run = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
        subprocess.run([*run, "--quick-gen-key", "other <o@example.invalid>", "ed25519", "sign", "never"],
                       check=True, capture_output=True)  # fmt: skip
        other = tmp_path / "other.gpg"  # binary this time: used as the keyring directly
        other.write_bytes(subprocess.run([*run, "--export"], check=True, capture_output=True).stdout)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    assert code_of(sync, config(web.url, other)) == E.SOURCE_SIGNATURE_BAD.code


@pytest.mark.parametrize("content", [b"\x00not a key", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!\n"])
def test_an_unusable_key_is_not_blamed_on_the_repository(
    sync: SourceSync, repo: Repo, web: Served, tmp_path: Path, content: bytes
) -> None:
    key = tmp_path / "bad.key"
    key.write_bytes(content + b"-----END PGP PUBLIC KEY BLOCK-----\n" if b"BEGIN" in content else content)
    assert code_of(sync, config(web.url, key)) == E.SOURCE_VERIFY_UNAVAILABLE.code


def test_key_given_but_repository_unsigned(sync: SourceSync, repo: Repo, web: Served) -> None:
    repo.write_release(sign=False)
    assert code_of(sync, config(web.url, repo.key)) == E.SOURCE_SIGNATURE_MISSING.code
    assert len(sync.run(config(web.url, None), None).index.entries) == 2  # no key: no check asked for


def test_an_index_that_differs_from_the_release_is_refused(sync: SourceSync, repo: Repo, web: Served) -> None:
    xz = repo.dists / (INDEX + ".xz")
    data = bytearray(xz.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    xz.write_bytes(bytes(data))
    assert code_of(sync, config(web.url, repo.key)) == E.SOURCE_HASH_MISMATCH.code


def test_a_component_the_release_does_not_list(sync: SourceSync, repo: Repo, web: Served) -> None:
    assert code_of(sync, config(web.url, repo.key, components=("contrib",))) == E.SOURCE_INDEX_MISSING.code


def test_disk_full_is_a_per_file_failure_with_nothing_partial_left(
    repo: Repo, web: Served, debs: dict[str, Path], tmp_path: Path
) -> None:
    repo.publish([debs["big"], debs["hello"]])
    with tmpfs(tmp_path / "small", "64k") as small:
        sync = SourceSync(ContentStore(small / "store"))
        result = sync.run(config(web.url, repo.key), None, fetch_packages=True)
        assert [(f.filename, f.code) for f in result.failures] == [
            ("pool/main/big_1.0_all.deb", E.SOURCE_DISK_FULL.code),
            ("pool/main/hello_1.0_all.deb", E.SOURCE_DISK_FULL.code),  # not tried: the store is full
        ]
        assert [p for p in (small / "store").rglob("*") if p.is_file()] == []
        assert os.statvfs(small).f_bfree == os.statvfs(small).f_blocks  # the space is back
