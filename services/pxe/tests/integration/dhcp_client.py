"""A PXE ROM's first steps, run inside a lab namespace whose NIC has no address: broadcast a DHCP
DISCOVER with PXE options and print the reply (or that none came) as one JSON line; with ``full``, go
on to REQUEST the offered address and print the ACK too.

    python dhcp_client.py SERVER_PORT MAC ARCH [TIMEOUT] [full]
"""

from __future__ import annotations

import json
import random
import socket
import sys
from ipaddress import IPv4Address

from dpm_netproto.dhcp import (
    BOOTREQUEST,
    DISCOVER,
    OPT_CLIENT_ARCH,
    OPT_LEASE_TIME,
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    OPT_VENDOR_CLASS,
    REQUEST,
    DhcpPacket,
    build,
    parse,
)

server_port, mac, arch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
full = len(sys.argv) > 5 and sys.argv[5] == "full"
xid = random.getrandbits(32)
pxe_options = {
    OPT_CLIENT_ARCH: arch.to_bytes(2, "big"),
    # architecture 16 is UEFI HTTP boot, whose firmware says HTTPClient (UEFI spec 2.10 §24.7)
    OPT_VENDOR_CLASS: f"{'HTTPClient' if arch == 16 else 'PXEClient'}:Arch:{arch:05d}:UNDI:003001".encode(),
}
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
sock.bind(("0.0.0.0", 68))
sock.settimeout(timeout)


def exchange(kind: int, extra: dict[int, bytes]) -> dict[str, object] | None:
    packet = DhcpPacket(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=bytes.fromhex(mac.replace(":", "")),
        flags=0x8000,
        options={OPT_MESSAGE_TYPE: bytes([kind]), **pxe_options, **extra},
    )
    sock.sendto(build(packet), ("255.255.255.255", server_port))
    try:
        while True:
            data, source = sock.recvfrom(4096)
            answer = parse(data)
            if answer.xid == xid:
                break
    except TimeoutError:
        return None
    o = answer.options
    return {
        "from": source[0],
        "yiaddr": str(answer.yiaddr),
        "siaddr": str(answer.siaddr),
        "file": answer.file.decode(),
        "type": answer.message_type,
        "vendor_class": o.get(OPT_VENDOR_CLASS, b"").decode(),
        **({"mask": str(IPv4Address(o[OPT_SUBNET_MASK]))} if OPT_SUBNET_MASK in o else {}),
        **({"router": str(IPv4Address(o[OPT_ROUTER]))} if OPT_ROUTER in o else {}),
        **({"lease": int.from_bytes(o[OPT_LEASE_TIME], "big")} if OPT_LEASE_TIME in o else {}),
    }


offer = exchange(DISCOVER, {})
result: dict[str, object] = {"reply": offer}
if full and offer is not None and offer["yiaddr"] != "0.0.0.0":
    result["ack"] = exchange(
        REQUEST,
        {
            OPT_SERVER_ID: IPv4Address(str(offer["from"])).packed,
            OPT_REQUESTED_IP: IPv4Address(str(offer["yiaddr"])).packed,
        },
    )
print(json.dumps(result), flush=True)
