"""The console's admin pages in a real browser against a real api: an admin adds a user who then logs
in, changes its role, disables it after confirming (it can no longer log in); issues an API token
shown once and revokes it; changes a group's settings through the confirmation page (a description
like an XSS probe shown as text); and narrows the audit log by actor, action and time, a page at a
time. Others get the API's own DPM-E404 page, no menu link, and their forged posts are refused."""

from __future__ import annotations

import re

import httpx
import pytest

from dpm_runtime.testing.services import running

from .console_kit import USERS, XSS, add_users, browser, logged_in, post_form
from .test_console_resources import axe_clean

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here


async def log_in(browser, url: str, name: str, password: str):
    """A fresh context that tries to log in as ``name``; the page where it landed."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(url + "/console/login")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state("load")
    return context, page


async def csrf(page) -> str:
    return await page.locator("input[name=csrf]").first.get_attribute("value") or ""


async def test_users_and_tokens(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("admin",))
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "admin", dialogs)
        await page.get_by_role("link", name="Users").click()
        await page.wait_for_url(re.compile(r"/console/users"))
        # refused by the route's own rules: inline, the name kept
        await page.locator("#u-name").fill("Bad Name")
        await page.locator("#u-password").fill("newbie-secret-1")
        await page.get_by_role("button", name="Add user").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E100")
        await expect(page.locator("#u-name")).to_have_value("Bad Name")
        await page.locator("#u-name").fill("newbie")
        await page.locator("#u-password").fill("newbie-secret-1")
        await page.get_by_label("Role", exact=True).select_option("viewer")
        await page.get_by_role("button", name="Add user").click()
        await expect(page.locator("main .notice")).to_contain_text("User newbie created.")
        row = page.locator("#users tbody tr").filter(has_text="newbie")
        await expect(row).to_contain_text("viewer")
        await row.get_by_label("New role of newbie").select_option("operator")
        await row.get_by_role("button", name="Change role of newbie").click()
        await expect(page.locator("main .notice")).to_contain_text("Role of newbie changed.")
        await expect(page.locator("#users tbody tr").filter(has_text="newbie")).to_contain_text("operator")

        other, theirs = await log_in(browser, api.url, "newbie", "newbie-secret-1")
        await expect(theirs.locator("header .who")).to_contain_text("newbie (operator)")
        assert await theirs.get_by_role("link", name="Users").count() == 0
        await other.close()

        # an API token, shown once, that works; then revoked after confirming
        await page.get_by_label("New token's name").fill(XSS)
        await page.get_by_role("button", name="Issue token").click()
        token = await page.locator("#issued-token").input_value()
        await axe_clean(page)
        assert token and await page.locator("main img").count() == 0
        whoami = await api.http.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"})
        assert whoami.json()["username"] == "admin1", whoami.text
        await page.goto(api.url + "/console/users")
        assert await page.locator("#issued-token").count() == 0 and token not in await page.content()
        await page.get_by_role("link", name=f"Revoke {XSS}").click()
        await page.get_by_role("button", name="Revoke token").click()
        await expect(page.locator("main .notice")).to_contain_text(f"Token {XSS} revoked.")
        async with httpx.AsyncClient(base_url=api.url) as bare:
            gone = await bare.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 401, gone.text

        # an admin sets the user's password: the old one no longer works, the new one does
        await page.get_by_label("User", exact=True).select_option("newbie")
        await page.get_by_label("New password", exact=False).fill("newbie-secret-2")
        await page.get_by_role("button", name="Set password").click()
        await expect(page.locator("main .notice")).to_contain_text("Password of newbie set")
        other, theirs = await log_in(browser, api.url, "newbie", "newbie-secret-1")
        assert theirs.url.endswith("/console/login")
        await other.close()
        other, theirs = await log_in(browser, api.url, "newbie", "newbie-secret-2")
        await expect(theirs.locator("header .who")).to_contain_text("newbie (operator)")
        await other.close()

        # disabling needs the confirmation page; then the user cannot log in
        bare = await post_form(page, "/console/users/disable", [("csrf", await csrf(page)), ("username", "newbie")])
        assert bare.status == 400
        await page.goto(api.url + "/console/users")
        await page.get_by_role("link", name="Disable newbie").click()
        await page.get_by_role("button", name="Disable user").click()
        await expect(page.locator("main .notice")).to_contain_text("User newbie disabled")
        await expect(page.locator("#users tbody tr").filter(has_text="newbie")).to_contain_text("disabled")
        other, theirs = await log_in(browser, api.url, "newbie", "newbie-secret-2")
        assert theirs.url.endswith("/console/login")
        await expect(theirs.locator("main")).to_contain_text("DPM-E")
        await other.close()
        await context.close()
    assert dialogs == []


async def test_admin_pages_refuse_others(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("operator", "viewer"))
        dialogs: list[str] = []
        for role in ("viewer", "operator"):
            context, page = await logged_in(browser, api.url, role, dialogs)
            for name in ("Settings", "Users", "Audit log"):
                assert await page.get_by_role("link", name=name).count() == 0
            for path in ("/console/settings", "/console/users", "/console/audit", "/console/settings/group?group=x"):
                answer = await page.goto(api.url + path)
                assert answer is not None and answer.status == 403, path
                await expect(page.locator("main")).to_contain_text("DPM-E404")
            fields = [
                ("csrf", await csrf(page)),
                ("username", "evil"),
                ("password", "evil-secret-1"),
                ("role", "admin"),
            ]
            forged = await post_form(page, "/console/users", fields)
            assert forged.status == 403
            await expect(page.locator("main")).to_contain_text("DPM-E404")
            await context.close()
        names = [u["username"] for u in (await api.http.get("/users")).json()]
        assert "evil" not in names and set(names) == {USERS["operator"][0], USERS["viewer"][0]}
    assert dialogs == []


async def test_settings_change_after_confirmation_and_audit_filters(api_service, auth, browser) -> None:
    from playwright.async_api import expect

    async with running(api_service(), headers=auth) as api:
        await add_users(api.http, ("admin",))
        for i in range(30):
            assert (await api.http.put(f"/groups/lab-{i:02d}", json={})).is_success
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "admin", dialogs)
        await page.get_by_role("link", name="Settings").click()
        await expect(page.locator("#idle")).to_have_text("30 min (1800 s)")
        await expect(page.locator("#max-age")).to_have_text("12 h (43200 s)")
        blank = page.locator("#groups tbody tr").filter(has_text="lab-03").locator("td")
        await expect(blank.nth(1)).to_have_text("derived")  # broadcast
        await expect(blank.nth(2)).to_have_text("none")  # gateway
        await page.get_by_role("link", name="Change lab-03").click()
        await page.locator("#g-subnet").fill("10.0.3.0/24")
        await page.get_by_label("Gateway").fill("10.0.3.1")
        await page.get_by_label("Description").fill(XSS)
        await page.get_by_role("button", name="Review changes").click()
        changes = page.locator("#changes tbody tr")
        await expect(changes).to_have_count(3)
        await expect(changes.filter(has_text="gateway")).to_contain_text("10.0.3.1")
        await expect(changes.locator("th")).to_have_text(["Subnet", "Gateway", "Description"])  # the form's labels
        save = page.get_by_role("button", name="Save group settings")
        assert "danger" not in (await save.get_attribute("class") or "")  # a harmless save, not a red button
        await axe_clean(page)
        assert (await api.http.get("/groups")).json()[4]["gateway"] is None  # nothing saved yet
        await page.get_by_role("button", name="Save group settings").click()
        await expect(page.locator("main .notice")).to_contain_text("Settings of group lab-03 saved.")
        row = page.locator("#groups tbody tr").filter(has_text="lab-03")
        await expect(row.locator("td").nth(4)).to_have_text(XSS)
        await expect(row).to_contain_text("10.0.3.1")
        assert await page.locator("main img").count() == 0
        # a bad value is the route's own refusal, shown on the form
        await page.get_by_role("link", name="Change lab-04").click()
        await page.locator("#g-subnet").fill("not-a-subnet")
        await page.get_by_role("button", name="Review changes").click()
        await expect(page.locator("#problem")).to_contain_text("DPM-E100")

        # the audit log: everything, then by actor and action, a page at a time, and by time
        async def logged(**query: str) -> int:
            return len((await api.http.get("/audit", params={"limit": 1000, **query})).json())

        await page.get_by_role("link", name="Audit log").click()
        rows = page.locator("#audit tbody tr")
        everything = await logged()
        assert everything > 32  # the user, 30 groups by the bootstrap token, a login, the change
        await expect(rows).to_have_count(min(everything, 50))
        await page.get_by_label("Actor").fill("admin1")
        await page.get_by_role("button", name="Filter").click()
        await expect(rows).to_have_count(await logged(actor="admin1"))
        assert await logged(actor="admin1") < everything
        await page.get_by_label("Action (event type)").fill("GroupDefined")
        await page.get_by_role("button", name="Filter").click()
        await expect(rows).to_have_count(1)
        await expect(rows).to_contain_text("group-lab-03")
        await expect(rows.locator("td.summary")).to_contain_text("10.0.3.1")  # what changed, in words
        assert "hash" not in (await rows.locator("td.summary").inner_text())
        await page.get_by_label("Actor").fill("")
        await page.get_by_label("Per page").select_option("25")
        await page.get_by_role("button", name="Filter").click()
        await expect(rows).to_have_count(25)
        await page.get_by_role("link", name="Next page").click()
        await expect(rows).to_have_count(6)
        await page.get_by_role("link", name="Previous page").click()
        await expect(rows).to_have_count(25)
        await expect(rows.first).to_contain_text("group-lab-00")
        await page.get_by_role("link", name="Next page").click()
        await expect(rows).to_have_count(6)
        await axe_clean(page)
        await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
        await page.get_by_label("From (UTC)").fill("2999-01-01T00:00")
        await page.get_by_role("button", name="Filter").click()
        await expect(page.locator("#audit-empty")).to_be_visible()
        await page.goto(api.url + "/console/audit?since=yesterday")
        await expect(page.locator("#problem")).to_contain_text("DPM-E441")
        await context.close()
    assert dialogs == []
