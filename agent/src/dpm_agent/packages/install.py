"""Install one downloaded package and say how it went: a frozen ``InstallResult`` the agent reports.

deb goes through ``dpkg -i`` and rpm through ``rpm -i``; with a ``root`` other than ``/`` both
install into that tree and its own package database (dpkg's maintainer scripts then run without a
chroot, with ``DPKG_ROOT`` set), which is how the tests install real packages without touching the
host's. script (and linux-patch) packages run their configured command -- shlex-split, never a shell
-- in a fresh working directory holding the package's files, with a minimal environment: nothing of
the agent's own environment (its token, proxies, paths) reaches an installer.

Failures are results, not exceptions: DPM-E234 (non-zero exit), E235 (timeout; the process group
was killed), E236 (a package this machine cannot install).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dpm_agent import __version__
from dpm_agent.packages.process import Ran, run_bounded
from dpm_schemas import DpmError, E
from dpm_schemas.packages import Package, PackageType

DEFAULT_TIMEOUT = 1800.0
MESSAGE_TAIL = 2000  # characters of output quoted in the error message (the result keeps 64 KiB)
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEB_MAGIC = b"!<arch>\ndebian-binary"
RPM_MAGIC = b"\xed\xab\xee\xdb"
SCRIPT_TYPES = frozenset({PackageType.SCRIPT, PackageType.LINUX_PATCH})


@dataclass(frozen=True, slots=True)
class InstallResult:
    ok: bool
    code: str | None  # the DPM code of a failure
    exit_code: int | None  # None: never started, or killed at the timeout
    output_tail: str  # the installer's last 64 KiB of stdout+stderr
    reboot_required: bool
    seconds: float
    message: str = ""  # the failure's catalogued message


@dataclass(frozen=True, slots=True)
class InstallOptions:
    root: Path = Path("/")  # "/" in production; a scratch tree in tests
    timeout: float = DEFAULT_TIMEOUT
    work_parent: Path | None = None  # where script packages get their working directory (default: TMPDIR)


@dataclass(frozen=True, slots=True)
class Plan:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path


async def install(
    package: Package,
    files: Mapping[str, Path],
    options: InstallOptions = InstallOptions(),
    clock: Callable[[], float] = time.monotonic,
) -> InstallResult:
    """Install ``package`` from ``files`` (the names of ``package.execution.files`` -- or any names,
    when it lists none -- to the downloaded files)."""
    start = clock()
    try:
        with tempfile.TemporaryDirectory(prefix="dpm-install-", dir=options.work_parent) as work:
            plan = plan_install(package, files, options.root, Path(work))
            ran = await run_bounded(plan.argv, env=plan.env, cwd=plan.cwd, timeout=options.timeout)
    except DpmError as exc:
        return InstallResult(False, exc.code, None, "", False, clock() - start, exc.message)
    except OSError as exc:  # the installer could not start (noexec, no interpreter, EACCES, disk full)
        err = _invalid(package, f"the installer could not be started: {exc}")
        return InstallResult(False, err.code, None, "", False, clock() - start, err.message)
    return judge(package, ran, options, clock() - start)


def judge(package: Package, ran: Ran, options: InstallOptions, seconds: float) -> InstallResult:
    """Success or E234/E235 from how the installer ended."""
    quoted = ran.output[-MESSAGE_TAIL:].strip() or "(no output)"
    if ran.timed_out:
        err = E.PACKAGE_INSTALL_TIMEOUT(package=package.id, timeout=options.timeout, output=quoted)
    elif ran.exit_code != 0:
        err = E.PACKAGE_INSTALL_FAILED(package=package.id, exit_code=ran.exit_code, output=quoted)
    else:
        return InstallResult(True, None, 0, ran.output, reboot_required(package, options.root), seconds)
    return InstallResult(False, err.code, ran.exit_code, ran.output, False, seconds, err.message)


def reboot_required(package: Package, root: Path) -> bool:
    """The package says so, or the system does (Debian's ``/run/reboot-required`` flag)."""
    flags = (root / "run/reboot-required", root / "var/run/reboot-required")
    return package.execution.reboot_after_install or any(f.exists() for f in flags)


def plan_install(package: Package, files: Mapping[str, Path], root: Path, work: Path) -> Plan:
    """The command to run, or DPM-E236 when this machine cannot install the package."""
    paths = _delivered(package, files)
    if package.type is PackageType.DEB:
        return Plan(_deb_argv(_checked(package, paths, DEB_MAGIC, "dpkg"), root), _env(deb=True), work)
    if package.type is PackageType.RPM:
        return Plan(_rpm_argv(_checked(package, paths, RPM_MAGIC, "rpm"), root), _env(), work)
    if package.type in SCRIPT_TYPES:
        return _script_plan(package, paths, root, work)
    raise _invalid(package, f"{package.type.value} packages are for Windows; this agent runs on Linux")


def _delivered(package: Package, files: Mapping[str, Path]) -> dict[str, Path]:
    names = package.execution.files or tuple(files)
    if not names and package.type in SCRIPT_TYPES:
        return {}  # a command-only script package: its command is on the machine already
    if not names:
        raise _invalid(package, "it has no files")
    out = {}
    for name in names:
        if not name or "/" in name or name in (".", ".."):
            raise _invalid(package, f"file name {name!r} is not a plain file name")
        if name not in files or not files[name].is_file():
            raise _invalid(package, f"its file {name!r} was not delivered")
        out[name] = files[name]
    return out


def _checked(package: Package, paths: Mapping[str, Path], magic: bytes, tool: str) -> list[Path]:
    if shutil.which(tool, path=SAFE_PATH) is None:
        raise _invalid(package, f"{tool} is not installed on this machine; a {package.type.value} package needs it")
    for name, path in paths.items():
        with path.open("rb") as f:
            if f.read(len(magic)) != magic:
                raise _invalid(package, f"file {name!r} is not a .{package.type.value} package")
    return list(paths.values())


def _deb_argv(paths: Sequence[Path], root: Path) -> tuple[str, ...]:
    argv = ["dpkg"]
    if root != Path("/"):
        (root / "var/log").mkdir(parents=True, exist_ok=True)
        argv += [
            f"--root={root}",
            f"--admindir={root / 'var/lib/dpkg'}",
            f"--instdir={root}",
            f"--log={root / 'var/log/dpkg.log'}",
            "--force-script-chrootless",  # the tree has no /bin/sh to chroot into
        ]
    # keep changed configuration files without asking: nobody is there to answer
    return (*argv, "--force-confdef", "--force-confold", "-i", *map(str, paths))


def _rpm_argv(paths: Sequence[Path], root: Path) -> tuple[str, ...]:
    argv = ["rpm", "-i"] + (["--root", str(root)] if root != Path("/") else [])
    return (*argv, *map(str, paths))


def _script_plan(package: Package, paths: Mapping[str, Path], root: Path, work: Path) -> Plan:
    """The command with its parameters, run in ``work`` where the package's files were copied."""
    try:
        argv = shlex.split(package.execution.command) + shlex.split(package.execution.parameters)
    except ValueError as exc:
        raise _invalid(package, f"its command line cannot be split: {exc}") from exc
    if not argv:
        raise _invalid(package, "a script package needs a command")
    for name, path in paths.items():
        shutil.copyfile(path, work / name)
        os.chmod(work / name, 0o600)
    own = work / argv[0]
    if ("/" not in argv[0] and argv[0] in paths) or (argv[0].startswith("./") and own.resolve().parent == work):
        os.chmod(own, 0o700)
        argv[0] = str(own)
    elif shutil.which(argv[0], path=SAFE_PATH) is None:
        raise _invalid(package, f"command {argv[0]!r} is neither one of its files nor on {SAFE_PATH}")
    env = _env() | {"HOME": str(work), "TMPDIR": str(work), "DPM_PACKAGE": package.id, "DPM_ROOT": str(root)}
    return Plan(tuple(argv), env, work)


def _env(deb: bool = False) -> dict[str, str]:
    """Nothing of the agent's own environment; the version of the agent running the install, which
    the agent's own package (and a package that needs a given agent) may read."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "DPM_AGENT_VERSION": __version__}
    if deb:
        env |= {"DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true"}
    return env


def _invalid(package: Package, reason: str) -> DpmError:
    return E.PACKAGE_INSTALL_INVALID(package=package.id, reason=reason)
