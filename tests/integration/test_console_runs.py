"""Scenarios and executions in the console, in a real browser (Debian's chromium, driven by
Playwright) against a real api: an operator creates a scenario with the form (a refused field shows
the API's own code beside it), previews a run on simulated lab machines (the dry run), confirms it,
and watches it complete on the executions page without reloading (a marker set in the window
survives: the rows changed by push). An injected failed execution shows its code and remedy and is
cleared from the console; a queued one is suspended; a scenario named like an XSS probe is text and no
dialog opens. A viewer sees no run, clear or suspend control, and its forged posts are refused."""

from __future__ import annotations

import asyncio
import os
import re
import uuid

import httpx
import pytest

from dpm_lab.sim import Lab, fleet
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ChunkSent,
    ExecutionFailed,
    ExecutionQueued,
    ExecutionWaiting,
    MulticastStartRequested,
    SuspendRequested,
)
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id

from .conftest import lab_setup
from .console_kit import XSS, add_users, browser, logged_in, post_form

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here

LAB = 2
MIB = 1 << 20


async def test_create_a_scenario_run_it_on_lab_machines_and_watch_it_complete_by_push(lab_stack, auth, browser) -> None:
    from playwright.async_api import expect

    api, pxe, scheduler, config = lab_stack(concurrency=2)
    machines = fleet(LAB)
    stop = asyncio.Event()
    async with running(api, headers=auth) as a, running(pxe), running(scheduler), httpx.AsyncClient(timeout=10) as http:
        lab_task = asyncio.create_task(Lab(machines, config, http).run(stop))
        try:
            await lab_setup(a.http, machines)
            await add_users(a.http, ("operator",))
            dialogs: list[str] = []
            context, page = await logged_in(browser, a.url, "operator", dialogs)
            await page.goto(a.url + "/console/scenarios")
            await page.get_by_role("link", name="New scenario").click()
            # a refused field: the API's own code beside it, what was typed kept
            await page.get_by_label("Name", exact=True).fill("lab-check")
            await page.get_by_label("Kind", exact=True).select_option("disk-check")
            await page.get_by_label("Timeout (seconds)").fill("5")
            await page.get_by_role("button", name="Create scenario").click()
            await expect(page.locator("#summary")).to_contain_text("DPM-E436")
            await expect(page.locator("#f-timeout_seconds-error")).to_contain_text("DPM-E100")
            assert await page.get_by_label("Name", exact=True).input_value() == "lab-check"
            await expect(page.locator("[data-for-kind=restore]")).to_be_hidden()  # only the kind's own fields
            await page.get_by_label("Timeout (seconds)").fill("600")
            await page.get_by_role("button", name="Create scenario").click()
            await page.get_by_text("Scenario saved.").wait_for()
            assert await page.get_by_role("heading", level=1).text_content() == "lab-check"
            # edited: a new revision, the form filled with the saved one
            await page.get_by_role("link", name="Edit", exact=True).click()
            assert await page.get_by_label("Timeout (seconds)").input_value() == "600"
            await page.get_by_label("Timeout (seconds)").fill("900")
            await page.get_by_role("button", name="Save a new revision").click()
            await page.get_by_text("Definition (revision 2)").wait_for()
            assert (await a.http.get("/scenarios")).json()[0]["spec"]["timeout_seconds"] == 900

            # the dry run first: both lab machines would be woken; nothing is requested yet
            await page.get_by_label("Group", exact=True).select_option("loop")
            await page.get_by_role("button", name="Preview (dry run)").click()
            await expect(page.locator("#preview tbody tr")).to_have_count(LAB)
            await expect(page.locator("#preview-verdict")).to_contain_text("would be accepted")
            assert await page.locator("#preview").get_by_text("be woken (Wake-on-LAN)").count() == LAB
            assert (await a.http.get("/executions")).json() == []
            if shots := os.environ.get("DPM_SCREENSHOTS"):  # make screenshots: the dry run before confirming
                await page.screenshot(path=f"{shots}/console-scenarios-one-preview.png", full_page=True)
            await page.get_by_role("button", name="Confirm: run on these machines").click()
            await page.wait_for_url(re.compile(r"/console/executions\?run_id="))

            # watched to the end without a reload: the marker survives, the rows changed by push
            await page.evaluate("window.__nav = 1")
            states = await page.locator("#executions tbody tr").evaluate_all("rs => rs.map(r => r.dataset.state)")
            assert states.count("completed") < LAB, states  # not over yet when the page was loaded
            done = page.locator("#executions tbody tr[data-state=completed]")
            await expect(done).to_have_count(LAB, timeout=120_000)
            assert await page.evaluate("window.__nav") == 1
            await expect(page.locator("[data-live-status]")).to_have_text("Finished")
            bars = page.locator("#executions tbody progress[data-field=percent]")
            assert [await bars.nth(i).evaluate("b => b.value") for i in range(LAB)] == [100] * LAB
            names = await page.locator("#executions tbody [data-field=machine]").all_text_contents()
            assert {n for n in names if n} == {m.name for m in machines}
            await context.close()
            assert dialogs == []
        finally:
            stop.set()
            await lab_task
    assert [m.wakes for m in machines] == [1] * LAB


