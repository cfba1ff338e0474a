"""The magic packet and where it goes."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from dpm_scheduler.adapters.driver import PowerTarget
from dpm_scheduler.adapters.wol import destination, magic_packet


def test_magic_packet_is_six_ff_then_sixteen_macs() -> None:
    packet = magic_packet("52-54-00-AB-CD-EF")
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("525400abcdef") * 16


def test_a_malformed_mac_is_refused() -> None:
    with pytest.raises(ValueError):
        magic_packet("52:54:00:ab:cd")


def test_own_segment_uses_the_limited_broadcast_other_segments_their_directed_broadcast() -> None:
    assert destination(PowerTarget("m", ("52:54:00:00:00:01",), None)) == IPv4Address("255.255.255.255")
    assert destination(PowerTarget("m", ("52:54:00:00:00:01",), IPv4Address("192.168.0.255"))) == IPv4Address(
        "192.168.0.255"
    )


async def test_power_ons_are_spaced_by_the_interval() -> None:
    from dpm_scheduler.adapters.wol import Spacing

    now = [100.0]
    slept: list[float] = []
    spacing = Spacing(2.0, clock=lambda: now[0])

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    import asyncio

    real_sleep, asyncio.sleep = asyncio.sleep, fake_sleep  # type: ignore[assignment]
    try:
        await spacing.wait()
        now[0] += 0.5
        await spacing.wait()
        now[0] += 5.0
        await spacing.wait()
    finally:
        asyncio.sleep = real_sleep  # type: ignore[assignment]
    assert slept == [1.5]
