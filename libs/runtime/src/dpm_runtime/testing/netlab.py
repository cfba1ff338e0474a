"""A lab of hosts on one machine: a Linux bridge on the host and network namespaces joined to it by
veth pairs. Broadcast and multicast work inside it; nothing leaves it. Needs root and iproute2.

    with NetLab(hosts=2) as lab:
        lab.host_ip              # the host's address on the lab bridge, e.g. 10.213.7.1
        lab.hosts[0].ip          # 10.213.7.10, inside namespace lab.hosts[0].netns
        lab.run(lab.hosts[0], ["python", "-c", "..."])
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True)


@dataclass
class LabHost:
    netns: str
    ip: IPv4Address
    mac: str
    ifname: str = "eth0"


@dataclass
class NetLab:
    hosts_wanted: int = 1
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[LabHost] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)
    subnet: IPv4Network = field(init=False)

    def __post_init__(self) -> None:
        # 10.213.0.0/16 split into /24 labs picked by the tag, so concurrent labs rarely meet
        self.subnet = IPv4Network(f"10.213.{int(self.tag, 16) % 250 + 1}.0/24")

    @property
    def bridge(self) -> str:
        return f"dpmbr{self.tag}"

    @property
    def host_ip(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def broadcast(self) -> IPv4Address:
        return self.subnet.broadcast_address

    def __enter__(self) -> NetLab:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(self.hosts_wanted):
                self.add_host(i)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def add_host(self, i: int) -> LabHost:
        netns, outside = f"dpm{self.tag}h{i}", f"dpm{self.tag}v{i}"
        mac = f"52:54:{int(self.tag[:2], 16):02x}:{int(self.tag[2:4], 16):02x}:{int(self.tag[4:], 16):02x}:{i + 16:02x}"
        ip = self.subnet.network_address + 10 + i
        _ip("netns", "add", netns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("link", "set", "eth0", "address", mac, netns=netns)
        _ip("addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        host = LabHost(netns=netns, ip=ip, mac=mac)
        self.hosts.append(host)
        return host

    def add_tap(self) -> str:
        """A tap device on the bridge, for a virtual machine (QEMU ``-netdev tap,ifname=...``)."""
        name = f"dpm{self.tag}t{len(self.taps)}"
        _ip("tuntap", "add", "dev", name, "mode", "tap")
        self.taps.append(name)
        _ip("link", "set", name, "master", self.bridge)
        _ip("link", "set", name, "up")
        return name

    def popen(self, host: LabHost, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the host's namespace."""
        return subprocess.Popen(["ip", "netns", "exec", host.netns, *argv], **kwargs)  # type: ignore[call-overload,no-any-return]

    def __exit__(self, *exc: object) -> None:
        for tap in self.taps:
            subprocess.run(["ip", "link", "del", tap], capture_output=True)
        for i in range(len(self.hosts) + 1):
            subprocess.run(["ip", "netns", "del", f"dpm{self.tag}h{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
