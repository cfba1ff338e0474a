"""Validation rules with catalogued errors: machine names (RFC 1123; NetBIOS for Windows), group
network settings and full-mode DHCP ranges. Pure functions; the API calls them before anything is appended."""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network

from dpm_schemas import E
from dpm_schemas.events.boot import DhcpRange

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NETBIOS_FORBIDDEN = set("\\/:*?\"<>|.,~!@#$%^&'(){}_ ")


def is_windows(os_type: str | None) -> bool:
    return bool(os_type) and os_type.strip().lower().startswith("windows")  # type: ignore[union-attr]


def check_machine_name(name: str, os_type: str | None = None) -> None:
    """RFC 1123 host name; for Windows machines also a valid NetBIOS computer name."""
    if len(name) > 253:
        raise E.INVALID_HOSTNAME(name=name, reason="longer than 253 characters")
    for label in name.split("."):
        if not label:
            raise E.INVALID_HOSTNAME(name=name, reason="empty label (two dots, or a dot at either end)")
        if not _LABEL.match(label):
            reason = (
                "a label is longer than 63 characters"
                if len(label) > 63
                else "only letters, digits and inner hyphens are allowed"
            )
            raise E.INVALID_HOSTNAME(name=name, reason=reason)
    if name.replace(".", "").isdigit():
        raise E.INVALID_HOSTNAME(name=name, reason="only digits")
    if is_windows(os_type):
        if len(name) > 15:
            raise E.INVALID_HOSTNAME(name=name, reason="Windows (NetBIOS) names have at most 15 characters")
        if set(name) & _NETBIOS_FORBIDDEN:
            raise E.INVALID_HOSTNAME(name=name, reason="Windows (NetBIOS) names cannot contain dots or symbols")


def check_group_network(
    name: str, subnet: IPv4Network | None, broadcast: IPv4Address | None, gateway: IPv4Address | None
) -> IPv4Address | None:
    """Validate a group's network settings; return the broadcast address WOL should use (or None for
    the server's own segment, where 255.255.255.255 is used)."""
    if subnet is None:
        if broadcast is not None or gateway is not None:
            raise E.INVALID_NETWORK(name=name, reason="broadcast or gateway given without a subnet")
        return None
    if subnet.prefixlen > 30:
        raise E.INVALID_NETWORK(name=name, reason=f"{subnet} has no room for hosts and a broadcast address")
    effective = broadcast or subnet.broadcast_address
    if effective not in subnet:
        raise E.INVALID_NETWORK(name=name, reason=f"broadcast {effective} is outside {subnet}")
    if gateway is not None and (gateway not in subnet or gateway in (subnet.network_address, effective)):
        raise E.INVALID_NETWORK(name=name, reason=f"gateway {gateway} is not a host address of {subnet}")
    return effective


def check_boot_ranges(ranges: Sequence[DhcpRange]) -> None:
    """Full-mode ranges: start <= end inside the subnet (never its network or broadcast address), the
    router inside the subnet and outside the range, and no two ranges overlapping."""
    spans: list[tuple[int, int, str]] = []
    for r in ranges:
        try:
            net = IPv4Network(r.subnet, strict=False)
        except ValueError as exc:
            raise E.BOOT_SETTINGS_INVALID(reason=f"subnet {r.subnet!r}: {exc}") from None
        start, end = IPv4Address(r.start), IPv4Address(r.end)
        label = f"range {start}-{end}"
        if start > end:
            raise E.BOOT_SETTINGS_INVALID(reason=f"{label} starts after it ends")
        if start not in net or end not in net:
            raise E.BOOT_SETTINGS_INVALID(reason=f"{label} is not inside {net}")
        if net.num_addresses > 2 and (start == net.network_address or end == net.broadcast_address):
            raise E.BOOT_SETTINGS_INVALID(reason=f"{label} includes the network or broadcast address of {net}")
        if r.router is not None:
            router = IPv4Address(r.router)
            if router not in net:
                raise E.BOOT_SETTINGS_INVALID(reason=f"router {router} is not inside {net}")
            if start <= router <= end:
                raise E.BOOT_SETTINGS_INVALID(reason=f"router {router} lies inside {label}")
        for lo, hi, other in spans:
            if int(start) <= hi and lo <= int(end):
                raise E.BOOT_SETTINGS_INVALID(reason=f"{label} overlaps {other}")
        spans.append((int(start), int(end), label))
