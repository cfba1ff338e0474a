"""QEMU machines for the end-to-end tests: software emulation (no KVM), a tap on a lab bridge,
the serial console to a file, killed when the test is done with them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def qemu(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(30)


def machine_argv(tap: str, smbios: uuid.UUID, serial: Path, memory: int) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-m", str(memory),
        "-display", "none",
        "-monitor", "none",
        "-no-reboot",
        "-smbios", f"type=1,uuid={smbios}",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-serial", f"file:{serial}",
    ]  # fmt: skip
