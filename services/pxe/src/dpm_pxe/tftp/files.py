"""The TFTP root as a jail: a requested name maps to a regular file inside the root, or to nothing."""

from __future__ import annotations

import os
from pathlib import Path

from dpm_pxe.tftp.protocol import E_ACCESS, E_NOT_FOUND


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def resolve(root: Path, filename: str) -> Path:
    """The file ``filename`` names inside ``root``. PXE ROMs send ``\\`` or a leading ``/``; both are
    accepted. ``..``, NUL, and symlinks that lead outside the root are refused (access violation)."""
    if "\x00" in filename:
        raise Refused(E_ACCESS, "NUL in the file name")
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise Refused(E_ACCESS, f"{filename!r} leaves the TFTP root")
    base = Path(os.path.realpath(root))
    real = Path(os.path.realpath(base.joinpath(*parts)))
    if not real.is_relative_to(base) or real == base:
        raise Refused(E_ACCESS, f"{filename!r} resolves outside the TFTP root")
    if not real.is_file():
        raise Refused(E_NOT_FOUND, f"{filename!r} not found")
    return real
