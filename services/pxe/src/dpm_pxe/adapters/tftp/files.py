"""The TFTP root as a jail: a requested name maps to a regular file inside the root, or to nothing."""

from __future__ import annotations

import os
from pathlib import Path

from dpm_netproto.tftp import E_ACCESS, E_NOT_FOUND

MAX_COMPONENT = 255  # NAME_MAX of Linux file systems
MAX_NAME = 1024  # a TFTP request is at most 1024 bytes anyway


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def resolve(root: Path, filename: str) -> Path:
    """The file ``filename`` names inside ``root``. PXE ROMs send ``\\`` or a leading ``/``; both are
    accepted. ``..``, NUL, and symlinks that lead outside the root are refused (access violation); so
    are names the file system could not hold (a component over 255 bytes made ``stat`` raise, which was
    a 500 over HTTP and no answer at all over TFTP)."""
    if "\x00" in filename:
        raise Refused(E_ACCESS, "NUL in the file name")
    if len(filename.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise Refused(E_ACCESS, f"a file name of more than {MAX_NAME} bytes")
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise Refused(E_ACCESS, f"{filename[:100]!r} leaves the TFTP root")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for p in parts):
        raise Refused(E_ACCESS, f"a path component of more than {MAX_COMPONENT} bytes")
    try:
        base = Path(os.path.realpath(root))
        real = Path(os.path.realpath(base.joinpath(*parts)))
        if not real.is_relative_to(base) or real == base:
            raise Refused(E_ACCESS, f"{filename!r} resolves outside the TFTP root")
        if not real.is_file():
            raise Refused(E_NOT_FOUND, f"{filename!r} not found")
    except (OSError, ValueError) as exc:  # what the file system refuses to look up is not there
        raise Refused(E_NOT_FOUND, f"{filename[:100]!r} not found ({type(exc).__name__})") from None
    return real


def size(root: Path, filename: str) -> int | None:
    """The size of the file ``filename`` names inside ``root`` (``resolve``'s rules); None when it would
    not be served -- what pxe checks before it names a deploy kernel in a script."""
    try:
        return resolve(root, filename).stat().st_size
    except (Refused, OSError):
        return None
