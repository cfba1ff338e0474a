"""The multicast sessions read model's pure part: a session's outcome from its members' execution
states (no event says a session ended), and the view the API answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dpm_api.sessions import session_view, summary


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        ([], "running"),
        (["running", "completed"], "running"),
        (["ready"], "running"),
        (["unknown", "completed"], "running"),
        (["completed", "completed"], "completed"),
        (["failed"], "failed"),
        (["suspended", "suspended"], "suspended"),
        (["completed", "failed"], "mixed"),
    ],
)
def test_the_outcome_is_running_until_every_member_is_done(states: list[str], outcome: str) -> None:
    assert summary(states) == outcome


def test_the_view_names_members_and_ends_with_the_last_member() -> None:
    sid, scenario, e1, e2, m1, m2 = (uuid.uuid4() for _ in range(6))
    t0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    row = (sid, scenario, "golden", "239.1.1.1", "max-targets", t0, [m1, m2], [e1, e2])
    members = {
        e1: (e1, m1, "pc-1", "completed", None, t0 + timedelta(minutes=5)),
        e2: (e2, m2, None, "failed", "DPM-E116", t0 + timedelta(minutes=9)),
    }
    view = session_view(row, members)
    assert view["outcome"] == "mixed" and view["ended_at"] == (t0 + timedelta(minutes=9)).isoformat()
    assert [(m["machine"], m["state"], m["code"]) for m in view["members"]] == [
        ("pc-1", "completed", None),
        (str(m2), "failed", "DPM-E116"),  # a machine without a name shows its id
    ]
    assert view["counts"] == {"completed": 1, "failed": 1} and view["scenario"] == "golden"
    running = session_view(row, {e1: members[e1]})  # e2's execution is not in the read model
    assert running["outcome"] == "running" and running["ended_at"] is None
    assert running["members"][1]["state"] == "unknown"
