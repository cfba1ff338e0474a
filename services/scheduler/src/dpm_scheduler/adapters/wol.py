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
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from dpm_scheduler.adapters.driver import PowerTarget
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


class Spacing:
    """Consecutive power-ons at least ``interval`` seconds apart (the original's remote power-on
    interval), across requests: one consumer sends them one after another through this gate."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None

    async def wait(self) -> None:
        if self._last is not None:
            remaining = self._last + self.interval - self._clock()
            if remaining > 0:
                await asyncio.sleep(remaining)
        self._last = self._clock()


async def power_on_all(driver: WakeOnLan, targets: list[PowerTarget], *, interval: float) -> None:
    """Wake many machines, ``interval`` seconds apart."""
    spacing = Spacing(interval)
    for target in targets:
        await spacing.wait()
        await driver.power_on(target)
