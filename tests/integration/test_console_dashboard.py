"""The console's dashboard in a real browser against a real api: the figures of a seeded state (one
execution of each kind, machines online, offline and outdated, a committed backup), the failed run's
attention item linking to where it is cleared, and figures changing by push (the page is never
reloaded: ``window.__nav`` set before the change is still set after it). No dialog opens.

The first test appends executions, the machines' presence and a backup's commit as the scheduler, the
agent gateway and the imager write them (none of them runs there): the dashboard reads only the read
models and the log. The second runs a real disk check in the lab (api, pxe, scheduler, simulated
machine) with no deploy kernel, so it fails for real (DPM-E430) while the dashboard is open."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

import httpx
import pytest

from dpm_lab.sim import Lab, SimMachine, fleet
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ExecutionFailed,
    ExecutionQueued,
    ExecutionSuspended,
    ImageCaptured,
    MachineCameOnline,
    StepRequested,
)
from dpm_schemas.events.imaging import image_id
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id
from dpm_schemas.version import DPM_VERSION

from .conftest import lab_setup
from .console_kit import XSS, add_users, browser, logged_in

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here

GIB = 1024**3
SPEC = ScenarioSpec(kind="simulated")


async def append(api, stream: str, *events) -> int:
    result = await api.runtime.eventlog.append(stream, ANY_VERSION, [NewEvent(e, Metadata.new()) for e in events])
    return result.position


async def execution(api, machine_id: str, name: str, *then) -> tuple[uuid.UUID, int]:
    """An execution of scenario ``name`` on the machine, queued, then ``then`` (factories of its id)."""
    eid, mid = uuid.uuid4(), uuid.UUID(machine_id)
    queued = ExecutionQueued(execution_id=eid, run_id=uuid.uuid4(), machine_id=mid, scenario_id=uuid.uuid4(),
                             revision=1, name=name, spec=SPEC)  # fmt: skip
    position = await append(api, stream_id(subjects.EXECUTION, eid), queued, *(f(eid, mid) for f in then))
    return eid, position


def running_step(eid: uuid.UUID, mid: uuid.UUID) -> StepRequested:
    return StepRequested(execution_id=eid, machine_id=mid, step="simulate", spec=SPEC)


def unconfirmed(eid: uuid.UUID, mid: uuid.UUID) -> ExecutionSuspended:
    return ExecutionSuspended(execution_id=eid, machine_id=mid, confirmed=False, reason="no answer to the stop")


def failure(eid: uuid.UUID, mid: uuid.UUID) -> ExecutionFailed:
    return ExecutionFailed(execution_id=eid, machine_id=mid, code="DPM-E116", reason="the lab said no")


async def seed(api) -> tuple[dict[str, str], uuid.UUID]:
    """Three machines (pc-new online at the server's version, pc-old online at an old one, pc-off
    offline), a queued, a running and a failed execution, an interrupt the machine never confirmed,
    and a 1 GiB backup just committed."""
    await add_users(api.http, ("admin",))
    ids = {}
    for i, name in enumerate(("pc-new", "pc-old", "pc-off")):
        made = await api.http.post("/machines", json={"name": name, "macs": [f"52:54:00:dd:00:{i:02x}"]})
        assert made.status_code == 201, made.text
        ids[name] = made.json()["machine_id"]
    for name, version in (("pc-new", DPM_VERSION), ("pc-old", "0.0.1")):
        came = MachineCameOnline(machine_id=uuid.UUID(ids[name]), agent_version=version)
        await append(api, stream_id(subjects.AGENT, ids[name]), came)
    await execution(api, ids["pc-off"], "inventory")
    running_id, _ = await execution(api, ids["pc-new"], "wipe", running_step)
    await execution(api, ids["pc-old"], "restore", running_step, unconfirmed)
    _, position = await execution(api, ids["pc-off"], "check", failure)
    iid = image_id("lab/golden")
    captured = ImageCaptured(image_id=iid, image="lab/golden", transfer_id=uuid.uuid4(), manifest="a" * 64,
                             source="disk", mode="used", size_bytes=2 * GIB, captured_bytes=GIB, stored_bytes=GIB // 2,
                             chunk_count=256, sector_size=512, digest="b" * 64)  # fmt: skip
    position = max(position, await append(api, stream_id(subjects.IMAGE, iid), captured))
    for projection in ("machines", "executions"):
        assert await api.runtime.projections[projection].wait_for(position, timeout=10)
    return ids, running_id


async def test_the_dashboard_shows_the_fleet_and_changes_by_push(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        ids, running_id = await seed(api)
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "admin", dialogs)
        await page.goto(api.url + "/console/dashboard")
        count = page.locator("[data-count]")
        assert {k: await count.and_(page.locator(f"[data-count={k}]")).text_content() for k in
                ("running", "failed", "waiting", "online", "machines")} == {
            "running": "1", "failed": "1", "waiting": "1", "online": "2", "machines": "3"}  # fmt: skip

        # the failed run's item links to its machine's failed executions; the old agent to its machine
        failed = page.locator("[data-attention=failed]").get_by_role("link")
        await expect(failed).to_have_text("pc-off: check failed")
        assert await failed.get_attribute("href") == f"/console/executions?machine={ids['pc-off']}&state=failed"
        interrupt = page.locator("[data-attention=interrupts]").get_by_role("link")
        await expect(interrupt).to_have_text("pc-old: restore interrupted, never confirmed")
        assert await interrupt.get_attribute("href") == f"/console/executions?machine={ids['pc-old']}&state=suspended"
        outdated = page.locator("[data-attention=outdated]").get_by_role("link")
        await expect(outdated).to_have_text("pc-old")
        assert await outdated.get_attribute("href") == "/console/machines?q=pc-old"
        # the backup is in the newest 5 minutes, in the chart's table and as a bar drawn to scale
        cells = page.locator("table.buckets tbody tr").last.locator("td")
        assert [await cells.nth(i).text_content() for i in (1, 2)] == ["1", "1.0 GiB"]
        assert float(await page.locator("svg.chart rect.bar").last.get_attribute("height") or 0) > 50

        # pushed: the running execution fails (as the scheduler writes it); the page is never reloaded
        await expect(page.locator("[data-live-status]")).to_have_text("Live")
        await page.evaluate("window.__nav = 1")
        await append(api, stream_id(subjects.EXECUTION, running_id), failure(running_id, uuid.UUID(ids["pc-new"])))
        await expect(page.locator("[data-count=failed]")).to_have_text("2")
        await expect(page.locator("[data-count=running]")).to_have_text("0")
        await expect(failed).to_have_count(2)
        assert await page.evaluate("window.__nav") == 1
        await context.close()
        assert dialogs == []


async def test_the_fragment_wants_a_session(api_service, auth) -> None:
    """console.js swaps the fragment in only on success: a visitor without a session gets 401, not the
    login page (which fetch would follow and swap into the dashboard); so does the stream."""
    async with running(api_service(), headers=auth) as api:
        for path in ("/console/dashboard/live", "/console/dashboard/stream"):
            answer = await api.http.get(path)  # a bearer header counts for nothing here
            assert answer.status_code == 401 and "DPM-E401" in answer.text
        page = await api.http.get("/console/dashboard")
        assert page.status_code == 303 and page.headers["location"] == "/console/login"


async def powers_off(_machine: SimMachine) -> str:
    """The machine's own OS, booted from its disk once the failed execution is over, shuts it down."""
    return "off"


