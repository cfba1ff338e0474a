"""The web console in a real browser (Debian's chromium, driven by Playwright) against a real api:
logging in and out, a machine named like an XSS probe shown as text (no dialog ever opens), search and
paging in SQL, two roles in two browser contexts that never affect each other, a viewer's forged form
refused with the API's own DPM-E404, and a form without its CSRF token refused (DPM-E431). Plus, over
plain HTTP: the cookie's attributes, the security headers, a bearer token counting for nothing on a
page, and the api's idle timeout ending a console session."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest

from dpm_runtime.testing.services import running
from dpm_schemas import subjects
from dpm_schemas.ids import stream_id

from .console_kit import XSS, add_users, browser, logged_in, post_form

pytestmark = pytest.mark.integration

PROBE = "probe-xss"  # the machine whose OS type is XSS (the API refuses it as a machine or group name)
FLEET = 60  # more than a page (50), so paging shows
BULK = "/console/machines/bulk"
__all__ = ["browser"]  # the fixture, imported so pytest finds it here


async def fleet(api) -> dict[str, str]:
    """Users per role, a group, FLEET machines by CSV import and the probe by REST; names to ids."""
    await add_users(api.http, ("admin", "viewer"))
    assert (await api.http.put("/groups/lab-a", json={})).is_success
    rows = "".join(
        f"lab-{i:03d},52:54:00:aa:00:{i:02x},,10.1.0.{i},{'lab-a' if i % 2 else 'new-machines'},\n"
        for i in range(FLEET)
    )
    csv = "name,macs,smbios_uuid,ip,group,os_type\n" + rows
    imported = await api.http.post("/machines/import", content=csv, headers={"Content-Type": "text/csv"})
    assert imported.is_success, imported.text
    # the REST API refuses such a machine or group name (RFC 1123, and a group's charset); an OS type,
    # free text, carries it to the pages instead
    refused = await api.http.post("/machines", json={"name": XSS, "macs": ["52:54:00:bb:00:01"]})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "DPM-E104", refused.text
    refused = await api.http.put(f"/groups/{quote(XSS, safe='')}", json={})
    assert refused.status_code == 422, refused.text
    probe = {"name": PROBE, "macs": ["52:54:00:bb:00:01"], "ip": "10.2.0.1", "os_type": XSS}
    made = await api.http.post("/machines", json=probe)
    assert made.status_code == 201, made.text
    return {m["name"]: m["machine_id"] for m in (await api.http.get("/machines")).json()}


async def power_ons(api) -> set[str]:
    """The streams (machine-<id>) that got a PowerOnRequested."""
    async with api.runtime.pool.connection() as conn:
        cur = await conn.execute("SELECT stream_id FROM events WHERE type = 'PowerOnRequested'")
        return {row[0] for row in await cur.fetchall()}


async def test_login_escaping_search_paging_and_logout(api_service, auth, browser) -> None:
    async with running(api_service(), headers=auth) as api:
        ids = await fleet(api)
        dialogs: list[str] = []
        context, page = await logged_in(browser, api.url, "admin", dialogs)
        main = page.locator("main")
        await page.get_by_text(f"Machines 1\N{EN DASH}50 of {FLEET + 1}").wait_for()
        assert await main.locator("tbody tr").count() == 50
        await page.get_by_role("link", name="Next page").first.click()
        await page.get_by_text("Page 2 of 2").first.wait_for()
        assert await main.locator("tbody tr").count() == FLEET + 1 - 50
        # the probe (last by name) is text: a cell whose text is the raw string, and no <img> on the page
        await page.get_by_role("cell", name=XSS, exact=True).wait_for()
        assert await page.locator("img").count() == 0
        # search: by name, by MAC (any spelling), by IP prefix; and the group filter
        for query, expect in (("lab-00", 10), ("52-54-00-AA-00-07", 1), ("10.2.", 1), ("no-such", 0)):
            await page.get_by_label("Search name, MAC or IP").fill(query)
            await page.get_by_role("button", name="Filter").click()
            await page.wait_for_url(re.compile(r"q="))
            assert await main.locator("tbody tr").count() == expect, query
        await page.get_by_label("Search name, MAC or IP").fill("")
        await page.get_by_label("Group").select_option("lab-a")
        await page.get_by_role("button", name="Filter").click()
        await page.get_by_text(f"of {FLEET // 2}").wait_for()
        # the detail page shows the name as its heading, as text
        await page.goto(api.url + "/console/machines?q=probe")
        await page.get_by_role("link", name=PROBE).click()
        await page.wait_for_url(f"{api.url}/console/machines/{ids[PROBE]}")
        assert await page.get_by_role("heading", level=1).text_content() == PROBE
        facts = await main.text_content()
        assert "52:54:00:bb:00:01" in facts and facts.count(XSS) == 1  # its OS type
        assert await page.locator("img").count() == 0
        cookies = {c["name"]: c for c in await context.cookies()}
        assert cookies["dpm_session"]["httpOnly"] and cookies["dpm_session"]["sameSite"] == "Strict"
        # logging out ends the session itself, not only the cookie
        token = cookies["dpm_session"]["value"]
        await page.get_by_role("button", name="Log out").click()
        await page.get_by_text("You are logged out.").wait_for()
        replay = await api.http.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"})
        assert replay.status_code == 401
        await context.close()
        assert dialogs == []


async def test_two_roles_in_two_contexts_and_forged_posts(api_service, auth, browser) -> None:
    async with running(api_service(), headers=auth) as api:
        ids = await fleet(api)
        dialogs: list[str] = []
        admin_ctx, admin = await logged_in(browser, api.url, "admin", dialogs)
        viewer_ctx, viewer = await logged_in(browser, api.url, "viewer", dialogs)  # logged in last
        await admin.reload()  # the admin's tab keeps the admin's rights (the original's W-06 bleed)
        assert "admin1" in await admin.locator("header").text_content()
        assert await admin.get_by_role("button", name="Power on").count() == 1
        assert "viewer1" in await viewer.locator("header").text_content()
        assert await viewer.get_by_role("button", name="Power on").count() == 0
        assert await viewer.get_by_role("checkbox").count() == 0

        # a viewer's forged form, with the viewer's own valid CSRF token: refused by role
        csrf = await viewer.locator("input[name=csrf]").first.get_attribute("value")
        refused = await post_form(viewer, BULK, [("csrf", csrf), ("action", "power_on"), ("machine", ids["lab-001"])])
        assert refused.status == 403
        assert "DPM-E404" in await viewer.locator("main").text_content()
        # a form without the CSRF token (the admin's session), and one with another session's token
        refused = await post_form(admin, BULK, [("action", "power_on"), ("machine", ids["lab-001"])])
        assert refused.status == 403
        assert "DPM-E431" in await admin.locator("main").text_content()
        refused = await post_form(admin, BULK, [("csrf", csrf), ("action", "power_on"), ("machine", ids["lab-001"])])
        assert refused.status == 403
        # a cross-site post with the admin's cookie and a valid token: the Origin check refuses it
        await admin.goto(api.url + "/console/machines")
        admin_csrf = await admin.locator("input[name=csrf]").first.get_attribute("value")
        forged = await admin_ctx.request.post(
            api.url + "/console/machines/bulk",
            form={"csrf": admin_csrf, "action": "power_on", "machine": ids["lab-001"]},
            headers={"Origin": "http://evil.example"},
        )
        assert forged.status == 403 and "DPM-E431" in await forged.text()
        assert await power_ons(api) == set()

        # the admin's bulk action, end to end: two selected machines get a PowerOnRequested each
        await admin.get_by_label("Select lab-002").check()
        await admin.get_by_label("Select lab-003").check()
        await admin.get_by_role("button", name="Power on").click()
        await admin.get_by_text("Power on requested for 2 machines.").wait_for()
        assert await power_ons(api) == {stream_id(subjects.MACHINE, ids[n]) for n in ("lab-002", "lab-003")}
        await viewer.reload()  # and the viewer is still only a viewer
        assert await viewer.get_by_role("button", name="Power on").count() == 0
        await admin_ctx.close()
        await viewer_ctx.close()
        assert dialogs == []


async def _form_login(http: httpx.AsyncClient, url: str, name: str, password: str) -> httpx.Response:
    page = await http.get("/console/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce, page.text
    return await http.post(
        "/console/login",
        data={"csrf": nonce.group(1), "username": name, "password": password},
        headers={"Origin": url},
    )


async def test_cookie_headers_bearer_and_idle_timeout(api_service, auth) -> None:
    service = api_service()
    async with running(service, headers=auth) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        await api.http.post("/users", json={"username": "viewer1", "password": "viewer-secret-1", "role": "viewer"})
        # a bearer token, even the bootstrap one, does not open a page: the cookie alone does
        assert (await http.get("/console/machines", headers=auth)).headers["location"] == "/console/login"
        login_page = await http.get("/console/login")
        for header, value in (
            ("content-security-policy", "frame-ancestors 'none'"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
        ):
            assert value in login_page.headers[header]
        # a login post from another origin, or without the form's token, is refused
        refused = await http.post("/console/login", data={"username": "viewer1", "password": "viewer-secret-1"})
        assert refused.status_code == 403 and "DPM-E431" in refused.text
        logged = await _form_login(http, api.url, "viewer1", "viewer-secret-1")
        assert logged.status_code == 303, logged.text
        cookie = next(v for v in logged.headers.get_list("set-cookie") if v.startswith("dpm_session="))
        assert {"httponly", "samesite=strict", "path=/console"} <= {p.strip().lower() for p in cookie.split(";")}
        assert "secure" not in cookie.lower()  # plain http here; https gets Secure
        page = await http.get("/console/machines")
        assert page.status_code == 200 and "viewer1" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # the api's idle timeout ends the console session too
        later = service.app.state.clock() + service.app.state.sessions.idle + timedelta(seconds=1)
        service.app.state.clock = lambda: later
        expired = await http.get("/console/machines")
        assert expired.status_code == 303 and expired.headers["location"] == "/console/login?reason=expired"
        assert (await http.get("/console/machines")).headers["location"] == "/console/login?reason=expired"
