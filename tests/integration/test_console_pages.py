"""Every page of the web console, found by following its own links from the dashboard as an admin
(so a page added later is checked without being listed here): an axe-core scan with no serious or
critical violation, no Content-Security-Policy violation in the browser's console (an inline style
or script would be one), no dialog, no error page, laid out within 1366 pixels, and its header on
one line. pxe runs, so the boot page shows its answers.

With ``DPM_SCREENSHOTS=<folder>`` (``make screenshots``) each page is also photographed there at
1366x768; docs/screenshots/ holds the ones the README shows."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dpm_runtime.testing.services import running

from .console_kit import XSS, add_users, browser, logged_in

pytestmark = pytest.mark.integration
__all__ = ["browser"]  # the fixture, imported so pytest finds it here

MAX_PAGES = 60
SKIP = re.compile(r"/console/(logout|static/|executions/stream)|/export|\.csv$|/confirm|/delete")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BAD = ("serious", "critical")


async def seed(api: Any) -> None:
    """A little of everything a page lists: users, groups, machines (one with HTML in its OS type),
    a scenario and a run of it (queued: no scheduler runs here)."""
    await add_users(api.http)
    assert (await api.http.put("/groups/lab-a", json={})).is_success
    rows = "".join(f"pc-{i:02d},52:54:00:cc:00:{i:02x},,10.3.0.{i},lab-a,debian\n" for i in range(1, 6))
    csv = "name,macs,smbios_uuid,ip,group,os_type\n" + rows
    imported = await api.http.post("/machines/import", content=csv, headers={"Content-Type": "text/csv"})
    assert imported.is_success, imported.text
    made = await api.http.post("/machines", json={"name": "probe", "macs": ["52:54:00:cc:01:01"], "os_type": XSS})
    assert made.status_code == 201, made.text
    made = await api.http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
    assert made.is_success, made.text
    ran = await api.http.post("/scenarios/check/runs", json={"group": "lab-a"})
    assert ran.is_success, ran.text


def shape(path: str) -> str:
    """A page's kind: ids and the last segment of a detail path folded, so one of each is visited."""
    return ID.sub("{id}", path)


async def links(page: Any) -> list[str]:
    hrefs = await page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    out = []
    for href in hrefs:
        parts = urlsplit(href)
        if not parts.netloc and parts.path.startswith("/console/") and not SKIP.search(href):
            out.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return out


async def check(page: Any, axe: Any, url: str, shots: Path | None) -> list[str]:
    """The problems of one page, as text (empty when it passes)."""
    answer = await page.goto(url)
    problems = [] if answer is not None and answer.ok else [f"{url}: HTTP {answer.status if answer else '?'}"]
    await page.wait_for_load_state("load")
    results = await axe.run(page)
    for v in results.response["violations"]:
        if v["impact"] in BAD:
            targets = [", ".join(n["target"]) for n in v["nodes"][:3]]
            problems.append(f"{url}: axe {v['id']} ({v['impact']}): {v['help']} at {targets}")
    width = await page.evaluate("document.documentElement.scrollWidth")
    if width > 1366:
        problems.append(f"{url}: {width} px wide, wider than a 1366 px screen")
    header = await page.evaluate("document.querySelector('header.top')?.offsetHeight ?? 0")
    if header > 60:  # the menu and "admin1 (admin)" fit on one line at 1366 px (about 48 px high)
        problems.append(f"{url}: the header is {header} px high, on more than one line")
    if shots is not None:
        name = re.sub(r"[^a-z0-9]+", "-", shape(urlsplit(url).path).replace("{id}", "one").lower()).strip("-")
        await page.screenshot(path=str(shots / f"{name or 'home'}.png"))
    return problems


async def test_every_page_passes_axe_and_the_csp_with_no_dialog(api_service, pxe_service, auth, browser) -> None:
    from axe_playwright_python.async_playwright import Axe

    shots = Path(os.environ["DPM_SCREENSHOTS"]) if os.environ.get("DPM_SCREENSHOTS") else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    axe = Axe()
    pxe = pxe_service()  # the boot page as an operator sees it: pxe's recent boots and leases, not its error
    async with running(api_service(api_pxe_url=f"http://127.0.0.1:{pxe.port}"), headers=auth) as api, running(pxe):
        await seed(api)
        dialogs: list[str] = []
        anonymous = await browser.new_context(viewport={"width": 1366, "height": 768})
        login = await anonymous.new_page()
        problems = await check(login, axe, api.url + "/console/login", shots)
        await anonymous.close()

        context, page = await logged_in(browser, api.url, "admin", dialogs)
        csp: list[str] = []
        page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
        todo, seen, visited = ["/console/dashboard", "/console/machines"], set(), []
        while todo and len(visited) < MAX_PAGES:
            path = todo.pop(0)
            if shape(path.split("?")[0]) in seen:
                continue
            seen.add(shape(path.split("?")[0]))
            visited.append(path)
            problems += await check(page, axe, api.url + path, shots)
            todo += [p for p in await links(page) if shape(p.split("?")[0]) not in seen]
        await context.close()
    assert len(visited) >= 2, visited
    assert not problems, "\n".join(problems)
    assert not csp, csp
    assert dialogs == []