async def test_a_real_failure_and_an_agent_coming_online_reach_the_open_dashboard(lab_stack, auth, browser) -> None:
    """Pushed, both ways the stream learns of changes: a machine coming online (the shared digest)
    and a disk check failing in the lab (the live feed). A scenario named like HTML shows as text."""
    from playwright.async_api import expect

    api, pxe, scheduler, config = lab_stack(concurrency=1, deploy_env=False)
    machines, stop = fleet(1), asyncio.Event()
    async with (
        running(api, headers=auth) as a,
        running(pxe),
        running(scheduler),
        httpx.AsyncClient(timeout=10) as http,
    ):
        lab = asyncio.create_task(Lab(machines, config, http, run_os=powers_off).run(stop))
        try:
            await add_users(a.http, ("viewer",))
            await lab_setup(a.http, machines)
            made = await a.http.post("/machines", json={"name": "pc-agent", "macs": ["52:54:00:dd:01:01"]})
            assert made.status_code == 201, made.text
            made_check = await a.http.post("/scenarios", json={"name": XSS, "spec": {"kind": "disk-check"}})
            assert made_check.is_success, made_check.text
            dialogs: list[str] = []
            context, page = await logged_in(browser, a.url, "viewer", dialogs)
            await page.goto(a.url + "/console/dashboard")
            await expect(page.locator("[data-live-status]")).to_have_text("Live")
            await expect(page.locator("[data-count=machines]")).to_have_text("2")
            await expect(page.locator("[data-count=online]")).to_have_text("0")
            await expect(page.locator("[data-count=failed]")).to_have_text("0")
            await page.evaluate("window.__nav = 1")

            came = MachineCameOnline(machine_id=uuid.UUID(made.json()["machine_id"]), agent_version="0.0.1")
            await append(a, stream_id(subjects.AGENT, made.json()["machine_id"]), came)
            await expect(page.locator("[data-count=online]")).to_have_text("1")
            await expect(page.locator("[data-attention=outdated]").get_by_role("link")).to_have_text("pc-agent")

            run = await a.http.post(f"/scenarios/{quote(XSS, safe='')}/runs", json={"group": "loop"})
            assert run.is_success, run.text
            await expect(page.locator("[data-count=failed]")).to_have_text("1", timeout=30_000)
            item = page.locator("[data-attention=failed] li")
            await expect(item.get_by_role("link")).to_have_text(f"{machines[0].name}: {XSS} failed")
            await expect(item.locator("code")).to_have_text("DPM-E430")
            await expect(page.locator("[data-count=running]")).to_have_text("0")
            assert await page.evaluate("window.__nav") == 1
            await context.close()
            assert dialogs == []
        finally:
            stop.set()
            await asyncio.wait_for(lab, 10)
