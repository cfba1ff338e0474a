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


def marker_boot_code(marker: str) -> bytes:
    """Real-mode boot code (at most 440 bytes, the MBR's code area) that writes ``marker`` to COM1
    and halts: a disk whose system is only this proves that the machine booted from that disk."""
    text = marker.encode("ascii") + b"\r\n\0"
    code = bytearray(
        b"\xfa\xfc"  # cli; cld
        b"\x31\xc0\x8e\xd8"  # xor ax, ax; mov ds, ax (the BIOS loaded us at 0000:7c00)
        b"\xbe\x00\x00"  # mov si, <text> (patched below)
        b"\xba\xf8\x03"  # mov dx, 0x3f8 (COM1's data register)
        b"\xac\x84\xc0\x74\x03\xee\xeb\xf8"  # next: lodsb; test al, al; jz done; out dx, al; jmp next
        b"\xf4\xeb\xfd"  # done: hlt; jmp done
    )
    code[7:9] = (0x7C00 + len(code)).to_bytes(2, "little")
    code += text
    assert len(code) <= 440
    return bytes(code)
