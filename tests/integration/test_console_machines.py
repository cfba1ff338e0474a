"""The console's machine pages in a real browser against a real api: bulk actions on 20 selected
machines (power off and reboot answered by a stand-in agent on NATS, run a scenario, suspend, clear
errors), each through the REST route's own function; a viewer sees no checkbox or button and its
forged posts are refused (DPM-E404); the group tree with counts and the current execution at a
glance, refreshed by push while the page is open (the checked boxes, the query and the focus kept;
a viewer's list too); a machine's page with its inventory, its disks drawn to scale and its history with codes
and remedies; register, edit and delete (behind a confirmation page); the CSV import's diff preview
(of an uploaded file and of pasted text), then applying it, a stale preview refused (DPM-E433) and a
file that is not UTF-8 refused (DPM-E178); the export. Names an API of today refuses
(``console_kit.XSS`` as a machine and group name, as an older log could hold them) are put in the
read models directly and shown as text, with no dialog."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, agent_protocol, subjects
from dpm_schemas.events import ExecutionQueued, MachineCameOnline, MachineWentOffline
from dpm_schemas.events.scenarios import ScenarioSpec
from dpm_schemas.ids import stream_id

from .console_kit import XSS, add_users, browser, logged_in, post_form

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here

BULK = "/console/machines/bulk"
SELECTED = 20


async def seed(api: Any) -> dict[str, str]:
    """Users per role, a group, SELECTED machines named bulk-NN and 3 others, a scenario; names to ids."""
    await add_users(api.http)
    assert (await api.http.put("/groups/lab-a", json={})).is_success
    assert (await api.http.put("/groups/lab-a.rack1", json={})).is_success
    rows = [f"bulk-{i:02d},52:54:00:dd:00:{i:02x},,10.4.0.{i},lab-a.rack1,\n" for i in range(SELECTED)]
    rows += [f"other-{i},52:54:00:dd:01:{i:02x},,,lab-a,\n" for i in range(3)]
    csv = "name,macs,smbios_uuid,ip,group,os_type\n" + "".join(rows)
    imported = await api.http.post("/machines/import", content=csv, headers={"Content-Type": "text/csv"})
    assert imported.is_success, imported.text
    made = await api.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
    assert made.is_success, made.text
    return {m["name"]: m["machine_id"] for m in (await api.http.get("/machines")).json()}


async def stand_in_agents(nc: Any, refuse: str) -> list[tuple[str, str]]:
    """Answer every agent command on NATS as the gateway would: ok, but machine ``refuse`` fails reboots."""
    seen: list[tuple[str, str]] = []

    async def answer(msg: Any) -> None:
        *_, machine, action = msg.subject.split(".")
        cmd = agent_protocol.decode(msg.data)
        seen.append((machine, action))
        ok = (machine, action) != (refuse, "reboot")
        result = agent_protocol.CommandResult(id=cmd.id, ok=ok, message="" if ok else "the power driver failed")
        await msg.respond(agent_protocol.encode(result))

    await nc.subscribe("dpm.cmd.agent.*.*", cb=answer)
    await nc.flush()
    return seen


async def count(api: Any, sql: str, *params: object) -> int:
    async with api.runtime.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return int((await cur.fetchone())[0])


async def bulk(page: Any, button: str) -> None:
    """Select every machine of the search "bulk-" (the page's select-all box) and press ``button``."""
    await page.goto(page.url.split("/console/")[0] + "/console/machines?q=bulk-")
    await page.get_by_label("Select every machine on this page").check()
    assert await page.locator("input[name=machine]:checked").count() == SELECTED
    await page.get_by_role("button", name=button, exact=True).click()


async def test_bulk_actions_on_20_machines_and_a_viewer(
    api_service, scheduler_service, auth, browser, nats_server
) -> None:
    nc = await nats.connect(nats_server.url)
    scheduler = scheduler_service(scheduler_tick=0.1, scheduler_concurrency=SELECTED)
    async with running(api_service(), headers=auth) as api, running(scheduler):
        ids = await seed(api)
        seen = await stand_in_agents(nc, refuse=ids["bulk-00"])
        dialogs: list[str] = []
        ctx, page = await logged_in(browser, api.url, "operator", dialogs)
        # power off: the agent's shutdown command, to each of the 20
        await bulk(page, "Power off")
        await page.get_by_text(f"Power off requested for {SELECTED} machines.").wait_for()
        assert sorted(m for m, a in seen if a == "shutdown") == sorted(ids[f"bulk-{i:02d}"] for i in range(SELECTED))
        # reboot: one agent refuses; the others reboot, the page names the refusal and its code
        await bulk(page, "Reboot")
        await page.get_by_role("heading", name=f"Reboot: {SELECTED - 1} of {SELECTED} done").wait_for()
        refused = page.get_by_role("row", name=re.compile("bulk-00"))
        assert "DPM-E" in await refused.text_content() and "the power driver failed" in await refused.text_content()
        assert len([a for _m, a in seen if a == "reboot"]) == SELECTED
        # suspend with nothing in progress: refused as a whole
        await bulk(page, "Suspend")
        await page.get_by_text("DPM-E434").wait_for()
        # run the scenario on the 20: each gets an execution (the scheduler queues and wakes them), shown
        # at a glance in the list
        await page.goto(api.url + "/console/machines?q=bulk-")
        await page.get_by_label("Scenario", exact=True).select_option("check")
        await bulk(page, "Run scenario")
        await page.get_by_text(f"Scenario run requested for {SELECTED} machines.").wait_for()

        async def in_state(*states: str) -> int:
            return await count(api, "SELECT count(*) FROM api.executions WHERE state = ANY(%s)", list(states))

        # all of them started (a slot each), so no start races the suspend below
        await eventually(lambda: in_state("powering-on"), until=lambda n: n == SELECTED, timeout=20,
                         what="every execution powering on")  # fmt: skip
        await page.goto(api.url + "/console/machines?q=bulk-")
        assert await page.locator("td.current", has_text="powering-on check").count() == SELECTED
        # suspend them: each machine's execution in progress gets a SuspendRequested
        await bulk(page, "Suspend")
        await page.get_by_text(f"Suspend requested for {SELECTED} machines.").wait_for()
        assert await count(api, "SELECT count(*) FROM events WHERE type = 'SuspendRequested'") == SELECTED

        async def states() -> list[tuple[str, str | None]]:
            async with api.runtime.pool.connection() as conn:
                cur = await conn.execute("SELECT state, code FROM api.executions ORDER BY state")
                return [tuple(r) for r in await cur.fetchall()]

        await eventually(states, until=lambda s: [x for x, _ in s].count("suspended") == SELECTED, timeout=20,
                         what="every execution suspended")  # fmt: skip
        # clear errors: one MachineStatusCleared per selected machine
        await bulk(page, "Clear errors")
        await page.get_by_text(f"Errors cleared on {SELECTED} machines.").wait_for()
        assert await count(api, "SELECT count(*) FROM events WHERE type = 'MachineStatusCleared'") == SELECTED

        # a viewer: no checkbox, no bulk button, no register or import link; its forged posts are refused
        vctx, viewer = await logged_in(browser, api.url, "viewer", dialogs)
        await viewer.goto(api.url + "/console/machines?q=bulk-")
        assert await viewer.get_by_role("checkbox").count() == 0
        for name in ("Power on", "Power off", "Reboot", "Suspend", "Clear errors", "Run scenario"):
            assert await viewer.get_by_role("button", name=name, exact=True).count() == 0
        assert await viewer.get_by_role("link", name="Register a machine").count() == 0
        csrf = await viewer.locator("input[name=csrf]").first.get_attribute("value")
        before = len(seen)
        for action in ("power_off", "reboot", "suspend", "clear", "run"):
            fields = [("csrf", csrf), ("action", action), ("scenario", "check"), ("machine", ids["bulk-01"])]
            answer = await post_form(viewer, BULK, fields)
            assert answer.status == 403 and "DPM-E404" in await viewer.locator("main").text_content(), action
        await viewer.goto(f"{api.url}/console/machines/{ids['bulk-01']}")
        assert await viewer.get_by_role("link", name=re.compile("(Edit|Delete) this machine")).count() == 0
        one = f"/console/machines/{ids['bulk-01']}"
        for path in ("/console/machines/new", f"{one}/edit", f"{one}/delete", "/console/machines/import"):
            answer = await post_form(viewer, path, [("csrf", csrf), ("confirm", "yes"), ("name", "x")])
            assert answer.status == 403, path
        assert len(seen) == before and await count(api, "SELECT count(*) FROM api.machines") == SELECTED + 3
        await vctx.close()
        await ctx.close()
        assert dialogs == []
    await nc.close()


DISKS = [
    {
        "device": "/dev/sda",
        "size": 100 * 1024**3,
        "sector_size": 512,
        "physical_sector_size": 512,
        "label": "gpt",
        "partitions": [  # the type as the agent reports it (a GUID), and as an sgdisk short code
            {"number": 1, "start": 2048, "size": 1024**3 // 512, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
             "filesystem": "vfat", "name": "EFI"},
            {"number": 2, "start": 2048 + 1024**3 // 512, "size": 49 * 1024**3 // 512, "type": "8300",
             "filesystem": "ext4", "name": "root"},
        ],
    }
]  # fmt: skip


async def facts(api: Any, machine_id: str) -> None:
    """An inventory, a disk check's layout and a failed execution, as the read models hold them."""
    mid, now = uuid.UUID(machine_id), datetime.now(UTC)
    async with api.runtime.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO api.inventories (machine_id, os, kernel, packages, reported_at, position)"
            " VALUES (%s, 'Debian 12', '6.1.0-18-amd64', %s, %s, 1)",
            (mid, ["openssh-server 1:9.2", "rsync 3.2.7"], now),
        )
        await conn.execute(
            "INSERT INTO api.disk_layouts (machine_id, disks, checked_at, position) VALUES (%s, %s::jsonb, %s, 1)",
            (mid, json.dumps(DISKS), now),
        )
        await conn.execute(
            "INSERT INTO api.executions (execution_id, run_id, machine_id, scenario_id, revision, scenario, kind,"
            " state, code, reason, queued_at, ended_at, position)"
            " VALUES (%s, %s, %s, %s, 1, 'restore-lab', 'restore', 'failed', 'DPM-E112', 'no network boot', %s, %s, 1)",
            (uuid.uuid4(), uuid.uuid4(), mid, uuid.uuid4(), now, now),
        )