async def append(api, stream: str, *events) -> int:
    result = await api.runtime.eventlog.append(stream, ANY_VERSION, [NewEvent(e, Metadata.new()) for e in events])
    return result.position


async def seed(api) -> dict[str, str]:
    """Users per role, two machines, a scenario named XSS, and executions of it as the scheduler
    writes them: pc-1's failed (DPM-E116), pc-2's queued."""
    await add_users(api.http)
    ids = {}
    for i, name in enumerate(("pc-1", "pc-2")):
        made = await api.http.post("/machines", json={"name": name, "macs": [f"52:54:00:ee:00:{i:02x}"]})
        assert made.status_code == 201, made.text
        ids[name] = made.json()["machine_id"]
    made = await api.http.post("/scenarios", json={"name": XSS, "spec": {"kind": "simulated"}})
    assert made.status_code == 201, made.text
    ids["scenario"] = made.json()["scenario_id"]
    spec, position = ScenarioSpec(kind="simulated"), 0
    for name in ("pc-1", "pc-2"):
        eid, mid = uuid.uuid4(), uuid.UUID(ids[name])
        queued = ExecutionQueued(execution_id=eid, run_id=uuid.uuid4(), machine_id=mid,
                                 scenario_id=uuid.UUID(ids["scenario"]), revision=1, name=XSS, spec=spec)  # fmt: skip
        then = [ExecutionFailed(execution_id=eid, machine_id=mid, code="DPM-E116", reason="the lab said no")]
        position = await append(api, stream_id(subjects.EXECUTION, eid), queued, *(then if name == "pc-1" else []))
        ids[f"{name}-execution"] = str(eid)
    assert await api.runtime.projections["executions"].wait_for(position, timeout=10)
    return ids


async def pushed_transfer(api, page, execution_id: str) -> None:
    """A ChunkSent of the execution, as the imager signals it, shows in its row as bytes, rate, time left
    and a bar. Offered to the api's live feed (as its NATS subscription does) until the page's stream,
    once subscribed, shows it."""
    from playwright.async_api import expect

    row = page.locator(f"tr[data-row='{execution_id}']")
    await expect(row.locator("progress[data-transfer-bar]")).to_be_hidden()  # no empty bar before a transfer
    chunk = ChunkSent(transfer_id=uuid.uuid4(), chunk_index=8, bytes_done=512 * MIB, bytes_total=1024 * MIB,
                      rate_bps=10 * MIB, eta_seconds=51.2, execution_id=uuid.UUID(execution_id))  # fmt: skip
    deadline = asyncio.get_running_loop().time() + 15
    while await row.locator("[data-transfer=bytes]").text_content() != "512.0 MiB of 1.0 GiB":
        assert asyncio.get_running_loop().time() < deadline, "the transfer was never shown"
        api.service.app.state.live.publish(chunk)
        await page.wait_for_timeout(200)
    assert await row.locator("[data-transfer=rate]").text_content() == "10.0 MiB/s"
    assert await row.locator("[data-transfer=eta]").text_content() == "51 s left"
    assert await row.locator("progress[data-transfer-bar]").evaluate("b => b.value / b.max") == 0.5
    await expect(row.locator("progress[data-transfer-bar]")).to_be_visible()


