"""A PXE ROM's first step, run inside a lab namespace whose NIC has no address: broadcast a DHCP
DISCOVER with PXE options and print the reply (or that none came) as one JSON line.

    python dhcp_client.py SERVER_PORT MAC ARCH [TIMEOUT]
"""

from __future__ import annotations

import json
import random
import socket
import sys

from dpm_pxe.dhcp.packet import (
    BOOTREQUEST,
    DISCOVER,
    OPT_CLIENT_ARCH,
    OPT_MESSAGE_TYPE,
    OPT_VENDOR_CLASS,
    DhcpPacket,
    build,
    parse,
)

server_port, mac, arch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
xid = random.getrandbits(32)
discover = DhcpPacket(
    op=BOOTREQUEST,
    xid=xid,
    chaddr=bytes.fromhex(mac.replace(":", "")),
    flags=0x8000,
    options={
        OPT_MESSAGE_TYPE: bytes([DISCOVER]),
        OPT_CLIENT_ARCH: arch.to_bytes(2, "big"),
        OPT_VENDOR_CLASS: f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode(),
    },
)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
sock.bind(("0.0.0.0", 68))
sock.settimeout(timeout)
sock.sendto(build(discover), ("255.255.255.255", server_port))
try:
    while True:
        data, source = sock.recvfrom(4096)
        offer = parse(data)
        if offer.xid == xid:
            break
except TimeoutError:
    print(json.dumps({"reply": None}), flush=True)
    sys.exit(0)
print(
    json.dumps(
        {
            "reply": {
                "from": source[0],
                "yiaddr": str(offer.yiaddr),
                "siaddr": str(offer.siaddr),
                "file": offer.file.decode(),
                "type": offer.message_type,
                "vendor_class": offer.options.get(OPT_VENDOR_CLASS, b"").decode(),
            }
        }
    ),
    flush=True,
)
