"""The addresses pxe saw a MAC boot from, and who may get its execution's deploy token.

Anyone on the boot network can ask ``/boot/<mac>.ipxe`` for a MAC it knows; the deploy environment
(and its token, and the image it restores) must go to the machine pxe saw boot, not to the first
asker. So a token is granted only to a client whose address pxe itself recorded for that MAC: the
lease pxe gave it in full mode; otherwise the addresses its DHCP packets named and the address its
TFTP read came from (``domain.witness``), for ``window`` seconds (``pxe.boot_addresses``, so every replica
of the HTTP side sees what the DHCP listener saw).

When pxe saw no address at all for the MAC: if its DHCP listener runs in proxy or full mode it takes
part in every network boot on its network, so a request without one is not a machine it booted --
refused. With the listener off, or in mode off (boot media, another DHCP server that chains to the
script), pxe sees no boot exchange to bind to, and the first client keeps the token
(``tokens.DeployTokens``), as docs/network-boot.md and docs/security.md say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from psycopg_pool import AsyncConnectionPool

from dpm_netproto.dhcp import OPT_BOOTFILE, DhcpPacket
from dpm_netproto.pxeclient import ClientInfo
from dpm_pxe.adapters.state import SCHEMA
from dpm_pxe.domain.witness import TftpPairing, admitted, dhcp_addresses, unseen
from dpm_runtime.eventlog import Conn
from dpm_schemas import E
from dpm_schemas.events.boot import DhcpMode

log = logging.getLogger(__name__)

DDL = [
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.boot_addresses (mac text NOT NULL, ip inet NOT NULL,"
    " source text NOT NULL, seen_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (mac, ip))",
    f"CREATE INDEX IF NOT EXISTS boot_addresses_seen ON {SCHEMA}.boot_addresses (seen_at)",
]
CATCH_UP = 1.5  # seconds a refusal waits for a DHCP packet that raced the script request to be recorded
WATCHING = (DhcpMode.PROXY, DhcpMode.FULL)


class Sightings:
    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        *,
        window: float,
        mode: Callable[[], DhcpMode | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``mode()``: the DHCP mode in force, None when this pxe runs no DHCP listener."""
        self._pool = pool
        self.window = window
        self._mode = mode
        self._clock = clock
        self.pairing = TftpPairing()
        self._tasks: set[asyncio.Task[None]] = set()

    async def saw(self, mac: str, found: list[tuple[IPv4Address, str]]) -> None:
        """Record the addresses one packet or transfer of ``mac`` named; old ones go a few at a time."""
        if not found:
            return
        async with self._pool.connection() as conn, conn.transaction():
            for ip, how in found:
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.boot_addresses (mac, ip, source) VALUES (%s, %s, %s)"
                    " ON CONFLICT (mac, ip) DO UPDATE SET source = excluded.source, seen_at = now()",
                    (mac, str(ip), how),
                )
            await conn.execute(
                f"DELETE FROM {SCHEMA}.boot_addresses WHERE (mac, ip) IN (SELECT mac, ip FROM {SCHEMA}.boot_addresses"
                " WHERE seen_at < now() - make_interval(secs => %s) LIMIT 50)",
                (self.window,),
            )

    async def dhcp_packet(self, request: DhcpPacket, source: str, answer: DhcpPacket | None, on_4011: bool) -> None:
        """The DHCP listener's per-packet callback: the addresses the packet names; a ROM's boot file,
        whose TFTP read comes next."""
        info = ClientInfo.from_packet(request)
        if answer is not None and info.is_pxe and not info.is_ipxe:
            file = (answer.options.get(OPT_BOOTFILE) or answer.file).rstrip(b"\0").decode("ascii", "replace")
            if file:
                self.pairing.offered(request.mac, file, self._clock())
        await self._saw_quietly(request.mac, dhcp_addresses(request, source, on_4011=on_4011))

    def tftp_read(self, file: str, peer: tuple[str, int], _sent: int) -> None:
        """The TFTP server's completed-transfer callback: the address of the machine just given ``file``."""
        mac = self.pairing.fetched(file, self._clock())
        if mac is None:
            return
        task = asyncio.get_running_loop().create_task(self._saw_quietly(mac, [(IPv4Address(peer[0]), "tftp")]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _saw_quietly(self, mac: str, found: list[tuple[IPv4Address, str]]) -> None:
        try:
            await self.saw(mac, found)
        except Exception as exc:  # recording must never stop the boot service
            log.warning("could not record where %s boots from: %r", mac, exc)

    async def addresses(self, mac: str) -> set[str]:
        """Where pxe saw ``mac`` boot: its bound lease, and (outside full mode) its recent sightings."""
        full = self._mode() is DhcpMode.FULL
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT host(ip) FROM {SCHEMA}.leases WHERE mac = %s AND state = 'bound' AND expires_at > now()"
                    f" UNION SELECT host(ip) FROM {SCHEMA}.boot_addresses WHERE NOT %s AND mac = %s"
                    " AND seen_at > now() - make_interval(secs => %s)",
                    (mac, full, mac, self.window),
                )
            ).fetchall()
        return {str(r[0]) for r in rows}

    async def refusal(self, mac: str, client_ip: str | None) -> str:
        """Why ``client_ip`` may not have ``mac``'s deploy environment ('' if it may); waits a moment
        for a DHCP packet of that machine still being recorded."""
        if client_ip is None:
            return ""  # tokens.DeployTokens refuses an address it cannot bind to
        deadline = self._clock() + CATCH_UP
        while True:
            seen = await self.addresses(mac)
            if admitted(client_ip, seen, watching=self._mode() in WATCHING):
                return ""
            if self._clock() > deadline:
                break
            await asyncio.sleep(0.1)
        err = E.DEPLOY_CLIENT_UNSEEN(client=client_ip, mac=mac, reason=unseen(seen, self.window))
        return f"{err.code}: {err.message}"
