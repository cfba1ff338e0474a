"""Who may get a MAC's deploy environment (issue 12 item 5): the address of its full-mode lease, the
addresses its DHCP packets and TFTP read named in the boot window; nobody else -- and nobody at all
when pxe's DHCP listener runs in proxy or full mode and saw no boot of that MAC; the first asker only
where pxe sees no boot exchange (listener off, mode off)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from dpm_netproto.dhcp import BOOTREQUEST, DISCOVER, OFFER, OPT_MESSAGE_TYPE, OPT_VENDOR_CLASS, DhcpPacket
from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.sightings import DDL as SIGHTINGS_DDL
from dpm_pxe.adapters.sightings import Sightings
from dpm_pxe.adapters.state import DDL, SCHEMA
from dpm_pxe.domain.dhcp.full import Hold
from dpm_runtime.directory import directory_ddl
from dpm_runtime.testing import eventually
from dpm_schemas.events.boot import DhcpMode

pytestmark = pytest.mark.integration

MAC = "52:54:00:07:00:0a"


async def _tables(pool) -> None:
    async with pool.connection() as conn:
        for statement in [*directory_ddl(SCHEMA), *DDL, *SIGHTINGS_DDL]:
            await conn.execute(statement.encode())


class Mode:
    def __init__(self, mode: DhcpMode | None) -> None:
        self.mode = mode

    def __call__(self) -> DhcpMode | None:
        return self.mode


async def test_full_mode_gives_it_only_to_the_lease(pool) -> None:
    await _tables(pool)
    await LeaseStore(pool).persist(Hold(IPv4Address("10.7.0.10"), MAC, "bound", 600))
    mode = Mode(DhcpMode.FULL)
    sightings = Sightings(pool, window=600, mode=mode)
    await sightings.saw(MAC, [(IPv4Address("10.7.0.99"), "dhcp-requested")])  # a forged REQUEST: not in full mode
    assert await sightings.refusal(MAC, "10.7.0.10") == ""
    refused = await sightings.refusal(MAC, "10.7.0.99")
    assert refused.startswith("DPM-E136") and "did not see that MAC boot from this address" in refused
    mode.mode = DhcpMode.PROXY  # outside full mode the DHCP sightings count too
    assert await sightings.refusal(MAC, "10.7.0.99") == ""


async def test_with_nothing_seen_proxy_refuses_and_a_blind_pxe_lets_the_first_asker_have_it(pool) -> None:
    await _tables(pool)
    mode = Mode(DhcpMode.PROXY)
    sightings = Sightings(pool, window=600, mode=mode)
    refused = await sightings.refusal(MAC, "10.7.0.5")
    assert refused.startswith("DPM-E136") and "saw no network boot of that MAC" in refused
    for blind in (DhcpMode.OFF, None):  # mode off, or no DHCP listener: nothing to bind to
        mode.mode = blind
        assert await sightings.refusal(MAC, "10.7.0.5") == ""
    await sightings.saw(MAC, [(IPv4Address("10.7.0.6"), "dhcp-ciaddr")])
    assert (await sightings.refusal(MAC, "10.7.0.5")).startswith("DPM-E136")  # seen elsewhere: enforced


async def test_old_sightings_expire_and_a_tftp_read_after_the_roms_answer_counts(pool) -> None:
    await _tables(pool)
    sightings = Sightings(pool, window=0.5, mode=Mode(DhcpMode.PROXY))
    await sightings.saw(MAC, [(IPv4Address("10.7.0.6"), "dhcp-ciaddr")])
    assert await sightings.addresses(MAC) == {"10.7.0.6"}
    await eventually(lambda: sightings.addresses(MAC), until=lambda seen: not seen, timeout=5, what="expiry")

    options = {OPT_MESSAGE_TYPE: bytes([DISCOVER]), OPT_VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016"}
    rom = DhcpPacket(op=BOOTREQUEST, xid=1, chaddr=bytes.fromhex(MAC.replace(":", "")), options=options)
    answer = DhcpPacket(op=2, xid=1, chaddr=rom.chaddr, file=b"ipxe.efi", options={OPT_MESSAGE_TYPE: bytes([OFFER])})
    await sightings.dhcp_packet(rom, "0.0.0.0", answer, False)
    sightings.tftp_read("ipxe.efi", ("10.7.0.8", 2000), 1024)
    seen = await eventually(
        lambda: sightings.addresses(MAC), until=lambda seen: bool(seen), timeout=5, what="the TFTP reader recorded"
    )
    assert seen == {"10.7.0.8"}
