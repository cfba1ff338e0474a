"""Issue 12 (review of items 5 and 8): a peer's float is finite. msgpack carries inf and NaN as they
are, and a frame holding one made the receiver's int()/timers raise (OverflowError, ValueError)."""

from __future__ import annotations

import math
import uuid

import msgpack
import pytest

from dpm_schemas import agent_protocol as ap

BAD = [math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("value", BAD)
def test_a_welcome_with_a_non_finite_heartbeat_interval_is_not_a_frame(value: float) -> None:
    raw = msgpack.packb({"kind": "welcome", "machine_id": str(uuid.uuid4()), "heartbeat_interval": value,
                         "server_version": "1.0"})  # fmt: skip
    with pytest.raises(ap.FrameError):
        ap.decode(raw)


@pytest.mark.parametrize("value", BAD)
def test_a_result_entry_with_a_non_finite_mtime_is_not_a_frame(value: float) -> None:
    entry = {"name": "f", "type": "file", "size": 1, "mtime": value}
    raw = msgpack.packb({"kind": "result", "id": str(uuid.uuid4()), "ok": True, "entries": [entry]})
    with pytest.raises(ap.FrameError):
        ap.decode(raw)
    entry["mtime"] = 1.5e9
    frame = ap.decode(msgpack.packb({"kind": "result", "id": str(uuid.uuid4()), "ok": True, "entries": [entry]}))
    assert isinstance(frame, ap.CommandResult) and frame.entries[0].mtime == 1.5e9
