"""The pure parts of package delivery: when scheduled installs are due, the queue file, the retry
bound of a download (fake clock, httpx MockTransport), and how an installer's end is judged."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import stat
from pathlib import Path

import httpx
import pytest

from dpm_agent.packages import pending
from dpm_agent.packages.download import RetryPolicy, check_ref, download
from dpm_agent.packages.install import InstallOptions, judge, plan_install
from dpm_agent.packages.pending import Pending, When, due
from dpm_agent.packages.process import Ran
from dpm_schemas import DpmError, E
from dpm_schemas.packages import Execution, Package, PackageType

NOW = dt.datetime(2026, 12, 3, 1, 0, tzinfo=dt.UTC)
PKG = Package(id="p", type=PackageType.SCRIPT, execution=Execution(command="x"))


def entry(key: str, when: When, at: dt.datetime | None = None, boot_id: str = "") -> Pending:
    return Pending(key=key, package=PKG, files={"x": "0" * 64}, when=when, at=at, boot_id=boot_id, scheduled_at=NOW)


def test_due_at_time_and_at_next_boot() -> None:
    early = entry("a", When.AT_TIME, at=NOW - dt.timedelta(minutes=1))
    later = entry("b", When.AT_TIME, at=NOW + dt.timedelta(minutes=1))
    boot = entry("c", When.NEXT_BOOT, boot_id="boot-1")
    assert due([early, later, boot], NOW, "boot-1") == (early,)  # same boot: an agent restart, not a reboot
    assert due([early, later, boot], NOW + dt.timedelta(hours=1), "boot-2") == (early, later, boot)


def test_entries_must_say_when() -> None:
    with pytest.raises(ValueError, match="needs `at`"):
        entry("a", When.AT_TIME)
    with pytest.raises(ValueError, match="boot_id"):
        entry("a", When.NEXT_BOOT)


def test_queue_file_round_trip_private_and_replacing_by_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pending.json"
    assert pending.load(path) == ()
    first = entry("k", When.NEXT_BOOT, boot_id="b1")
    pending.add(path, first)
    again = entry("k", When.AT_TIME, at=NOW)
    assert pending.add(path, again) == (again,)
    assert pending.load(path) == (again,)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pending.remove(path, ["k"]) == () and pending.load(path) == ()
    assert [p.name for p in path.parent.iterdir()] == ["pending.json"]  # no temp files left


def test_unreadable_queue_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    path.write_text("{not json")
    with pytest.raises(DpmError) as err:
        pending.load(path)
    assert err.value.code == E.PACKAGE_PENDING_UNREADABLE.code
    assert not path.exists() and (tmp_path / "pending.json.unreadable").exists()
    assert pending.load(path) == ()  # the next start-up goes on


def test_content_reference_must_be_a_sha256() -> None:
    assert check_ref("AB" * 32, 1) == "ab" * 32
    for bad in ("../../etc/passwd", "ab" * 31, "zz" * 32):
        with pytest.raises(DpmError) as err:
            check_ref(bad, 1)
        assert err.value.code == E.PACKAGE_CONTENT_REF_INVALID.code


async def test_download_gives_up_after_retry_for_without_progress(tmp_path: Path) -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    policy = RetryPolicy(retry_for=60.0, first_delay=1.0, max_delay=10.0)
    sha = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(DpmError) as err:
        await download(
            "http://server/c", token="t", sha256=sha, size=1, cache_dir=tmp_path, policy=policy,
            transport=transport, sleep=sleep, clock=lambda: now[0],
        )  # fmt: skip
    assert err.value.code == E.PACKAGE_DOWNLOAD_FAILED.code and "HTTP 503" in err.value.message
    assert now[0] <= 60.0 and max(slept) <= 10.0 and len(slept) >= 6  # backed off, bounded, then stopped
    assert slept[:3] == sorted(slept[:3])


def test_judging_an_installer_end() -> None:
    opts = InstallOptions(timeout=5)
    ok = judge(PKG, Ran(0, "fine\n", False), opts, 1.5)
    assert (ok.ok, ok.code, ok.exit_code, ok.output_tail, ok.seconds) == (True, None, 0, "fine\n", 1.5)
    failed = judge(PKG, Ran(2, "x" * 10_000 + "the reason", False), opts, 1.0)
    assert (failed.ok, failed.code, failed.exit_code) == (False, E.PACKAGE_INSTALL_FAILED.code, 2)
    assert failed.message.endswith("the reason") and len(failed.message) < 2200 and len(failed.output_tail) > 10_000
    late = judge(PKG, Ran(None, "", True), opts, 5.0)
    assert (late.code, late.exit_code, late.reboot_required) == (E.PACKAGE_INSTALL_TIMEOUT.code, None, False)


@pytest.mark.parametrize(
    ("package", "reason"),
    [
        (Package(id="w", type=PackageType.HOTFIX, execution=Execution(files=("a",))), "for Windows"),
        (Package(id="s", type=PackageType.SCRIPT, execution=Execution(files=("a",))), "needs a command"),
        (Package(id="s", type=PackageType.SCRIPT, execution=Execution(files=("b",), command="b")), "not delivered"),
        (Package(id="s", type=PackageType.SCRIPT, execution=Execution(files=("../a",), command="a")), "plain file"),
        (Package(id="s", type=PackageType.SCRIPT, execution=Execution(files=("a",), command="'a")), "cannot be split"),
    ],
)
def test_packages_that_cannot_be_installed(tmp_path: Path, package: Package, reason: str) -> None:
    (tmp_path / "a").write_text("#!/bin/sh\n")
    with pytest.raises(DpmError) as err:
        plan_install(package, {"a": tmp_path / "a"}, Path("/"), tmp_path)
    assert err.value.code == E.PACKAGE_INSTALL_INVALID.code and reason in err.value.message


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg on PATH")
def test_deb_command_line_for_a_scratch_root_and_for_production(tmp_path: Path) -> None:
    deb = tmp_path / "p.deb"
    deb.write_bytes(b"!<arch>\ndebian-binary   ")
    package = Package(id="p", type=PackageType.DEB)
    scratch = plan_install(package, {"p.deb": deb}, tmp_path / "root", tmp_path)
    assert f"--root={tmp_path / 'root'}" in scratch.argv and "--force-script-chrootless" in scratch.argv
    assert scratch.env["DEBIAN_FRONTEND"] == "noninteractive"
    production = plan_install(package, {"p.deb": deb}, Path("/"), tmp_path)
    assert production.argv == ("dpkg", "--force-confdef", "--force-confold", "-i", str(deb))
