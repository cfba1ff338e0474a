"""TFTP packets and option negotiation, without I/O.

Parsing raises ``Malformed`` with a reason for anything it cannot read; negotiation answers only the
options we support, clamped to the limits (RFC 2347: unknown options are ignored, not refused).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RRQ, WRQ, DATA, ACK, ERROR, OACK = range(1, 7)
MODES = ("octet", "netascii")
DEFAULT_BLKSIZE = 512
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464  # RFC 2348
MAX_WINDOW = 65535  # RFC 7440
MAX_REQUEST = 1024

# RFC 1350 error codes
E_UNDEFINED, E_NOT_FOUND, E_ACCESS, E_DISK_FULL, E_ILLEGAL, E_UNKNOWN_TID, E_EXISTS, E_NO_USER = range(8)
E_OPTION_REFUSED = 8  # RFC 2347


class Malformed(ValueError):
    """Not a TFTP packet we can read; the reason goes to the log."""


@dataclass(frozen=True)
class Request:
    opcode: int  # RRQ or WRQ
    filename: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)  # names lower-cased


@dataclass(frozen=True)
class Data:
    block: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int
    message: str


@dataclass(frozen=True)
class OAck:
    options: dict[str, str]


Packet = Request | Data | Ack | Error | OAck


def _strings(body: bytes) -> list[str]:
    if not body.endswith(b"\x00"):
        raise Malformed("strings are not NUL-terminated")
    try:
        return body[:-1].decode("ascii").split("\x00")
    except UnicodeDecodeError:
        raise Malformed("non-ASCII bytes in a request") from None


def parse(data: bytes) -> Packet:
    if len(data) < 4:
        raise Malformed(f"{len(data)} bytes is too short")
    (opcode,) = struct.unpack_from("!H", data)
    body = data[2:]
    if opcode in (RRQ, WRQ):
        if len(data) > MAX_REQUEST:
            raise Malformed(f"request of {len(data)} bytes")
        parts = _strings(body)
        if len(parts) < 2 or len(parts) % 2:
            raise Malformed("a request needs a file name, a mode and option name/value pairs")
        filename, mode = parts[0], parts[1].lower()
        if not filename:
            raise Malformed("empty file name")
        if mode not in MODES:
            raise Malformed(f"mode {mode!r} is not supported")
        options = {parts[i].lower(): parts[i + 1] for i in range(2, len(parts), 2)}
        return Request(opcode, filename, mode, options)
    if opcode == DATA:
        return Data(struct.unpack_from("!H", body)[0], body[2:])
    if opcode == ACK:
        if len(body) != 2:
            raise Malformed(f"ACK of {len(data)} bytes")
        return Ack(struct.unpack_from("!H", body)[0])
    if opcode == ERROR:
        code = struct.unpack_from("!H", body)[0]
        return Error(code, body[2:].split(b"\x00", 1)[0].decode("ascii", "replace"))
    if opcode == OACK:
        parts = _strings(body)
        if len(parts) % 2:
            raise Malformed("OACK options are not name/value pairs")
        return OAck({parts[i].lower(): parts[i + 1] for i in range(0, len(parts), 2)})
    raise Malformed(f"unknown opcode {opcode}")


def data(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", DATA, block & 0xFFFF) + payload


def ack(block: int) -> bytes:
    return struct.pack("!HH", ACK, block & 0xFFFF)


def error(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace")[:200] + b"\x00"


def oack(options: dict[str, str]) -> bytes:
    return struct.pack("!H", OACK) + b"".join(f"{k}\x00{v}\x00".encode("ascii") for k, v in options.items())


def request(filename: str, options: dict[str, str] | None = None, mode: str = "octet") -> bytes:
    """An RRQ, as clients send it (for tests and the lab)."""
    extra = b"".join(f"{k}\x00{v}\x00".encode("ascii") for k, v in (options or {}).items())
    return struct.pack("!H", RRQ) + f"{filename}\x00{mode}\x00".encode("ascii") + extra


@dataclass(frozen=True)
class Transfer:
    """The parameters a read transfer runs with after negotiation."""

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: float = 1.0
    accepted: dict[str, str] = field(default_factory=dict)  # what goes into the OACK (empty: no OACK)


def negotiate(
    requested: dict[str, str],
    *,
    file_size: int,
    max_blksize: int = 1468,
    max_window: int = 64,
    default_timeout: float = 1.0,
) -> Transfer:
    """Answer blksize, tsize, timeout and windowsize; ignore the rest and malformed values."""
    accepted: dict[str, str] = {}
    blksize, window, timeout = DEFAULT_BLKSIZE, 1, default_timeout
    if (value := _int(requested.get("blksize"))) is not None and value >= MIN_BLKSIZE:
        blksize = min(value, max_blksize, MAX_BLKSIZE)
        accepted["blksize"] = str(blksize)
    if (value := _int(requested.get("tsize"))) is not None and value == 0:
        accepted["tsize"] = str(file_size)  # RFC 2349: in a read request the client sends 0 and learns the size
    if (value := _int(requested.get("timeout"))) is not None and 1 <= value <= 255:
        timeout = float(value)
        accepted["timeout"] = str(value)
    if (value := _int(requested.get("windowsize"))) is not None and value >= 1:
        window = min(value, max_window, MAX_WINDOW)
        accepted["windowsize"] = str(window)
    return Transfer(blksize=blksize, windowsize=window, timeout=timeout, accepted=accepted)


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 10:
        return None
    return int(value)
