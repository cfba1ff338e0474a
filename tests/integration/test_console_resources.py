"""The console's resource pages in a real browser against a real api: images (sizes, verification
state, verify answered with the API's own error while no imager runs, delete only after the
confirmation page), schedules (created from the form, named like an XSS probe and shown as text,
deleted after confirming), packages and boot (empty pages, a boot explain answered with the API's
error while pxe is away). A viewer sees no action, and its forged posts are refused (DPM-E404)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import InventoryReported
from dpm_schemas.ids import stream_id

from .console_kit import XSS, add_users, browser, logged_in, post_form
from .facts import record_image

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here
GIB = 1024**3


async def test_images_verify_and_delete_after_confirming(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    away = {"api_imager_url": "http://127.0.0.1:9", "api_pxe_url": "http://127.0.0.1:9"}
    async with running(api_service(**away), headers=auth) as api:
        await add_users(api.http, ("operator", "viewer"))
        await record_image(api, "lab/golden")
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/images")
        row = page.locator("#images tbody tr").filter(has_text="lab/golden")
        await expect(row.locator("td")).to_contain_text(["disk (used)", "2.0 GiB", "1.0 GiB", "512.0 MiB", "50 %"])
        await expect(row).to_contain_text("not verified")
        await axe_clean(page)
        # verify: no imager answers, so the page shows the API's own error as text, with its remedy
        await row.get_by_role("button", name="Verify lab/golden").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E164")
        # a bare post of the delete (no confirmation step) deletes nothing
        bare = await post_form(page, "/console/images/delete", [("csrf", await csrf(page)), ("image", "lab/golden")])
        assert bare.status == 400
        await expect(page.locator("#problem")).to_contain_text("DPM-E440")
        await page.goto(api.url + "/console/images")
        await page.get_by_role("link", name="Delete lab/golden").click()
        await expect(page.locator("main")).to_contain_text("Delete the image lab/golden?")
        await page.get_by_role("button", name="Delete image").click()
        await expect(page.locator("main .notice")).to_contain_text("Image lab/golden deleted")
        await expect(page.locator("#images")).to_have_count(0)
        assert (await api.http.get("/images")).json() == []
        # the boot page with pxe away: one banner for both sections, the reason as text (no Python repr)
        await page.goto(api.url + "/console/boot")
        banner = page.locator("main .problem")
        await expect(banner).to_have_count(1)
        await expect(banner).to_contain_text("DPM-E132 The pxe service at http://127.0.0.1:9 did not answer: ")
        assert "Error(" not in await banner.inner_text()
        await expect(page.locator("#leases-problem")).to_contain_text("the same error as above (DPM-E132)")
        await context.close()

        await record_image(api, "lab/other")
        context, page = await logged_in(browser, api.url, "viewer", dialogs)
        await page.goto(api.url + "/console/images")
        await expect(page.locator("#images")).to_contain_text("lab/other")
        assert await page.locator("main button, main form[method=post]").count() == 0
        assert await page.get_by_role("link", name="Delete lab/other").count() == 0
        for action in ("/console/images/verify", "/console/images/delete"):
            fields = [("csrf", await csrf(page)), ("image", "lab/other"), ("confirm", "yes")]
            forged = await post_form(page, action, fields)
            assert forged.status == 403
            await expect(page.locator("main")).to_contain_text("DPM-E404")
            await page.goto(api.url + "/console/images")
        assert [i["name"] for i in (await api.http.get("/images")).json()] == ["lab/other"]
        await context.close()
    assert dialogs == []


async def csrf(page) -> str:
    """This session's CSRF token, as every page's logout form carries it."""
    return await page.locator("input[name=csrf]").first.get_attribute("value") or ""


async def test_schedules_created_listed_escaped_and_deleted(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("operator", "viewer"))
        assert (await api.http.put("/groups/lab-a", json={})).is_success
        assert (await api.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})).is_success
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/schedules")
        await expect(page.locator("main")).to_contain_text("No schedules.")
        await page.get_by_role("link", name="New schedule").click()
        # a refusal of the route's own model shows inline, with the values kept
        await page.get_by_label("Name", exact=True).fill(XSS)
        await page.get_by_label("Scenario (for a run)").select_option("check")
        await page.get_by_label("Cron expression", exact=False).fill("not a cron")
        await page.get_by_label("Group").select_option("lab-a")
        await page.get_by_role("button", name="Create schedule").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-")
        await expect(page.get_by_label("Name", exact=True)).to_have_value(XSS)
        await page.get_by_label("Cron expression", exact=False).fill("0 22 * * 1-5")
        await page.get_by_role("button", name="Create schedule").click()
        await expect(page.locator("main .notice")).to_contain_text(f"Schedule {XSS} created.")
        row = page.locator("#schedules tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.locator("th")).to_have_text(XSS)
        await expect(row).to_contain_text("cron 0 22 * * 1-5")
        await expect(row).to_contain_text("group lab-a")
        await axe_clean(page)
        assert await page.locator("main img").count() == 0
        [saved] = (await api.http.get("/schedules")).json()
        assert saved["name"] == XSS and saved["cron"] == "0 22 * * 1-5" and saved["group"] == "lab-a"
        await context.close()

        context, page = await logged_in(browser, api.url, "viewer", dialogs)
        await page.goto(api.url + "/console/schedules")
        await expect(page.locator("#schedules tbody tr")).to_have_count(1)
        assert await page.get_by_role("link", name="New schedule").count() == 0
        assert await page.locator("#schedules").get_by_role("link").count() == 0
        fields = [("csrf", await csrf(page)), ("schedule", saved["schedule_id"]), ("name", "x"), ("confirm", "yes")]
        forged = await post_form(page, "/console/schedules/delete", fields)
        assert forged.status == 403
        await expect(page.locator("main")).to_contain_text("DPM-E404")
        await context.close()

        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/schedules")
        await page.get_by_role("link", name=f"Delete {XSS}").click()
        await page.get_by_role("button", name="Delete schedule").click()
        await expect(page.locator("main .notice")).to_contain_text(f"Schedule {XSS} deleted.")
        await expect(page.locator("main")).to_contain_text("No schedules.")
        assert (await api.http.get("/schedules")).json() == []
        await context.close()
    assert dialogs == []


async def test_packages_empty_and_boot_settings_and_explain(api_service, pxe_service, auth, browser) -> None:
    from playwright.async_api import expect

    pxe = pxe_service()
    async with running(api_service(api_pxe_url=f"http://127.0.0.1:{pxe.port}"), headers=auth) as api, running(pxe):
        await add_users(api.http, ("admin", "viewer"))
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "admin", dialogs)
        await page.goto(api.url + "/console/packages")
        await expect(page.locator("main")).to_contain_text("No packages registered yet")
        await page.goto(api.url + "/console/boot")
        await expect(page.locator("main dl.facts").first).to_contain_text("off")
        await expect(page.locator("main dl.facts").first).to_contain_text(re.compile(r"Version\s*never saved"))
        # what a MAC would boot: pxe's answer through the REST explain route
        await page.get_by_label("MAC address").fill("52-54-00-12-34-56")
        await page.get_by_role("button", name="Explain").click()
        await expect(page.locator("#explained")).to_contain_text("52:54:00:12:34:56")
        want = (await api.http.get("/boot/machines/52:54:00:12:34:56")).json()
        await expect(page.locator("#explained")).to_contain_text(str(want["action"]))
        # an admin sets full mode with a range; a refused value is shown inline first
        await page.get_by_text("Change the boot settings").click()
        await page.get_by_label("DHCP mode").select_option("full")
        await page.get_by_label("Range 1 start").fill("10.9.0.100")
        await page.get_by_label("Range 1 end").fill("10.9.0.200")
        await page.get_by_label("Range 1 subnet").fill("not-a-subnet")
        await page.get_by_role("button", name="Save boot settings").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E")
        await expect(page.get_by_label("Range 1 start")).to_have_value("10.9.0.100")
        await page.get_by_label("Range 1 subnet").fill("10.9.0.0/24")
        await page.get_by_role("button", name="Save boot settings").click()
        await expect(page.locator("main .notice")).to_contain_text("Boot settings saved.")
        await expect(page.locator("#ranges tbody tr")).to_contain_text("10.9.0.100")
        await expect(page.locator("#ranges tbody td").nth(3)).to_have_text("none")  # no router given
        saved = (await api.http.get("/boot/settings")).json()
        assert saved["mode"] == "full" and saved["ranges"][0]["subnet"] == "10.9.0.0/24"
        await axe_clean(page)
        await context.close()
        context, page = await logged_in(browser, api.url, "viewer", dialogs)
        await page.goto(api.url + "/console/boot")
        await expect(page.locator("main dl.facts").first).to_contain_text("full")
        assert await page.locator("main form[method=post]").count() == 0
        forged = await post_form(page, "/console/boot/settings", [("csrf", await csrf(page)), ("mode", "off")])
        assert forged.status == 403
        await expect(page.locator("main")).to_contain_text("DPM-E404")
        assert (await api.http.get("/boot/settings")).json()["mode"] == "full"
        await context.close()
    assert dialogs == []


async def axe_clean(page) -> None:
    """No serious or critical axe-core violation on the page as it is now, and no wider than 1366 px
    (with ``DPM_SCREENSHOTS=<folder>``, also photographed there)."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    bad = [(v["id"], v["impact"]) for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, (page.url, bad)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 1366, page.url
    if os.environ.get("DPM_SCREENSHOTS"):
        name = re.sub(r"[^a-z0-9]+", "-", urlsplit(page.url).path.lower()).strip("-")
        await page.screenshot(path=str(Path(os.environ["DPM_SCREENSHOTS"]) / f"{name}-data.png"), full_page=True)