async def test_clear_suspend_escaping_and_a_viewers_forged_posts(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        ids = await seed(api)
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        # the XSS name is text everywhere: the list, the scenario's heading, the executions
        await page.goto(api.url + "/console/scenarios")
        await page.get_by_role("link", name=XSS, exact=True).click()
        assert await page.get_by_role("heading", level=1).text_content() == XSS
        # the new-scenario form: the multicast delivery only for the kinds that take it
        await page.goto(api.url + "/console/scenarios/new")
        delivery = page.locator("fieldset.multicast")
        for kind, shown in (("disk-check", False), ("restore", True), ("remote-update", True), ("backup", False)):
            await page.get_by_label("Kind", exact=True).select_option(kind)
            await (expect(delivery).to_be_visible() if shown else expect(delivery).to_be_hidden())
        await page.goto(api.url + "/console/executions?state=failed")
        row = page.locator(f"tr[data-row='{ids['pc-1-execution']}']")
        await expect(row.locator("[data-field=code]")).to_have_text("DPM-E116")
        assert "the lab said no" in await row.text_content()
        assert (await row.locator(".remedy").text_content() or "").strip()  # the remedy beside the code
        await expect(row.get_by_role("link", name=XSS, exact=True)).to_have_count(1)
        assert await page.locator("main img").count() == 0
        # the injected error, cleared from its row
        await row.get_by_role("button", name="Clear error pc-1").click()
        await expect(page.locator("#notice")).to_have_text(re.compile(r"Error cleared on 1 machine"))
        assert "state=failed" in page.url
        history = (await api.http.get("/executions", params={"machine": "pc-1"})).json()
        assert [x["cleared"] for x in history] == [True]
        await expect(page.locator(f"tr[data-row='{ids['pc-1-execution']}'] .when-failed")).to_be_hidden()
        cleared = page.locator(f"tr[data-row='{ids['pc-1-execution']}']")
        await expect(cleared.locator("td.step progress")).to_be_hidden()  # ended: no step bar
        assert await cleared.locator(".state").evaluate("s => getComputedStyle(s).fontWeight") == "400"
        # the queued one, suspended from its row; then the CSV of pc-2's history
        await page.goto(api.url + "/console/executions?machine=pc-2")
        await pushed_transfer(api, page, ids["pc-2-execution"])
        # every execution, one with a live transfer and one ended and cleared: no wider than the screen
        await page.goto(api.url + "/console/executions")
        await pushed_transfer(api, page, ids["pc-2-execution"])
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1366
        if shots := os.environ.get("DPM_SCREENSHOTS"):  # make screenshots: a page with a live transfer
            await page.screenshot(path=f"{shots}/console-executions-live.png")
        await page.goto(api.url + "/console/executions?machine=pc-2")
        await page.get_by_role("button", name="Suspend pc-2").click()
        await expect(page.locator("#notice")).to_have_text("Suspend requested for 1 execution.")
        suspends = [r.event for r in await api.runtime.eventlog.read_all() if isinstance(r.event, SuspendRequested)]
        assert [str(e.execution_id) for e in suspends] == [ids["pc-2-execution"]]
        async with page.expect_download() as got:
            await page.get_by_role("link", name="Export this history as CSV").click()
        csv = (await (await got.value).path()).read_text()
        assert csv.splitlines()[0].startswith("machine,scenario") and len(csv.splitlines()) == 2
        assert "pc-2" in csv and "pc-1" not in csv

        viewer_ctx, viewer = await logged_in(browser, api.url, "viewer", dialogs)
        await viewer.goto(api.url + "/console/executions")
        await expect(viewer.locator("#executions tbody tr")).to_have_count(2)
        for name in ("Clear errors", "Suspend", "Bulk clear", "Clear error pc-1"):
            assert await viewer.get_by_role("button", name=name).count() == 0, name
        assert await viewer.get_by_role("checkbox").count() == 0
        csrf = await viewer.locator("input[name=csrf]").first.get_attribute("value")
        forged = await post_form(viewer, "/console/executions/act", [("csrf", csrf), ("clear", ids["pc-1-execution"])])
        assert forged.status == 403 and "DPM-E404" in await viewer.locator("main").text_content()
        await viewer.goto(f"{api.url}/console/scenarios/{ids['scenario']}")
        assert await viewer.get_by_role("button", name=re.compile("Preview|Run|Confirm")).count() == 0
        assert await viewer.get_by_role("link", name="Edit").count() == 0
        body = [("csrf", csrf), ("machines", "pc-2")]
        forged = await post_form(viewer, f"/console/scenarios/{ids['scenario']}/run", body)
        assert forged.status == 403 and "DPM-E404" in await viewer.locator("main").text_content()
        assert len((await api.http.get("/executions")).json()) == 2  # nothing was run
        await viewer_ctx.close()
        await context.close()
        assert dialogs == []


async def test_a_gathering_multicast_session_its_members_and_start_now(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("operator", "viewer"))
        spec = {"kind": "restore", "multicast": {"group": "239.1.1.1", "max_targets": 5}, "params": {"image": "gold"}}
        made = await api.http.post("/scenarios", json={"name": "golden", "spec": spec})
        assert made.status_code == 201, made.text
        scenario_id, saved = uuid.UUID(made.json()["scenario_id"]), ScenarioSpec.model_validate(made.json()["spec"])

        async def gathers(i: int) -> None:
            """Machine pc-<i> registered, its execution queued and ready for the session."""
            made = await api.http.post("/machines", json={"name": f"pc-{i}", "macs": [f"52:54:00:ef:00:{i:02x}"]})
            eid, mid = uuid.uuid4(), uuid.UUID(made.json()["machine_id"])
            queued = ExecutionQueued(execution_id=eid, run_id=run, machine_id=mid, scenario_id=scenario_id,
                                     revision=1, name="golden", spec=saved)  # fmt: skip
            waiting = ExecutionWaiting(execution_id=eid, machine_id=mid)
            position = await append(api, stream_id(subjects.EXECUTION, eid), queued, waiting)
            assert await api.runtime.projections["executions"].wait_for(position, timeout=10)

        run = uuid.uuid4()
        for i in (1, 2):
            await gathers(i)
        dialogs: list[str] = []
        viewer_ctx, viewer = await logged_in(browser, api.url, "viewer", dialogs)
        await viewer.goto(api.url + "/console/sessions")
        await viewer.get_by_role("heading", name=re.compile("golden")).wait_for()
        assert await viewer.get_by_role("button", name=re.compile("Start now")).count() == 0
        await viewer_ctx.close()
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/sessions")
        await expect(page.get_by_text("2 of 2 machine(s) gathering")).to_have_count(1)
        members = page.get_by_role("table", name="Members of golden")
        await expect(members.locator("tbody tr")).to_have_count(2)
        assert await members.get_by_role("link", name="pc-1").count() == 1
        # a third machine gathers: the page shows it by push (the marker survives: no reload)
        await expect(page.locator("[data-live-status]")).to_have_text("Live")
        await page.evaluate("window.__nav = 1")
        await gathers(3)
        await expect(page.get_by_text("3 of 3 machine(s) gathering")).to_have_count(1)
        await expect(members.locator("tbody tr")).to_have_count(3)
        assert await page.evaluate("window.__nav") == 1
        await page.get_by_role("button", name="Start now golden").click()
        await page.get_by_text("Start now requested.").wait_for()
        # deleted only after its confirmation page
        await page.get_by_role("link", name="golden").click()
        await page.get_by_role("link", name="Delete", exact=True).click()
        assert (await api.http.get("/scenarios")).json() != []
        await page.get_by_role("button", name="Delete golden").click()
        await page.get_by_text("Scenario deleted.").wait_for()
        assert (await api.http.get("/scenarios")).json() == []
        started = [
            r.event for r in await api.runtime.eventlog.read_all() if isinstance(r.event, MulticastStartRequested)
        ]
        assert [e.scenario_id for e in started] == [scenario_id]
        await context.close()
        assert dialogs == []
