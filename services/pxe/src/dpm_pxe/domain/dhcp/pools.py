"""Address pools of full mode, built from the boot settings' ranges (validated by the api)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from dpm_schemas.events.boot import DhcpRange


@dataclass(frozen=True)
class Pool:
    network: IPv4Network
    start: IPv4Address
    end: IPv4Address
    router: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    lease_seconds: int = 3600

    @classmethod
    def from_range(cls, r: DhcpRange) -> Pool:
        return cls(
            network=IPv4Network(r.subnet, strict=False),
            start=IPv4Address(r.start),
            end=IPv4Address(r.end),
            router=IPv4Address(r.router) if r.router else None,
            dns=tuple(IPv4Address(d) for d in r.dns),
            lease_seconds=r.lease_seconds,
        )

    def in_range(self, ip: IPv4Address) -> bool:
        return self.start <= ip <= self.end


def pool_of(pools: tuple[Pool, ...], ip: IPv4Address) -> Pool | None:
    """The pool whose subnet holds ``ip`` (a reservation may sit outside the dynamic range)."""
    return next((p for p in pools if ip in p.network), None)