async def test_packages_with_a_source_a_sync_and_a_verdict(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("operator",))
        made = await api.http.post("/machines", json={"name": "web-01", "macs": ["52:54:00:00:00:21"]})
        assert made.status_code == 201, made.text
        reported = InventoryReported(machine_id=uuid.UUID(made.json()["machine_id"]), os="Debian GNU/Linux 12",
                                     kernel="6.1.0", packages=("hello=2.10-2",), digest="d1")  # fmt: skip
        stream = stream_id(subjects.AGENT, made.json()["machine_id"])
        done = await api.runtime.eventlog.append(stream, ANY_VERSION, [NewEvent(reported, Metadata.new())])
        await api.runtime.projections["inventories"].wait_for(done.position)
        definition = {"id": "hello", "type": "deb", "system_package": "hello", "system_version": "2.10-3",
                      "summary": XSS}  # fmt: skip
        assert (await api.http.post("/packages", json={"definition": definition})).status_code == 201
        # the catalogue projection reads the metadata: the registering user, not the "unread" stand-in
        [listed] = (await api.http.get("/packages")).json()
        assert listed["registered_by"] == "bootstrap", listed
        source = {"name": "debian-main", "url": "http://127.0.0.1:9/debian", "include": ["hello"]}
        assert (await api.http.post("/sources", json=source)).status_code == 201
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "operator", dialogs)
        await page.goto(api.url + "/console/packages")
        row = page.locator("#packages tbody tr")
        await expect(row).to_have_count(1)
        await expect(row.locator("td").nth(4)).to_have_text(XSS)
        await expect(page.locator("#sources tbody tr")).to_contain_text("never")
        await axe_clean(page)
        await page.get_by_role("button", name="Sync now debian-main").click()
        await expect(page.locator("main .notice")).to_contain_text("Sync of source debian-main requested")
        await page.get_by_label("Machine (name or id)").fill("no-such-machine")
        await page.get_by_role("button", name="Save auto-update time").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E102")
        await expect(page.get_by_label("Machine (name or id)")).to_have_value("no-such-machine")

        await page.get_by_role("link", name="hello").click()
        await expect(page.locator("h1")).to_contain_text("hello 2.10-3")
        await expect(page.locator("dl.facts")).to_contain_text(XSS)
        await expect(page.locator("dl.facts")).to_contain_text("by bootstrap")
        # nested values as labelled items in words, field names as labels
        await expect(page.locator("dl.facts")).to_contain_text("Exclusive: no")
        await expect(page.locator("dl.facts")).to_contain_text("Command: none")
        await expect(page.locator("dl.facts dt").first).to_have_text("Package id")
        await page.get_by_label("Machine (name or id)").fill("web-01")
        await page.get_by_role("button", name="Check").click()
        await expect(page.locator("#verdict")).to_contain_text("On web-01")
        assert "installable installable" not in (await page.locator("#verdict").inner_text())
        await axe_clean(page)
        assert await page.locator("main img").count() == 0
        await context.close()
    assert dialogs == []
