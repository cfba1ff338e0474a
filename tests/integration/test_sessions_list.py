"""Multicast sessions stay listed after they finished: a started session is in ``GET /sessions``
(newest first) and on /console/sessions with its members, running while they run, then with its
outcome and end once every member's execution is done (no event says a session ended). The events
are appended as the scheduler writes them; a scenario named like an XSS probe stays text."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionQueued,
    ExecutionWaiting,
    MulticastSessionStarted,
)
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id

from .console_kit import XSS, add_users, browser, logged_in

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here


async def append(api, stream: str, *events) -> int:  # type: ignore[no-untyped-def]
    result = await api.runtime.eventlog.append(stream, ANY_VERSION, [NewEvent(e, Metadata.new()) for e in events])
    return result.position


async def settled(api, position: int) -> None:  # type: ignore[no-untyped-def]
    for name in ("executions", "multicast_sessions"):
        assert await api.runtime.projections[name].wait_for(position, timeout=10)


async def test_a_finished_session_is_listed_with_its_outcome(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("viewer",))
        spec = {"kind": "restore", "multicast": {"group": "239.3.3.3", "max_targets": 2}, "params": {"image": "g"}}
        made = await api.http.post("/scenarios", json={"name": XSS, "spec": spec})
        assert made.status_code == 201, made.text
        scenario_id, saved = uuid.UUID(made.json()["scenario_id"]), ScenarioSpec.model_validate(made.json()["spec"])
        run, members = uuid.uuid4(), []
        for i in (1, 2):
            r = await api.http.post("/machines", json={"name": f"mc-{i}", "macs": [f"52:54:00:ee:01:{i:02x}"]})
            eid, mid = uuid.uuid4(), uuid.UUID(r.json()["machine_id"])
            queued = ExecutionQueued(execution_id=eid, run_id=run, machine_id=mid, scenario_id=scenario_id,
                                     revision=1, name=XSS, spec=saved)  # fmt: skip
            await append(
                api, stream_id(subjects.EXECUTION, eid), queued, ExecutionWaiting(execution_id=eid, machine_id=mid)
            )
            members.append((eid, mid))
        session_id = uuid.uuid4()
        started = MulticastSessionStarted(session_id=session_id, scenario_id=scenario_id, group="239.3.3.3",
                                          machine_ids=tuple(m for _, m in members),
                                          execution_ids=tuple(e for e, _ in members), reason="max-targets")  # fmt: skip
        await settled(api, await append(api, stream_id(subjects.SESSION, session_id), started))
        (listed,) = (await api.http.get("/sessions")).json()
        assert listed["session_id"] == str(session_id) and listed["outcome"] == "running"
        assert listed["reason"] == "max-targets" and listed["group"] == "239.3.3.3" and listed["ended_at"] is None
        assert [m["machine"] for m in listed["members"]] == ["mc-1", "mc-2"]

        (e1, m1), (e2, m2) = members
        await append(api, stream_id(subjects.EXECUTION, e1), ExecutionCompleted(execution_id=e1, machine_id=m1))
        failed = ExecutionFailed(execution_id=e2, machine_id=m2, code="DPM-E116", reason="the image is corrupt")
        await settled(api, await append(api, stream_id(subjects.EXECUTION, e2), failed))
        (done,) = (await api.http.get("/sessions")).json()
        assert done["outcome"] == "mixed" and done["ended_at"] is not None
        assert [(m["state"], m["code"]) for m in done["members"]] == [("completed", None), ("failed", "DPM-E116")]
        assert (await api.http.get("/sessions", params={"limit": 0})).status_code == 422
        async with httpx.AsyncClient(base_url=api.url) as anonymous:
            assert (await anonymous.get("/sessions")).status_code == 401

        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "viewer", dialogs)
        await page.goto(api.url + "/console/sessions")
        await expect(page.get_by_text("No multicast session is gathering or running.")).to_have_count(1)
        recent = page.get_by_role("table", name=re.compile("newest first"))
        row = recent.locator("tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.get_by_role("rowheader")).to_have_text(XSS)
        await expect(row.locator("td.state")).to_have_text("mixed")
        await expect(row).to_contain_text("mc-2 (failed)")
        assert await row.get_by_role("link", name="mc-1").count() == 1
        await context.close()
        assert dialogs == []