async def test_tree_detail_forms_and_escaping(api_service, auth, browser) -> None:
    async with running(api_service(), headers=auth) as api:
        ids = await seed(api)
        await facts(api, ids["bulk-03"])
        # names the API refuses today, as an older log could have left them in the read models
        async with api.runtime.pool.connection() as conn:
            await conn.execute("INSERT INTO api.groups (name, description, position) VALUES (%s, '', 1)", (XSS,))
            await conn.execute("UPDATE api.machines SET name = %s, group_name = %s WHERE name = 'other-2'", (XSS, XSS))
        dialogs: list[str] = []
        ctx, page = await logged_in(browser, api.url, "admin", dialogs)
        await page.goto(api.url + "/console/machines")
        tree = page.locator(".group-tree")
        assert re.search(r"lab-a\s*22 machines\s*rack1\s*20 machines", await tree.text_content())  # 2 + 20 below
        await tree.get_by_role("link", name="rack1").click()
        await page.get_by_text(f"of {SELECTED}").wait_for()
        await page.goto(api.url + "/console/machines?q=" + "%3Cimg")
        await page.get_by_role("cell", name=XSS, exact=True).wait_for()  # the group, as text
        await page.get_by_role("link", name=XSS, exact=True).first.wait_for()  # the machine
        assert await page.locator("main img").count() == 0
        # the XSS group in the tree filters the list too
        await tree.get_by_role("link", name=XSS, exact=True).click()
        await page.get_by_text("Machines 1\N{EN DASH}1 of 1").wait_for()
        # one page: the count is said once, no pager, the caption only names the table
        assert await page.locator("nav.pager").count() == 0
        assert await page.locator("table.machines caption").text_content() == "Machines"

        # its failure not yet cleared, at a glance in the list
        await page.goto(api.url + "/console/machines?q=bulk-03")
        assert "failed restore-lab DPM-E112" in await page.locator("td.current").text_content()
        # a machine's page: inventory, packages, the disk drawn to scale, history with code and remedy
        await page.goto(f"{api.url}/console/machines/{ids['bulk-03']}")
        main = page.locator("main")
        await page.get_by_text("6.1.0-18-amd64").wait_for()
        assert "rsync 3.2.7" in await main.text_content()
        parts = page.locator("svg.disk-bar rect.part")
        assert await parts.count() == 2
        widths = [float(await parts.nth(i).get_attribute("width")) for i in range(2)]
        assert widths == [pytest.approx(10.0, abs=0.01), pytest.approx(490.0, abs=0.01)]  # 1 and 49 of 100 GiB
        # the 50 GiB no partition covers is its own labelled segment; types named, the code in a title
        assert await page.locator("svg.disk-bar text.free-label").text_content() == "free 50.0 GiB"
        efi = page.locator("table.parts .ptype").first
        assert await efi.text_content() == "EFI System"
        assert await efi.get_attribute("title") == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        assert await page.locator("table.parts .ptype").nth(1).text_content() == "Linux filesystem"  # sgdisk 8300
        # history times say their zone; an ended run shows its percent (or a dash), not an empty bar
        headers = await page.locator("table.history thead").text_content()
        assert "Queued (UTC)" in headers and "Ended (UTC)" in headers
        failed = page.get_by_role("row", name=re.compile("restore-lab"))
        assert await failed.locator("progress").count() == 0
        assert await failed.locator(".ended-percent").text_content() == "\N{EM DASH}"  # it reported none
        if shots := os.environ.get("DPM_SCREENSHOTS"):  # the page with everything shown (make screenshots)
            await page.screenshot(path=str(Path(shots) / "console-machines-one-full.png"), full_page=True)
        history = page.get_by_role("row", name=re.compile("restore-lab"))
        assert "DPM-E112" in await history.text_content() and "Remedy:" in await history.text_content()
        await page.goto(f"{api.url}/console/machines/{ids['other-2']}")
        assert await page.get_by_role("heading", level=1).text_content() == XSS

        # register through the console; a refused form shows the API's code and keeps what was typed
        await page.goto(api.url + "/console/machines/new")
        await page.get_by_label("Name").fill(XSS)
        await page.get_by_label("MAC addresses").fill("52:54:00:ee:00:01")
        await page.get_by_role("button", name="Register").click()
        await page.get_by_text("DPM-E104").wait_for()
        assert await page.get_by_label("Name").input_value() == XSS
        await page.get_by_label("Name").fill("console-made")
        await page.get_by_label("Group").select_option("lab-a")
        await page.get_by_role("button", name="Register").click()
        await page.get_by_text("Machine registered.").wait_for()
        assert await page.get_by_role("heading", level=1).text_content() == "console-made"
        made = [m for m in (await api.http.get("/machines")).json() if m["name"] == "console-made"]
        assert made and made[0]["macs"] == ["52:54:00:ee:00:01"] and made[0]["group_name"] == "lab-a"
        # edit it, then delete it behind its confirmation page
        await page.get_by_role("link", name="Edit this machine").click()
        await page.get_by_label("IP address (optional)").fill("10.9.0.9")
        await page.get_by_role("button", name="Save changes").click()
        await page.get_by_text("Changes saved.").wait_for()
        assert (await api.http.get(f"/machines/{made[0]['machine_id']}")).json()["ip"] == "10.9.0.9"
        await page.get_by_role("link", name="Delete this machine").click()
        await page.get_by_role("heading", name="Delete machine console-made?").wait_for()
        await page.get_by_role("button", name="Delete console-made").click()
        await page.get_by_text("Machine deleted.").wait_for()
        assert (await api.http.get(f"/machines/{made[0]['machine_id']}")).status_code == 404
        await ctx.close()
        assert dialogs == []


