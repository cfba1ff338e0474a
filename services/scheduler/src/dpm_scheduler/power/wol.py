"""Wake-on-LAN: the magic packet (6 x 0xFF, then the MAC 16 times) over UDP broadcast.

To the limited broadcast 255.255.255.255 for the server's own segment (optionally pinned to an
interface), to the group's directed broadcast for other segments (seed catalog §3.6, §5.1 row 1).
Default port 5561 like the original; 9 is the other common choice. Each machine gets ``repeats``
packets per NIC, a little apart, because a sleeping NIC may drop the first.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from ipaddress import IPv4Address

from dpm_scheduler.power.driver import PowerTarget
from dpm_schemas import ports
from dpm_schemas.ids import normalize_mac

log = logging.getLogger(__name__)

LIMITED_BROADCAST = IPv4Address("255.255.255.255")


def magic_packet(mac: str) -> bytes:
    return b"\xff" * 6 + bytes.fromhex(normalize_mac(mac).replace(":", "")) * 16


def destination(target: PowerTarget) -> IPv4Address:
    return target.wol_broadcast or LIMITED_BROADCAST


class WakeOnLan:
    """The WOL power driver (power on only)."""

    name = "wol"

    def __init__(
        self, *, port: int = ports.WAKE_ON_LAN, interface: str | None = None, repeats: int = 3, spacing: float = 0.05
    ) -> None:
        self.port = port
        self.interface = interface
        self.repeats = repeats
        self.spacing = spacing

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if self.interface:  # the limited broadcast leaves through this interface, not the default route's
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
        sock.setblocking(False)
        return sock

    async def power_on(self, target: PowerTarget) -> None:
        address = (str(destination(target)), self.port)
        with self._socket() as sock:
            for attempt in range(self.repeats):
                for mac in target.macs:
                    sock.sendto(magic_packet(mac), address)
                if attempt + 1 < self.repeats:
                    await asyncio.sleep(self.spacing)
        log.info(
            "wake-on-lan sent to %s for %s via %s:%d",
            ",".join(target.macs),
            target.machine_id,
            *address,
            extra={"machine_id": target.machine_id},
        )


async def power_on_all(driver: WakeOnLan, targets: list[PowerTarget], *, interval: float) -> None:
    """Wake many machines, ``interval`` seconds apart (the original's remote power-on interval), so a
    room of machines does not draw its inrush current at once."""
    for i, target in enumerate(targets):
        if i:
            await asyncio.sleep(interval)
        await driver.power_on(target)
