"""What the agent does when told: file distribution (put, delete, list) inside the configured
directories only, and shutdown/reboot through a power driver. Every refusal names its reason. A
put_file too large for a frame is fetched first (``fetch.py``), then placed the same way."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from dpm_schemas import E
from dpm_schemas.agent_protocol import MAX_FILE, Action, Command, CommandResult, Entry


class CommandRefused(Exception):
    """The command breaks a rule (path outside the allowed directories, too big, not found ...)."""


def inside(path: str | None, roots: Sequence[Path], *, allow_root: bool = False) -> Path:
    """The real path of ``path`` (``..`` and symlinks resolved) if it lies inside one of ``roots``."""
    if not path or "\x00" in path:
        raise CommandRefused("a path is required")
    if not os.path.isabs(path):
        raise CommandRefused("the path must be absolute")
    real = Path(os.path.realpath(path))
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base and allow_root:
            return real
        if real != base and real.is_relative_to(base):
            return real
    raise CommandRefused(f"outside the allowed directories ({', '.join(str(r) for r in roots)})")


def put_file(target: Path, content: bytes, mode: int, roots: Sequence[Path]) -> None:
    if len(content) > MAX_FILE:
        raise CommandRefused(f"{len(content)} bytes exceed the {MAX_FILE}-byte limit")
    _place(target, mode, roots, lambda f: f.write(content))


def put_from(target: Path, source: Path, mode: int, roots: Sequence[Path]) -> None:
    """put_file of a file fetched beside (any size): copied in, as atomically as a small one."""
    with source.open("rb") as src:
        _place(target, mode, roots, lambda f: shutil.copyfileobj(src, f, 1 << 20))


def check_target(target: Path) -> None:
    if target.is_dir():
        raise CommandRefused("a directory of that name exists")


def _place(target: Path, mode: int, roots: Sequence[Path], write: Callable[[BinaryIO], object]) -> None:
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    inside(str(target.parent), roots, allow_root=True)  # the created parents must not have escaped either
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".dpm-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, mode & 0o777)  # never setuid/setgid/sticky from the server
        os.replace(tmp, target)  # atomic: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def delete_file(target: Path) -> None:
    if not target.exists():
        raise CommandRefused("no such file")
    if target.is_dir():
        raise CommandRefused("is a directory; only files are deleted")
    target.unlink()


def list_dir(target: Path) -> tuple[Entry, ...]:
    if not target.is_dir():
        raise CommandRefused("not a directory")
    entries = []
    with os.scandir(target) as it:
        for e in sorted(it, key=lambda e: e.name):
            st = e.stat(follow_symlinks=False)
            kind = (
                "link"
                if stat.S_ISLNK(st.st_mode)
                else "dir"
                if stat.S_ISDIR(st.st_mode)
                else "file"
                if stat.S_ISREG(st.st_mode)
                else "other"
            )
            entries.append(Entry(name=e.name, type=kind, size=st.st_size, mtime=st.st_mtime))
    return tuple(entries)


def run_file_command(cmd: Command, roots: Sequence[Path]) -> CommandResult:
    """Carry out a file command; refusals and OS errors become a result with DPM-E122."""
    try:
        if cmd.action is Action.PUT_FILE:
            put_file(inside(cmd.path, roots), cmd.content or b"", cmd.mode, roots)
            return CommandResult(id=cmd.id, ok=True)
        if cmd.action is Action.DELETE_FILE:
            delete_file(inside(cmd.path, roots))
            return CommandResult(id=cmd.id, ok=True)
        if cmd.action is Action.LIST_DIR:
            return CommandResult(id=cmd.id, ok=True, entries=list_dir(inside(cmd.path, roots, allow_root=True)))
        raise CommandRefused(f"{cmd.action} is not a file command")
    except (CommandRefused, OSError) as exc:
        return CommandResult(id=cmd.id, ok=False, code=E.AGENT_REFUSED.code, message=str(exc))
