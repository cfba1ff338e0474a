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


def packages(root: Path = Path("/")) -> tuple[str, ...]:
    """The "name=version" of what dpkg (or rpm) installed into ``root``: its own package database,
    so an agent installing into a scratch tree reports what it installed there. dpkg's packages
    count once fully installed (not half-configured, nor removed with their configuration kept)."""
    if shutil.which("dpkg-query"):
        cmd = ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package}=${Version}\\n"]
        if root != Path("/"):
            cmd.insert(1, f"--admindir={root / 'var/lib/dpkg'}")
    elif shutil.which("rpm"):
        cmd = ["rpm", "-qa", "--qf", "%{NAME}=%{VERSION}-%{RELEASE}\\n"]
        if root != Path("/"):
            cmd[1:1] = ["--root", str(root)]
    else:
        return ()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    if cmd[0] == "dpkg-query":
        lines = [line.removeprefix("installed ") for line in lines if line.startswith("installed ")]
    return tuple(sorted(line for line in lines if line))


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


def inventory(root: Path = Path("/")) -> Inventory:
    pkgs = packages(root)
    os, kernel = os_name(), platform.release()
    digest = hashlib.sha256("\n".join([os, kernel, *pkgs]).encode()).hexdigest()
    return Inventory(os=os, kernel=kernel, packages=pkgs, digest=digest)
