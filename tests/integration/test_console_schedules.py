"""Editing, pausing and resuming schedules in the console, in a real browser against a real api: the
edit form opens filled in from the schedule, a refused field shows the API's own code with the values
kept, a saved edit changes the schedule (same id), an edit made on a stale form (the schedule was
paused meanwhile) is refused with DPM-E184 and the pause is not lost; each row pauses and resumes
its schedule. A viewer sees no edit, pause or resume control and its forged posts are refused
(DPM-E404). The schedule is named like an XSS probe: text, no dialog. The list shows the next run
on each schedule's own clock; the form shows only the chosen kind's fields, offers the scenarios
by name and reads "Once at" as YYYY-MM-DD HH:MM in the schedule's zone (DPM-E441 otherwise)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from dpm_runtime.testing.services import running

from .console_kit import XSS, add_users, browser, logged_in, post_form
from .test_console_resources import axe_clean, csrf

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here


async def test_a_schedule_edited_paused_and_resumed_and_a_viewer_refused(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("operator", "viewer"))
        assert (await api.http.post("/machines", json={"name": "m1", "macs": ["52:54:00:5c:00:01"]})).is_success
        body = {"name": XSS, "action": "power-on", "machines": ["m1"], "cron": "0 22 * * 1-5", "timezone": "UTC"}
        made = await api.http.post("/schedules", json=body)
        assert made.status_code == 201, made.text
        sid = made.json()["schedule_id"]
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/schedules")
        await page.get_by_role("link", name=f"Edit {XSS}").click()
        await expect(page.get_by_role("heading", name="Edit schedule")).to_have_count(1)
        await expect(page.get_by_label("Name", exact=True)).to_have_value(XSS)
        await expect(page.get_by_label("Cron expression", exact=False)).to_have_value("0 22 * * 1-5")
        await expect(page.get_by_label("Machines", exact=False)).to_have_value("m1")
        await expect(page.get_by_label("Action", exact=True)).to_have_value("power-on")
        await expect(page.get_by_label("Enabled")).to_be_checked()
        await axe_clean(page)
        # refused by the route's own checks: the code inline, the values kept, nothing saved
        await page.get_by_label("Cron expression", exact=False).fill("every night")
        await page.get_by_role("button", name="Save schedule").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E148")
        await expect(page.get_by_label("Cron expression", exact=False)).to_have_value("every night")
        assert (await api.http.get(f"/schedules/{sid}")).json()["version"] == 1
        await page.get_by_label("Cron expression", exact=False).fill("15 6 * * *")
        await page.get_by_role("button", name="Save schedule").click()
        await expect(page.locator("main .notice")).to_contain_text(f"Schedule {XSS} saved.")
        row = page.locator("#schedules tbody tr")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("cron 15 6 * * *")
        saved = (await api.http.get(f"/schedules/{sid}")).json()
        assert saved["cron"] == "15 6 * * *" and saved["version"] == 2 and saved["name"] == XSS

        # a stale form: paused over REST after the form opened; saving it is refused, the pause stays
        await page.get_by_role("link", name=f"Edit {XSS}").click()
        assert (await api.http.patch(f"/schedules/{sid}", json={"enabled": False})).status_code == 200
        await page.get_by_label("Cron expression", exact=False).fill("0 1 * * *")
        await page.get_by_role("button", name="Save schedule").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E184")
        now = (await api.http.get(f"/schedules/{sid}")).json()
        assert now["enabled"] is False and now["cron"] == "15 6 * * *" and now["version"] == 3

        await page.goto(api.url + "/console/schedules")
        await expect(row).to_contain_text("no (paused)")
        await page.get_by_role("button", name=f"Resume {XSS}").click()
        await expect(page.locator("main .notice")).to_contain_text(f"Schedule {XSS} resumed.")
        assert (await api.http.get(f"/schedules/{sid}")).json()["enabled"] is True
        await page.get_by_role("button", name=f"Pause {XSS}").click()
        await expect(page.locator("main .notice")).to_contain_text(f"Schedule {XSS} paused.")
        await expect(row).to_contain_text("no (paused)")
        assert (await api.http.get(f"/schedules/{sid}")).json()["enabled"] is False
        await axe_clean(page)
        await context.close()

        context, page = await logged_in(browser, api.url, "viewer", dialogs)
        await page.goto(api.url + "/console/schedules")
        await expect(page.locator("#schedules tbody tr")).to_contain_text("no (paused)")
        assert await page.locator("#schedules").get_by_role("link").count() == 0
        assert await page.locator("#schedules").get_by_role("button").count() == 0
        token = await csrf(page)
        forged = await post_form(
            page, "/console/schedules/pause", [("csrf", token), ("schedule", sid), ("enabled", "true")]
        )
        assert forged.status == 403
        await expect(page.locator("main")).to_contain_text("DPM-E404")
        edit = [("csrf", token), ("schedule", sid), ("name", "x"), ("action", "power-on"), ("cron", "0 1 * * *"),
                ("machines", "m1"), ("when_kind", "cron"), ("timezone", "UTC")]  # fmt: skip
        forged = await post_form(page, "/console/schedules/edit", edit)
        assert forged.status == 403
        await expect(page.locator("main")).to_contain_text("DPM-E404")
        opened = await page.goto(api.url + f"/console/schedules/edit?schedule={sid}")
        assert opened is not None and opened.status == 403
        await context.close()
        final = (await api.http.get(f"/schedules/{sid}")).json()
        assert final["enabled"] is False and final["name"] == XSS and final["version"] == 5
    assert dialogs == []


async def test_a_one_shot_typed_on_a_24_hour_clock_in_its_zone_and_the_next_runs(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("operator",))
        assert (await api.http.post("/machines", json={"name": "m1", "macs": ["52:54:00:5c:00:02"]})).is_success
        assert (await api.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})).is_success
        body = {"name": "nightly", "action": "power-on", "machines": ["m1"], "cron": "0 22 * * *", "timezone": "UTC"}
        assert (await api.http.post("/schedules", json=body)).status_code == 201
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/schedules")
        heads = [h.strip() for h in await page.locator("#schedules thead th").all_text_contents()]
        assert heads.count("Action") == 0 and "Does" in heads and "Actions" in heads and "Next run" in heads
        row = page.locator("#schedules tbody tr")
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} 22:00 UTC", await row.locator("td.next").text_content() or "")

        await page.get_by_role("link", name="New schedule").click()
        # only the chosen kind's fields; the scenarios offered by name, only for a run
        cron, once = page.get_by_label("Cron expression", exact=False), page.get_by_label("Once at", exact=False)
        await expect(cron).to_be_visible()
        await expect(once).to_be_hidden()
        scenario = page.get_by_label("Scenario (for a run)")
        assert "check" in await scenario.locator("option").all_text_contents()
        await page.get_by_label("Action", exact=True).select_option("power-off")
        await expect(scenario).to_be_hidden()
        await page.get_by_label("Fires").select_option("at")
        await expect(once).to_be_visible()
        await expect(cron).to_be_hidden()
        await axe_clean(page)
        await page.get_by_label("Name", exact=True).fill("once")
        await page.get_by_label("Machines", exact=False).fill("m1")
        await page.get_by_label("Time zone", exact=True).fill("Europe/Berlin")
        await once.fill("12/24/2030, 06:30 PM")  # a 12-hour US time is refused, naming the format
        await page.get_by_role("button", name="Create schedule").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E441")
        await expect(page.locator("#problem")).to_contain_text("YYYY-MM-DD HH:MM")
        await expect(once).to_have_value("12/24/2030, 06:30 PM")
        await once.fill("2030-12-24 18:30")
        await axe_clean(page)
        await page.get_by_role("button", name="Create schedule").click()
        await expect(page.locator("main .notice")).to_contain_text("Schedule once created.")
        made = [s for s in (await api.http.get("/schedules")).json() if s["name"] == "once"]
        at = datetime.fromisoformat(made[0]["at"])
        assert at == datetime(2030, 12, 24, 17, 30, tzinfo=UTC) and made[0]["timezone"] == "Europe/Berlin"
        one = page.locator("#schedules tbody tr", has=page.get_by_role("rowheader", name="once"))
        await expect(one).to_contain_text("once, 2030-12-24 18:30 Europe/Berlin")  # its zone, not UTC
        await expect(one.locator("td.next")).to_have_text("2030-12-24 18:30 Europe/Berlin")
        await expect(one).to_contain_text("1 machine")
        await axe_clean(page)
        await page.get_by_role("link", name="Edit once").click()
        await expect(page.get_by_label("Once at", exact=False)).to_have_value("2030-12-24 18:30")
        await expect(page.get_by_label("Cron expression", exact=False)).to_be_hidden()
        await context.close()
    assert dialogs == []
