"""Runs inside a lab namespace as a machine's NIC waiting for Wake-on-LAN: prints one JSON line per
UDP packet with its destination address (IP_PKTINFO) and whether it is a magic packet for MY_MAC."""

from __future__ import annotations

import json
import socket
import struct
import sys

port, my_mac, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; the constant arrived in Python 3.12
magic = b"\xff" * 6 + bytes.fromhex(my_mac.replace(":", "")) * 16
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
sock.bind(("0.0.0.0", port))
sock.settimeout(20)
print(json.dumps({"listening": port}), flush=True)
for _ in range(count):
    data, ancillary, _flags, source = sock.recvmsg(2048, socket.CMSG_SPACE(12))
    destination = None
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            _ifindex, _local, dst = struct.unpack("I4s4s", value[:12])
            destination = socket.inet_ntoa(dst)
    print(
        json.dumps({"from": source[0], "to": destination, "magic_for_me": data == magic, "size": len(data)}), flush=True
    )
