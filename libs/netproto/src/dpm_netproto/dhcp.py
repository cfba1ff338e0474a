"""DHCP packets (RFC 2131 §2, options RFC 2132), parsed and built without I/O.

A parse either returns a packet or raises ``Malformed`` with a reason the server logs ("Ignoring
packet: ..."); it never raises anything else, whatever the bytes (fuzzed in the tests).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

MAGIC_COOKIE = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes, then the cookie
MIN_BOOTP = 300  # RFC 1542: pad replies to at least the BOOTP size
MAX_PACKET = 4096

BOOTREQUEST, BOOTREPLY = 1, 2
PAD, END = 0, 255

# option numbers used by dpm
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_TFTP_SERVER = 66
OPT_BOOTFILE = 67
OPT_USER_CLASS = 77
OPT_CLIENT_ARCH = 93
OPT_CLIENT_NDI = 94
OPT_CLIENT_UUID = 97
OPT_VENDOR_SPECIFIC = 43
OPT_IPXE = 175

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)


UNSPECIFIED = IPv4Address(0)


class Malformed(ValueError):
    """Not a DHCP packet we can read; the reason goes to the log."""


@dataclass(frozen=True)
class DhcpPacket:
    op: int
    xid: int
    chaddr: bytes  # the 16-byte field; the MAC is its first hlen bytes
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = UNSPECIFIED
    yiaddr: IPv4Address = UNSPECIFIED
    siaddr: IPv4Address = UNSPECIFIED
    giaddr: IPv4Address = UNSPECIFIED
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)  # in wire order

    @property
    def mac(self) -> str:
        return ":".join(f"{b:02x}" for b in self.chaddr[: self.hlen])

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & 0x8000)


def reply_to(request: DhcpPacket, **fields: Any) -> DhcpPacket:
    """A BOOTREPLY to ``request``: its transaction, hardware address, flags and relay, plus ``fields``."""
    header: dict[str, Any] = {
        "xid": request.xid,
        "chaddr": request.chaddr,
        "htype": request.htype,
        "hlen": request.hlen,
        "flags": request.flags,
        "giaddr": request.giaddr,
    }
    return DhcpPacket(op=BOOTREPLY, **{**header, **fields})


def _options(data: bytes, where: str, into: dict[int, bytes]) -> bool:
    """Parse an option area into ``into`` (concatenating repeated options, RFC 3396); True if END seen."""
    i = 0
    while i < len(data):
        code = data[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            return True
        if i + 1 >= len(data):
            raise Malformed(f"option {code} in {where} has no length byte")
        length = data[i + 1]
        start, stop = i + 2, i + 2 + length
        if stop > len(data):
            raise Malformed(f"option {code} in {where} runs {stop - len(data)} bytes past the end")
        into[code] = into.get(code, b"") + data[start:stop]
        i = stop
    return False


def parse(data: bytes) -> DhcpPacket:
    if len(data) < HEADER.size + len(MAGIC_COOKIE):
        raise Malformed(f"{len(data)} bytes is shorter than a DHCP header ({HEADER.size + 4})")
    if len(data) > MAX_PACKET:
        raise Malformed(f"{len(data)} bytes is longer than {MAX_PACKET}")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise Malformed(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16 or hlen == 0:
        raise Malformed(f"hardware address length {hlen}")
    if data[HEADER.size : HEADER.size + 4] != MAGIC_COOKIE:
        raise Malformed("no DHCP magic cookie (plain BOOTP is not served)")
    options: dict[int, bytes] = {}
    ended = _options(data[HEADER.size + 4 :], "options", options)
    overload = options.get(OPT_OVERLOAD, b"\x00")[:1]
    if overload in (b"\x01", b"\x03"):  # RFC 2131 §4.1: file field carries options
        _options(file, "file", options)
        file = b""
    if overload in (b"\x02", b"\x03"):
        _options(sname, "sname", options)
        sname = b""
    if not ended and OPT_OVERLOAD not in options:
        raise Malformed("options are not terminated by END (255)")
    return DhcpPacket(
        op=op,
        xid=xid,
        chaddr=chaddr,
        htype=htype,
        hlen=hlen,
        hops=hops,
        secs=secs,
        flags=flags,
        ciaddr=IPv4Address(ci),
        yiaddr=IPv4Address(yi),
        siaddr=IPv4Address(si),
        giaddr=IPv4Address(gi),
        sname=sname.split(b"\x00", 1)[0],
        file=file.split(b"\x00", 1)[0],
        options=options,
    )


def _encode_options(options: dict[int, bytes]) -> bytes:
    out = bytearray()
    for code, value in options.items():
        if code in (PAD, END):
            continue
        for i in range(0, max(len(value), 1), 255):  # long options are split (RFC 3396)
            chunk = value[i : i + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(END)
    return bytes(out)


def build(packet: DhcpPacket) -> bytes:
    if len(packet.sname) > 63 or len(packet.file) > 127:
        raise ValueError("sname or file too long for its field")
    header = HEADER.pack(
        packet.op,
        packet.htype,
        packet.hlen,
        packet.hops,
        packet.xid,
        packet.secs,
        packet.flags,
        packet.ciaddr.packed,
        packet.yiaddr.packed,
        packet.siaddr.packed,
        packet.giaddr.packed,
        packet.chaddr.ljust(16, b"\x00"),
        packet.sname.ljust(64, b"\x00"),
        packet.file.ljust(128, b"\x00"),
    )
    body = header + MAGIC_COOKIE + _encode_options(packet.options)
    return body.ljust(MIN_BOOTP, b"\x00")
