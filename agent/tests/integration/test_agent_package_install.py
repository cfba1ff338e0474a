"""Real installs: .deb packages built here with dpkg-deb and installed by dpkg into a per-test root
(its own package database, so the host's packages are never touched), and script packages."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dpm_agent.packages.install import InstallOptions, install
from dpm_schemas import E
from dpm_schemas.packages import Execution, Package, PackageType

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg and dpkg-deb"),
]


def dpkg_root(tmp_path: Path) -> Path:
    """An empty tree dpkg accepts as --root: status/available files, info/ and updates/ dirs."""
    root = tmp_path / "root"
    admin = root / "var/lib/dpkg"
    for d in ("info", "updates"):
        (admin / d).mkdir(parents=True)
    for f in ("status", "available"):
        (admin / f).touch()
    return root


def build_deb(tmp_path: Path, name: str, postinst: str | None = None, files: dict[str, str] | None = None) -> Path:
    tree = tmp_path / f"build-{name}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: 1.2-3\nArchitecture: all\nMaintainer: dpm <t@example>\nDescription: t\n"
    (tree / "DEBIAN/control").write_text(control)
    if postinst is not None:
        (tree / "DEBIAN/postinst").write_text(f"#!/bin/sh\n{postinst}\n")
        (tree / "DEBIAN/postinst").chmod(0o755)
    for rel, text in (files or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    out = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(out)], check=True, capture_output=True)
    return out


def deb_package(name: str) -> Package:
    return Package(id=name, type=PackageType.DEB, system_package=name, execution=Execution(files=(f"{name}.deb",)))


def dpkg_status(root: Path, name: str) -> str:
    argv = ["dpkg", f"--root={root}", f"--admindir={root / 'var/lib/dpkg'}", "-s", name]
    return subprocess.run(argv, capture_output=True, text=True).stdout


async def test_deb_installs_into_its_root(tmp_path: Path) -> None:
    root = dpkg_root(tmp_path)
    deb = build_deb(
        tmp_path, "dpm-hello", postinst='echo "configured in $DPKG_ROOT"', files={"opt/dpm-hello/a": "hi\n"}
    )
    result = await install(deb_package("dpm-hello"), {"dpm-hello.deb": deb}, InstallOptions(root=root, timeout=60))
    assert result.ok, result.message
    assert (result.code, result.exit_code, result.reboot_required) == (None, 0, False)
    assert (root / "opt/dpm-hello/a").read_text() == "hi\n"
    status = dpkg_status(root, "dpm-hello")
    assert "Status: install ok installed" in status and "Version: 1.2-3" in status
    assert f"configured in {root}" in result.output_tail
    assert (root / "var/log/dpkg.log").exists()  # dpkg's log stays in the root too


async def test_failing_postinst_is_reported_with_exit_code_and_output(tmp_path: Path) -> None:
    root = dpkg_root(tmp_path)
    deb = build_deb(tmp_path, "dpm-broken", postinst='echo "cannot configure: disk on fire" >&2; exit 3')
    result = await install(deb_package("dpm-broken"), {"dpm-broken.deb": deb}, InstallOptions(root=root, timeout=60))
    assert not result.ok
    assert result.code == E.PACKAGE_INSTALL_FAILED.code
    assert result.exit_code not in (0, None)  # dpkg's own exit code; the script's 3 is in the output
    assert "disk on fire" in result.output_tail and "exit status 3" in result.output_tail
    assert "disk on fire" in result.message


async def test_hanging_installer_is_killed_at_the_timeout(tmp_path: Path) -> None:
    root = dpkg_root(tmp_path)
    deb = build_deb(tmp_path, "dpm-slow", postinst="echo starting; sleep 30")
    started = time.monotonic()
    result = await install(deb_package("dpm-slow"), {"dpm-slow.deb": deb}, InstallOptions(root=root, timeout=2))
    assert time.monotonic() - started < 15  # the sleep (a grandchild) was killed with its group
    assert not result.ok
    assert (result.code, result.exit_code) == (E.PACKAGE_INSTALL_TIMEOUT.code, None)
    assert "starting" in result.output_tail
    assert not _running("sleep 30")


def _running(cmdline: str) -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any(line.strip() == cmdline for line in out.splitlines())


async def test_deb_package_whose_file_is_not_a_deb(tmp_path: Path) -> None:
    root = dpkg_root(tmp_path)
    fake = tmp_path / "dpm-fake.deb"
    fake.write_text("#!/bin/sh\necho not a package\n")
    result = await install(deb_package("dpm-fake"), {"dpm-fake.deb": fake}, InstallOptions(root=root))
    assert (result.ok, result.code, result.exit_code) == (False, E.PACKAGE_INSTALL_INVALID.code, None)
    assert "not a .deb package" in result.message


async def test_rpm_package_needs_rpm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("rpm"):
        pytest.skip("rpm is installed here; only its absence is tested")
    pkg = tmp_path / "x.rpm"
    pkg.write_bytes(b"\xed\xab\xee\xdb" + b"\0" * 92)
    package = Package(id="x", type=PackageType.RPM, execution=Execution(files=("x.rpm",)))
    result = await install(package, {"x.rpm": pkg}, InstallOptions(root=tmp_path / "root"))
    assert (result.ok, result.code) == (False, E.PACKAGE_INSTALL_INVALID.code)
    assert "rpm is not installed on this machine" in result.message


def script_package(command: str, parameters: str = "", reboot: bool = False) -> Package:
    execution = Execution(files=("setup.sh",), command=command, parameters=parameters, reboot_after_install=reboot)
    return Package(id="dpm-script", type=PackageType.SCRIPT, execution=execution)


async def test_script_package_runs_its_command_with_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPM_SECRET_OF_THE_AGENT", "must-not-leak")
    script = tmp_path / "downloaded"
    script.write_text('#!/bin/sh\necho "$2 from $(pwd)" > "$1"\nenv > "$1.env"\necho done\n')
    target = tmp_path / "out" / "marker"
    target.parent.mkdir()
    package = script_package("setup.sh", f"'{target}' 'hello world'", reboot=True)
    result = await install(package, {"setup.sh": script}, InstallOptions(root=tmp_path, work_parent=tmp_path))
    assert result.ok, result.message
    assert result.reboot_required and result.output_tail == "done\n"
    text = target.read_text()
    assert text.startswith("hello world from ") and str(tmp_path / "dpm-install-") in text
    env = target.with_suffix(".env").read_text()
    assert "DPM_SECRET_OF_THE_AGENT" not in env and "DPM_PACKAGE=dpm-script" in env
    assert not list(tmp_path.glob("dpm-install-*"))  # the working directory is gone


async def test_script_package_that_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "downloaded"
    script.write_text("#!/bin/sh\necho 'missing dependency libfoo'\nexit 1\n")
    result = await install(script_package("sh setup.sh"), {"setup.sh": script}, InstallOptions(timeout=30))
    assert (result.ok, result.code, result.exit_code) == (False, E.PACKAGE_INSTALL_FAILED.code, 1)
    assert "missing dependency libfoo" in result.output_tail and "exited with 1" in result.message


async def test_script_command_that_is_nowhere(tmp_path: Path) -> None:
    script = tmp_path / "downloaded"
    script.write_text("#!/bin/sh\n")
    result = await install(script_package("no-such-installer-xyz"), {"setup.sh": script})
    assert (result.ok, result.code) == (False, E.PACKAGE_INSTALL_INVALID.code)
