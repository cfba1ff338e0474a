"""What this machine is: MACs, SMBIOS UUID, host name, addresses, OS, kernel, installed packages.
Read from /sys, /etc/os-release, `ip -j addr` and dpkg or rpm; every source may be absent."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

from dpm_agent.config import AgentConfig
from dpm_schemas.agent_protocol import Facts, Inventory


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def macs() -> tuple[str, ...]:
    found = []
    for nic in sorted(Path("/sys/class/net").glob("*")):
        address = _read(str(nic / "address"))
        if nic.name != "lo" and address and address != "00:00:00:00:00:00" and (nic / "device").exists():
            found.append(address.lower())
    return tuple(found)


def smbios_uuid() -> uuid.UUID | None:
    raw = _read("/sys/class/dmi/id/product_uuid")
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def addresses() -> tuple[str, ...]:
    """Global unicast addresses of every interface but loopback (link-local addresses excluded)."""
    if not shutil.which("ip"):
        return ()
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5)
    ips = []
    for link in json.loads(out.stdout or "[]"):
        if link.get("ifname") == "lo":
            continue
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                ips.append(info["local"])
    return tuple(ips)


def os_name() -> str:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def packages() -> tuple[str, ...]:
    if shutil.which("dpkg-query"):
        cmd = ["dpkg-query", "-W", "-f", "${Package}=${Version}\\n"]
    elif shutil.which("rpm"):
        cmd = ["rpm", "-qa", "--qf", "%{NAME}=%{VERSION}-%{RELEASE}\\n"]
    else:
        return ()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return tuple(sorted(line for line in out.stdout.splitlines() if line))


def gather(config: AgentConfig) -> Facts:
    found = config.macs or macs()
    if not found:
        raise RuntimeError("no network interface with a MAC address found; set `macs` in the configuration")
    return Facts(
        macs=found,
        smbios_uuid=config.smbios_uuid or smbios_uuid(),
        hostname=config.hostname or socket.gethostname(),
        ips=addresses(),
        os=os_name(),
        kernel=platform.release(),
    )


def inventory() -> Inventory:
    pkgs = packages()
    os, kernel = os_name(), platform.release()
    digest = hashlib.sha256("\n".join([os, kernel, *pkgs]).encode()).hexdigest()
    return Inventory(os=os, kernel=kernel, packages=pkgs, digest=digest)
