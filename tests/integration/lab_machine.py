"""A lab machine that is "off": it waits for a Wake-on-LAN magic packet for its MAC, then "boots" --
it becomes its agent (``python -m dpm_agent --config CONFIG``). Run inside a lab namespace.

    python lab_machine.py PORT MAC CONFIG
"""

from __future__ import annotations

import os
import socket
import sys

port, mac, config = int(sys.argv[1]), sys.argv[2], sys.argv[3]
magic = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("0.0.0.0", port))
    print("off, waiting for wake-on-lan", flush=True)
    while sock.recv(2048) != magic:
        pass
print("woken: starting the agent", flush=True)
os.execv(sys.executable, [sys.executable, "-m", "dpm_agent", "--config", config])
