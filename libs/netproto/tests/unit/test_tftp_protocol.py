"""TFTP packets and option negotiation: tables of good and malformed packets, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpm_netproto import tftp as p


def test_a_read_request_with_options_round_trips() -> None:
    req = p.parse(p.request("undionly.kpxe", {"blksize": "1468", "tsize": "0", "windowsize": "8"}))
    assert req == p.Request(p.RRQ, "undionly.kpxe", "octet", {"blksize": "1468", "tsize": "0", "windowsize": "8"})
    assert p.parse(p.ack(7)) == p.Ack(7)
    assert p.parse(p.data(65536 + 3, b"xyz")) == p.Data(3, b"xyz")  # block numbers wrap
    assert p.parse(p.error(p.E_NOT_FOUND, "nope")) == p.Error(p.E_NOT_FOUND, "nope")
    assert p.parse(p.oack({"blksize": "1468"})) == p.OAck({"blksize": "1468"})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\x01", "too short"),
        (b"\x00\x09\x00\x00", "unknown opcode 9"),
        (b"\x00\x01file\x00octet", "NUL-terminated"),
        (b"\x00\x01file\x00", "file name, a mode"),
        (b"\x00\x01\x00octet\x00", "empty file name"),
        (b"\x00\x01file\x00mail\x00", "mode 'mail'"),
        (b"\x00\x01file\x00octet\x00blksize\x00", "pairs"),
        (b"\x00\x01fil\xffe\x00octet\x00", "non-ASCII"),
        (b"\x00\x04\x00\x01\x00", "ACK of 5 bytes"),
        (b"\x00\x01" + b"a" * 2000 + b"\x00octet\x00", "request of"),
    ],
)
def test_malformed_packets_give_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(p.Malformed, match=reason):
        p.parse(raw)


@pytest.mark.parametrize(
    ("requested", "blksize", "window", "accepted"),
    [
        ({}, 512, 1, {}),
        ({"blksize": "1468", "tsize": "0"}, 1468, 1, {"blksize": "1468", "tsize": "1000"}),
        ({"blksize": "65464", "windowsize": "500"}, 1468, 64, {"blksize": "1468", "windowsize": "64"}),
        ({"blksize": "4", "windowsize": "0", "timeout": "999"}, 512, 1, {}),  # out of range: ignored
        ({"blksize": "-1", "tsize": "12", "multicast": ""}, 512, 1, {}),  # tsize must be 0 in a read
        ({"timeout": "5", "windowsize": "8"}, 512, 8, {"timeout": "5", "windowsize": "8"}),
    ],
)
def test_negotiation(requested, blksize, window, accepted) -> None:
    t = p.negotiate(requested, file_size=1000)
    assert (t.blksize, t.windowsize, t.accepted) == (blksize, window, accepted)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_give_a_reason(raw: bytes) -> None:
    with contextlib.suppress(p.Malformed):
        p.parse(raw)
