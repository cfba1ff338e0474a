"""Installs scheduled for later -- "at next boot" or "at a set time" -- kept in a small JSON file in
the agent's state directory, so they survive the reboot they wait for and an agent restart.

The file is rewritten whole and atomically (temp file, fsync, rename; 0600): a crash leaves the old
queue or the new one, never half of each. ``due`` is pure; the agent's start-up (and its timer)
ask it what to run now. "Next boot" is judged by the kernel's boot id, not by "the agent just
started": an agent restarted without a reboot must not run an install that waits for one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, model_validator

from dpm_schemas import E
from dpm_schemas.agent_protocol import InstallOrder
from dpm_schemas.packages import Package

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class When(StrEnum):
    NEXT_BOOT = "next-boot"
    AT_TIME = "at-time"


class Pending(BaseModel):
    """One scheduled install: a single ``package`` with its ``files`` (file name -> SHA-256 of the
    downloaded file in the cache), or a whole remote-update ``order`` (its items name their content;
    the agent downloaded it when it scheduled the order). ``key``: the caller's (an order's execution
    id), reported back with the result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    package: Package | None = None
    files: dict[str, str] = {}
    order: InstallOrder | None = None
    when: When
    at: AwareDatetime | None = None  # AT_TIME: not before this instant
    boot_id: str = ""  # NEXT_BOOT: the boot it was scheduled in; due in any other
    scheduled_at: AwareDatetime

    @model_validator(mode="after")
    def _complete(self) -> Pending:
        if (self.package is None) == (self.order is None):
            raise ValueError("an entry holds either a package or an order")
        if self.when is When.AT_TIME and self.at is None:
            raise ValueError("an install at a set time needs `at`")
        if self.when is When.NEXT_BOOT and not self.boot_id:
            raise ValueError("an install at next boot needs the `boot_id` it was scheduled in")
        return self


class _Queue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = 1
    entries: list[Pending] = []


def due(entries: Sequence[Pending], now: dt.datetime, boot_id: str) -> tuple[Pending, ...]:
    """The entries to run now, in the order they were scheduled: at-time ones whose time has come,
    next-boot ones scheduled in a boot other than ``boot_id`` (the current one)."""
    return tuple(
        e
        for e in entries
        if (e.when is When.AT_TIME and e.at is not None and e.at <= now)
        or (e.when is When.NEXT_BOOT and e.boot_id != boot_id)
    )


def current_boot_id(source: Path = BOOT_ID) -> str:
    return source.read_text().strip()


def load(path: Path) -> tuple[Pending, ...]:
    """The queue; empty when the file is absent. An unreadable file is moved aside and reported
    (DPM-E238) rather than crashing every start-up of the agent."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ()
    try:
        return tuple(_Queue.model_validate(json.loads(raw)).entries)
    except (ValueError, ValidationError) as exc:
        moved = path.with_name(f"{path.name}.unreadable")
        os.replace(path, moved)
        raise E.PACKAGE_PENDING_UNREADABLE(path=str(path), reason=str(exc).splitlines()[0], moved=str(moved)) from exc


def save(path: Path, entries: Iterable[Pending]) -> None:
    """Write the whole queue atomically, 0600."""
    write_atomic(path, _Queue(entries=list(entries)).model_dump_json(indent=1).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (0600, in a 0700 directory): temp file, fsync, rename, fsync of
    the directory -- a crash or power cut leaves the old content or the new, never half of each."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def add(path: Path, entry: Pending) -> tuple[Pending, ...]:
    """Schedule ``entry``, replacing one with the same key (a scenario run again)."""
    entries = (*(e for e in load(path) if e.key != entry.key), entry)
    save(path, entries)
    return entries


def remove(path: Path, keys: Iterable[str]) -> tuple[Pending, ...]:
    """Drop the entries with these keys (run, or cancelled); what is left."""
    gone = set(keys)
    entries = tuple(e for e in load(path) if e.key not in gone)
    save(path, entries)
    return entries