async def test_csv_import_preview_apply_stale_and_export(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        ids = await seed(api)
        dialogs: list[str] = []
        ctx, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/machines")
        await page.get_by_role("link", name="Import CSV").click()
        csv = (
            "name,macs,smbios_uuid,ip,group,os_type\n"
            "new-1,52:54:00:ff:00:01,,10.5.0.1,lab-a,debian\n"  # added
            "bulk-01,52:54:00:dd:00:01,,10.4.0.201,lab-a.rack1,\n"  # its IP changed
            "bulk-02,52:54:00:dd:00:02,,10.4.0.2,lab-a.rack1,\n"  # unchanged
            "bad-mac,not-a-mac,,,lab-a,\n"  # refused: DPM-E110
            "lost,52:54:00:ff:00:09,,,no-such-group,\n"  # refused: no such group
        )
        # uploaded as a file, the way a spreadsheet saves it: a byte order mark and CRLF line ends
        upload = "\ufeff" + csv.replace("\n", "\r\n")
        await page.get_by_label("CSV file").set_input_files(
            {"name": "fleet.csv", "mimeType": "text/csv", "buffer": upload.encode()}
        )
        await page.get_by_role("button", name="Preview").click()
        await page.get_by_text("1 to add, 1 to change, 1 unchanged, 2 refused.").wait_for()
        if shots := os.environ.get("DPM_SCREENSHOTS"):  # the preview with a row of each kind (make screenshots)
            await page.screenshot(path=str(Path(shots) / "console-machines-import-preview.png"), full_page=True)
        added = await page.locator("table.diff-added").text_content()
        changed = await page.locator("table.diff-changed").text_content()
        refused = await page.locator("table.diff-refused").text_content()
        assert "new-1" in added and "10.5.0.1" in added
        assert "bulk-01" in changed and "10.4.0.1" in changed and "10.4.0.201" in changed
        assert refused.count("DPM-E110") == 2 and "no-such-group" in refused
        # the group's own column, values in plain quotes (no Python reprs)
        assert "column 5 (group): no group named \N{LEFT DOUBLE QUOTATION MARK}no-such-group" in refused
        assert "column 2 (macs): \N{LEFT DOUBLE QUOTATION MARK}not-a-mac\N{RIGHT DOUBLE QUOTATION MARK}" in refused
        assert "'" not in refused
        # applying and editing again are separate steps: the edit box is not in the apply section
        applying = page.locator("section", has=page.get_by_role("button", name="Apply this import"))
        assert await applying.locator("textarea").count() == 0
        editing = page.locator("section", has=page.get_by_role("heading", name="Change the CSV and preview again"))
        assert await editing.locator("textarea").count() == 1
        assert not [m for m in (await api.http.get("/machines")).json() if m["name"] == "new-1"]  # nothing yet

        # the fleet changes before the preview is applied: refused as stale, nothing imported
        edited = {"name": "bulk-01", "macs": ["52:54:00:dd:00:01"], "ip": "10.4.0.77", "group": "lab-a.rack1"}
        assert (await api.http.put(f"/machines/{ids['bulk-01']}", json=edited)).is_success
        await page.get_by_role("button", name="Apply this import").click()
        await page.get_by_text("DPM-E433").wait_for()
        assert not [m for m in (await api.http.get("/machines")).json() if m["name"] == "new-1"]

        # the refusal shows the preview as it is now; applying that one imports the added machine and
        # the change, and not the refused rows
        await page.get_by_text("1 to add, 1 to change").wait_for()
        assert "10.4.0.77" in await page.locator("table.diff-changed").text_content()
        await page.get_by_role("button", name="Apply this import").click()
        await page.get_by_text("CSV imported: 2 machines added or changed.").wait_for()
        fleet = {m["name"]: m for m in (await api.http.get("/machines")).json()}
        assert fleet["new-1"]["ip"] == "10.5.0.1" and fleet["bulk-01"]["ip"] == "10.4.0.201"
        assert "bad-mac" not in fleet and "lost" not in fleet

        # a file that is not UTF-8 (Latin-1, as an old spreadsheet saves it) is refused with its remedy
        await page.goto(api.url + "/console/machines/import")
        latin = "name,macs,smbios_uuid,ip,group,os_type\nm\xe9tro,52:54:00:ff:00:02,,,lab-a,\n".encode("latin-1")
        await page.get_by_label("CSV file").set_input_files(
            {"name": "old.csv", "mimeType": "text/csv", "buffer": latin}
        )
        await page.get_by_role("button", name="Preview").click()
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("DPM-E178")
        assert "old.csv" in await alert.text_content() and "UTF-8 CSV" in await alert.text_content()
        # a file over the console's 5 MiB is refused with its code, before it is parsed
        big = b"name,macs,smbios_uuid,ip,group,os_type\n" + b"x" * (5 * 1024 * 1024)
        await page.get_by_label("CSV file").set_input_files({"name": "big.csv", "mimeType": "text/csv", "buffer": big})
        await page.get_by_role("button", name="Preview").click()
        await expect(page.get_by_role("alert")).to_contain_text("DPM-E435")
        # pasted text still works when no file is chosen
        pasted = "name,macs,smbios_uuid,ip,group,os_type\npasted-1,52:54:00:ff:00:02,,,lab-a,\n"
        await page.get_by_label(re.compile("^Or paste the CSV")).fill(pasted)
        await page.get_by_role("button", name="Preview").click()
        await page.get_by_text("1 to add, 0 to change, 0 unchanged, 0 refused.").wait_for()
        assert "pasted-1" in await page.locator("table.diff-added").text_content()

        # the export is the REST export's CSV
        await page.goto(api.url + "/console/machines")
        async with page.expect_download() as got:
            await page.get_by_role("link", name="Export CSV").click()
        exported = Path(await (await got.value).path()).read_text()
        assert exported == (await api.http.get("/machines/export")).text
        await ctx.close()
        assert dialogs == []


async def append(api: Any, stream: str, *events: Any) -> None:
    """Events as the agent gateway and the scheduler write them (neither runs here), applied."""
    done = await api.runtime.eventlog.append(stream, ANY_VERSION, [NewEvent(e, Metadata.new()) for e in events])
    for projection in ("machines", "executions"):
        assert await api.runtime.projections[projection].wait_for(done.position, timeout=10)


async def test_the_list_refreshes_by_push_keeping_the_selection(api_service, auth, browser) -> None:
    """Machines coming online, a run queued and a machine going offline behind the page's back reach
    the open list without a reload (``window.__nav`` survives), inside its filter, with the operator's
    checked boxes and focus kept and the select-all box consistent; a viewer's list follows too."""
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        ids = await seed(api)
        dialogs: list[str] = []
        ctx, page = await logged_in(browser, api.url, "operator", dialogs)
        vctx, viewer = await logged_in(browser, api.url, "viewer", dialogs)
        url = api.url + "/console/machines?q=bulk-0&group=lab-a.rack1"  # bulk-00 .. bulk-09
        for p in (page, viewer):
            await p.goto(url)
            await expect(p.locator("[data-live-status]")).to_have_text("Live")
            await p.evaluate("window.__nav = 1")
        assert await viewer.get_by_role("checkbox").count() == 0
        await page.get_by_label("Select bulk-03").check()
        await page.get_by_label("Select bulk-02").check()  # clicked last: it has the focus

        mid = uuid.UUID(ids["bulk-02"])
        await append(api, stream_id(subjects.AGENT, mid), MachineCameOnline(machine_id=mid, agent_version="0.0.1"))
        eid = uuid.uuid4()
        queued = ExecutionQueued(execution_id=eid, run_id=uuid.uuid4(), machine_id=mid, scenario_id=uuid.uuid4(),
                                 revision=1, name="wipe-lab", spec=ScenarioSpec(kind="disk-check"))  # fmt: skip
        await append(api, stream_id(subjects.EXECUTION, eid), queued)
        for p in (page, viewer):
            row = p.get_by_role("row", name=re.compile("bulk-02"))
            await expect(row).to_contain_text("online", timeout=15_000)
            await expect(row.locator("td.current")).to_have_text("queued wipe-lab", timeout=15_000)
            await expect(p.get_by_role("row")).to_have_count(11)  # the header and the filter's 10, no other
            assert await p.evaluate("window.__nav") == 1
        assert await viewer.get_by_role("checkbox").count() == 0
        checked = page.locator("input[name=machine]:checked")
        assert (
            sorted([await checked.nth(i).get_attribute("value") for i in range(2)])
            == sorted([ids["bulk-02"], ids["bulk-03"]])
            and await checked.count() == 2
        )
        assert await page.evaluate("document.activeElement.value") == ids["bulk-02"]
        every = page.get_by_label("Select every machine on this page")
        assert await every.evaluate("b => [b.checked, b.indeterminate]") == [False, True]

        # every box checked, then a machine goes offline: all still checked, the select-all box too
        await every.check()
        await append(api, stream_id(subjects.AGENT, mid), MachineWentOffline(machine_id=mid, reason="heartbeat lost"))
        await expect(page.get_by_role("row", name=re.compile("bulk-02"))).to_contain_text("offline", timeout=15_000)
        assert await page.locator("input[name=machine]:checked").count() == 10
        assert await every.evaluate("b => [b.checked, b.indeterminate]") == [True, False]
        assert await page.evaluate("window.__nav") == 1

        # the fragment refuses what the page refuses: no session (a bearer token counts for nothing)
        # is 401, a control character in the query 422 (DPM-E005)
        assert (await api.http.get("/console/machines/rows?q=bulk")).status_code == 401
        assert (await api.http.get("/console/machines/rows?q=%01")).status_code == 422
        await vctx.close()
        await ctx.close()
        assert dialogs == []
