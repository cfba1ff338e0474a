"""RPM repositories as package sources (kind "rpm"), against a real repository: .rpm files built
with rpmbuild (a minimal noarch spec in a private _topdir), repodata/ written by createrepo_c,
repomd.xml signed (detached, armoured) with the throwaway key of source_repo.py, served on 127.0.0.1
by the same server the Debian tests use. The sync reads repomd.xml and the primary metadata it lists
and gives the Index a Debian source gives, so the packages land in the content store by hash and
become catalogue revisions of type rpm; each failure comes back with its code."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "services/updater/tests/integration"))
from source_repo import MISSING, Repo, Served, _web, code_of, keys, sha256, sync

from dpm_agent.packages.install import InstallOptions, install
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import DpmError, E
from dpm_schemas.packages import Execution, Package, PackageType
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.sync import SourceSync
from tests.integration.test_package_sources import Clock, last_sync, packages, updater

__all__ = ["keys", "sync"]  # fixtures of source_repo
RPM_TOOLS = [t for t in ("rpmbuild", "createrepo_c") if shutil.which(t) is None]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(MISSING + RPM_TOOLS), reason=f"needs {', '.join(MISSING + RPM_TOOLS)} (rpm, createrepo-c, gnupg, gpgv)"
    ),
]


def build_rpm(work: Path, name: str, version: str, release: str, payload: bytes, *, epoch: int | None = None) -> Path:
    """A real noarch .rpm, built by rpmbuild in a private _topdir (one per build)."""
    top = Path(tempfile.mkdtemp(dir=work))
    (top / "data").write_bytes(payload)
    spec = top / f"{name}.spec"
    spec.write_text(
        f"Name: {name}\nVersion: {version}\nRelease: {release}\n"
        + (f"Epoch: {epoch}\n" if epoch is not None else "")
        + f"Summary: {name} for the sync test\nLicense: MIT\nBuildArch: noarch\n\n"
        f"%description\n{name}, built by the RPM source test.\n\n"
        f"%install\nmkdir -p %{{buildroot}}/usr/share/{name}\ncp {top}/data %{{buildroot}}/usr/share/{name}/data\n\n"
        f"%files\n/usr/share/{name}/data\n"
    )
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "--define", "_build_id_links none", "-bb", str(spec)],
                   check=True, capture_output=True)  # fmt: skip
    (built,) = (top / "RPMS" / "noarch").glob("*.rpm")
    return built


@dataclass
class RpmRepo:
    root: Path  # what the server serves: <root>/repodata/repomd.xml, <root>/Packages/*.rpm
    signer: Repo  # the gpg of source_repo's throwaway key

    @property
    def key(self) -> Path:
        return self.signer.key

    @property
    def repomd(self) -> Path:
        return self.root / "repodata" / "repomd.xml"

    def publish(self, rpms: list[Path], *, update: bool = False, compress: str | None = None) -> None:
        """Copy the rpms into Packages/, run createrepo_c (``--update``: keep what is there and add),
        then sign repomd.xml (repomd.xml.asc)."""
        pool = self.root / "Packages"
        if not update:
            shutil.rmtree(pool, ignore_errors=True)
        pool.mkdir(parents=True, exist_ok=True)
        for rpm in rpms:
            shutil.copy(rpm, pool / rpm.name)
        argv = ["createrepo_c", "--quiet", *(["--update"] if update else []), str(self.root)]
        if compress:
            argv[1:1] = ["--general-compress-type", compress]  # primary.xml too
        subprocess.run(argv, check=True, capture_output=True)
        self.sign()

    def sign(self) -> None:
        asc = self.repomd.with_name("repomd.xml.asc")
        asc.unlink(missing_ok=True)
        self.signer.gpg("--armor", "--detach-sign", "-o", str(asc), str(self.repomd))

    def primary(self) -> Path:
        (found,) = (self.root / "repodata").glob("*-primary.xml*")
        return found


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("rpms")
    return {
        "hello": build_rpm(work, "hello", "1.0", "1", b"hello\n"),
        "tool": build_rpm(work, "tool", "2.1", "3", b"tool\n", epoch=2),
        "hello-1.1": build_rpm(work, "hello", "1.1", "1", b"hello again\n"),
    }


@pytest.fixture
def rpm_repo(tmp_path: Path, keys: tuple[Path, Path], rpms: dict[str, Path]) -> RpmRepo:
    repo = RpmRepo(tmp_path / "rpmrepo", Repo(tmp_path / "rpmrepo", *keys))
    repo.publish([rpms["hello"], rpms["tool"]])
    return repo


@pytest.fixture
def rpm_web(rpm_repo: RpmRepo) -> Iterator[Served]:
    yield from _web(rpm_repo.signer, None)  # the Debian tests' server, serving the RPM repository's root


def config(url: str, key: Path | None, **kw: object) -> SourceConfig:
    return SourceConfig(name="rpmtest", kind="rpm", url=url, key_file=key, connect_timeout=5, read_timeout=5,
                        **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_signed_rpm_repository_syncs_with_evr_into_the_store_by_hash(
    sync: SourceSync, rpm_repo: RpmRepo, rpm_web: Served, rpms: dict[str, Path]
) -> None:
    cfg = config(rpm_web.url, rpm_repo.key)
    first = sync.run(cfg, None, fetch_packages=True)
    assert first.release is None and not first.failures
    assert [(e.package, e.version, e.architecture) for e in first.index.entries] == [
        ("hello", "1.0-1", "noarch"),
        ("tool", "2:2.1-3", "noarch"),  # rpm's EVR, the epoch shown as rpm shows it
    ]
    assert [e.package for e in first.changes.added] == ["hello", "tool"]
    assert {"/repodata/repomd.xml", "/repodata/repomd.xml.asc", "/" + str(rpm_repo.primary().relative_to(
        rpm_repo.root))} <= set(rpm_web.requests)  # fmt: skip
    for entry, rpm in zip(first.index.entries, (rpms["hello"], rpms["tool"]), strict=True):
        assert entry.sha256 == sha256(rpm) and entry.size == rpm.stat().st_size
        assert entry.filename == f"Packages/{rpm.name}"
        stored = sync.store.path_of(entry.sha256)
        assert stored == sync.store.root / "sha256" / entry.sha256[:2] / entry.sha256
        assert stored.read_bytes() == rpm.read_bytes()
    assert [e.package for e in first.downloaded] == ["hello", "tool"]
    assert not list(sync.store.root.rglob("*.part"))

    rpm_web.requests.clear()
    second = sync.run(cfg, first.index, fetch_packages=True)
    assert second.changes.empty and second.downloaded == ()
    assert not [p for p in rpm_web.requests if p.startswith("/Packages/")]

    rpm_repo.publish([rpms["hello-1.1"]], update=True)  # a new version added, createrepo_c --update
    third = sync.run(cfg, second.index, fetch_packages=True)
    assert [(e.package, e.version) for e in third.changes.added] == [("hello", "1.1-1")]
    assert [e.package for e in third.index.entries] == ["hello", "hello", "tool"]  # 1.0 still listed
    assert [e.version for e in third.downloaded] == ["1.1-1"]
    assert sync.store.path_of(sha256(rpms["hello-1.1"])).read_bytes() == rpms["hello-1.1"].read_bytes()


# zstd too in createrepo_c >= 1.0; bookworm's 0.17 is built without it (the unit tests decode real .zst)
@pytest.mark.parametrize(("compress", "suffix"), [("xz", ".xz"), ("bz2", ".bz2")])
def test_primary_metadata_compressed_otherwise(
    sync: SourceSync, rpm_repo: RpmRepo, rpm_web: Served, rpms: dict[str, Path], compress: str, suffix: str
) -> None:
    rpm_repo.publish([rpms["hello"], rpms["tool"]], compress=compress)
    assert rpm_repo.primary().name.endswith("primary.xml" + suffix)
    result = sync.run(config(rpm_web.url, rpm_repo.key), None)
    assert [e.version for e in result.index.entries] == ["1.0-1", "2:2.1-3"]


def test_each_failure_has_its_code(sync: SourceSync, rpm_repo: RpmRepo, rpm_web: Served) -> None:
    cfg = config(rpm_web.url, rpm_repo.key)
    primary = rpm_repo.primary()
    good = primary.read_bytes()
    primary.write_bytes(good[:-8] + b"corrupt!")  # same size, other bytes: not what repomd.xml lists
    assert code_of(sync, cfg) == E.SOURCE_RPM_METADATA_MISMATCH.code
    primary.write_bytes(good + b"more")
    assert code_of(sync, cfg) == E.SOURCE_RPM_METADATA_MISMATCH.code  # longer than listed: never read past it
    primary.write_bytes(good)
    assert sync.run(cfg, None).index.entries  # and good again

    assert code_of(sync, config(rpm_web.url + "/nothing", None)) == E.SOURCE_HTTP_CLIENT_ERROR.code  # 404 repomd
    rpm_web.status["/repodata/repomd.xml"] = 503
    assert code_of(sync, cfg) == E.SOURCE_HTTP_SERVER_ERROR.code
    del rpm_web.status["/repodata/repomd.xml"]

    rpm_repo.repomd.write_text(rpm_repo.repomd.read_text().replace("<revision>", "<revision>9"))  # after signing
    assert code_of(sync, cfg) == E.SOURCE_SIGNATURE_BAD.code
    assert sync.run(config(rpm_web.url, None), None).index.entries  # unsigned sources do not check
    rpm_repo.sign()
    rpm_repo.repomd.with_name("repomd.xml.asc").unlink()
    assert code_of(sync, cfg) == E.SOURCE_SIGNATURE_MISSING.code

    rpm_repo.repomd.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "a">]><repomd/>')
    assert code_of(sync, config(rpm_web.url, None)) == E.SOURCE_RPM_METADATA_INVALID.code
    rpm_repo.repomd.write_text('<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision></repomd>')
    assert code_of(sync, config(rpm_web.url, None)) == E.SOURCE_RPM_PRIMARY_MISSING.code


def test_the_architecture_filter_keeps_noarch(sync: SourceSync, rpm_repo: RpmRepo, rpm_web: Served) -> None:
    assert len(sync.run(config(rpm_web.url, None, architectures=("x86_64",)), None).index.entries) == 2
    with pytest.raises(DpmError) as err:
        config(rpm_web.url, None, suite="stable")
    assert err.value.code == E.SOURCE_SETTING_INVALID.code  # an rpm source has no suite


async def test_an_rpm_source_through_the_api_becomes_rpm_packages(
    api_service, database, nats_server, auth, tmp_path, rpm_repo: RpmRepo, rpm_web: Served, rpms, capsys, monkeypatch
) -> None:
    from dpm_cli import sources as cli

    clock, root = Clock(), tmp_path / "packages"
    async with running(api_service(), headers=auth) as api, running(updater(database, nats_server, root, clock)):
        body = {"name": "rpm1", "kind": "rpm", "url": rpm_web.url, "key": rpm_repo.key.read_text(),
                "include": ["hello", "tool"], "interval_minutes": 60}  # fmt: skip
        r = await api.http.post("/sources", json=body)
        assert r.status_code == 201, r.text
        shown = r.json()
        assert (shown["kind"], shown["suite"], shown["components"], shown["architectures"]) == ("rpm", None, [], [])
        found = await eventually(lambda: packages(api), until=lambda p: {"rpm1-hello", "rpm1-tool"} <= p.keys(),
                                 what="the synced rpm packages")  # fmt: skip
        tool = found["rpm1-tool"]["package"]
        assert (tool["type"], tool["system_package"], tool["system_version"]) == ("rpm", "tool", "2:2.1-3")
        assert tool["architectures"] == []  # noarch
        assert found["rpm1-tool"]["content"]["sha256"] == sha256(rpms["tool"])
        assert (root / "sha256" / sha256(rpms["tool"])[:2] / sha256(rpms["tool"])).read_bytes() == (
            rpms["tool"].read_bytes()
        )
        first = await last_sync(api, "rpm1")
        assert first["ok"] and first["counts"]["listed"] == 2  # (offered: 0 if the timer's sync came second)

        rpm_repo.publish([rpms["hello-1.1"]], update=True)
        assert (await api.http.post("/sources/rpm1/sync")).status_code == 202
        found = await eventually(lambda: packages(api), until=lambda p: p["rpm1-hello"]["package"]["revision"] == 2,
                                 what="hello 1.1-1")  # fmt: skip
        assert found["rpm1-hello"]["package"]["system_version"] == "1.1-1"

        for bad, field in (({"kind": "apk"}, "kind"), ({"suite": "stable"}, "suite")):
            refused = await api.http.post("/sources", json={**body, "name": "rpm2", **bad})
            assert refused.json()["error"]["code"] == E.SOURCE_FIELD_INVALID.code, refused.text
            assert field in refused.json()["error"]["message"]

        monkeypatch.setenv("DPM_API_URL", api.url)
        monkeypatch.setenv("DPM_API_TOKEN", auth["Authorization"].split()[1])
        capsys.readouterr()
        await asyncio.to_thread(cli.sources_add, "rpm3", rpm_web.url, ["hello"], None, None, None, None, "normal",
                                60, None, False, False, "rpm")  # fmt: skip
        assert "saved source rpm3 (unsigned); rpm" in capsys.readouterr().out
        await asyncio.to_thread(cli.sources_ls, False)
        listed = capsys.readouterr().out
        assert any("rpm3" in line and " rpm " in line for line in listed.splitlines()), listed


async def test_the_agent_installs_a_synced_rpm_into_its_own_rpm_database(tmp_path: Path) -> None:
    """What a source offers, the agent installs: ``rpm -i --root`` into a scratch tree with its own
    package database (nothing touches the host's), the install judged by rpm's exit code."""
    built = build_rpm(tmp_path, "hello", "1.0", "1", b"hi\n")
    root = tmp_path / "machine"
    root.mkdir()
    package = Package(id="el-hello", type=PackageType.RPM, system_package="hello", system_version="1.0-1",
                      execution=Execution(files=(built.name,)))  # fmt: skip
    done = await install(package, {built.name: built}, InstallOptions(root=root, timeout=120))
    assert done.ok and done.exit_code == 0, done
    assert (root / "usr/share/hello/data").read_bytes() == b"hi\n"
    query = subprocess.run(["rpm", "-q", "--root", str(root), "hello"], capture_output=True, text=True, check=True)
    assert query.stdout.strip() == "hello-1.0-1.noarch"
    again = await install(package, {built.name: built}, InstallOptions(root=root, timeout=120))
    assert not again.ok and again.code == "DPM-E234" and "already installed" in again.output_tail, again
