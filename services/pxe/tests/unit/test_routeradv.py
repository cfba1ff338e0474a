"""The empty router advertisement and which solicitations get one (RFC 4861 §4.1-4.2, §6.1.1)."""

from __future__ import annotations

import struct

import pytest

from dpm_pxe.domain import routeradv as ra

RS = struct.pack("!BBHI", 133, 0, 0, 0)


def test_the_advertisement_offers_nothing_and_names_our_mac() -> None:
    packet = ra.advertisement(ra.parse_mac("52:54:00:ab:cd:ef\n"))
    kind, code, _sum, hops, flags, lifetime, reachable, retrans = struct.unpack("!BBHBBHII", packet[:16])
    assert (kind, code, hops, flags, lifetime, reachable, retrans) == (134, 0, 0, 0, 0, 0, 0)
    assert packet[16:] == bytes([1, 1, 0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF])  # source link-layer option
    assert ra.advertisement(None) == packet[:16]
    assert ra.parse_mac("not a mac") is None and ra.parse_mac("52:54:00:ab:cd") is None


def test_only_link_local_solicitations_that_crossed_no_router_are_answered() -> None:
    assert ra.is_solicitation(RS, "fe80::1%eth0", 255)
    assert ra.is_solicitation(RS + b"\x01\x01" + bytes(6), "::", 255)  # a host with no address yet
    assert ra.is_solicitation(RS, "fe80::1", None)  # no hop limit delivered: the kernel's filter applies
    assert not ra.is_solicitation(RS, "fe80::1", 64)  # came through a router
    assert not ra.is_solicitation(RS, "2001:db8::1", 255)  # not link-local
    assert not ra.is_solicitation(RS, "garbage", 255)
    assert not ra.is_solicitation(RS[:7], "fe80::1", 255)
    assert not ra.is_solicitation(bytes([133, 1]) + RS[2:], "fe80::1", 255)  # code not 0
    assert not ra.is_solicitation(bytes([134]) + RS[1:], "fe80::1", 255)  # an advertisement


def test_a_flood_of_solicitations_is_answered_once_a_gap() -> None:
    pacer = ra.Pacer(gap=1.0)
    assert pacer.solicited(10.0) == 0.0  # the first at once
    assert pacer.solicited(10.1) is None  # one is scheduled: it answers this one too
    pacer.sent(10.0)
    assert pacer.solicited(10.2) == pytest.approx(0.8)  # the next waits out the gap
    assert pacer.solicited(10.3) is None
    pacer.sent(11.0)
    assert pacer.solicited(15.0) == 0.0
