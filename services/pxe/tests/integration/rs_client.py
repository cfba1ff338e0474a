"""A router-solicitation client run inside a lab namespace (``ip netns exec``), as iPXE solicits:
    rs_client.py <count> <hop limit> <listen seconds>
It waits for eth0's link-local address, sends ``count`` solicitations to all routers with that hop
limit, listens, and prints JSON: each advertisement heard (seconds after the first solicitation,
flags, router lifetime, the source link-layer address option), and how many were sent."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time


def link_local_ready(deadline: float) -> None:
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"], capture_output=True, text=True
        )
        if "inet6" in out.stdout and "tentative" not in out.stdout:
            return
        time.sleep(0.05)
    raise SystemExit("eth0 has no usable link-local address")


def main() -> None:
    count, hops, listen = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    link_local_ready(time.monotonic() + 10)
    index = socket.if_nametoindex("eth0")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.settimeout(0.1)
    started = time.monotonic()
    for _ in range(count):
        sock.sendto(struct.pack("!BBHI", 133, 0, 0, 0), ("ff02::2", 0, 0, index))
    heard = []
    while time.monotonic() - started < listen:
        try:
            data, source = sock.recvfrom(1500)
        except TimeoutError:
            continue
        if len(data) >= 16 and data[0] == 134:
            flags, lifetime = data[5], struct.unpack("!H", data[6:8])[0]
            mac = data[18:24].hex(":") if len(data) >= 24 and data[16] == 1 else None
            heard.append({"after": time.monotonic() - started, "flags": flags, "lifetime": lifetime, "mac": mac,
                          "hop_limit": data[4], "source": source[0]})  # fmt: skip
    print(json.dumps({"sent": count, "heard": heard}))


if __name__ == "__main__":
    main()
