"""The console's machine list with a 10,000-machine fleet (issue 20): server time per page, and a real
browser's time to a usable page.

    uv run python -m bench --only console [--quick] [--machines 10000]

The api runs as its own process (as `dpm up` starts it). The fleet is written straight into the
machine list's read model in one COPY (registering 10,000 machines through the log would take
minutes and measure the log, not the page); the projection never rewrites rows it got no event for.

Server time: the median over ``REPEATS`` requests on loopback of four pages (the first, a search, a
group, a late page), each beside the REST ``GET /machines`` of the same rows as a client without
paging gets them (REST has no paging or search: the whole fleet, or the whole group), both with the
same user session. Browser time
(Playwright driving Debian's chromium): navigation to DOMContentLoaded (Navigation Timing) and to the
machine table visible, median over ``VISITS`` loads, beside the console's 404 page (the same layout
and script, no data) as the floor."""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.imaging import _ready as ready
from bench.live import api, session
from bench.packages import stop
from dpm_runtime.localstack.procs import free_port

Row = Callable[..., dict[str, Any]]
GROUPS = 20
REPEATS = 20  # requests per server-time case
VISITS = 5  # browser loads per case
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]  # fmt: skip
COLUMNS = ("machine_id, name, macs, smbios_uuid, ip, group_name, os_type, registered_at, online, last_boot_at,"
           " last_boot_arch, last_boot_stage, boot_count, agent_version, power_error, position")  # fmt: skip


def machine(i: int, at: datetime) -> tuple[object, ...]:
    mac = f"52:54:02:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
    ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    online, booted = i % 3 != 0, at if i % 2 else None
    return (uuid.uuid4(), f"node-{i:05d}", [mac], None, ip, f"rack-{i % GROUPS:02d}", "linux", at, online,
            booted, "uefi-x64" if booted else None, "deploy" if booted else None, i % 7, "0.1.0" if online else None,
            None, 0)  # fmt: skip


def fill(admin_url: str, n: int) -> float:
    """``n`` machines in ``GROUPS`` groups, into the read model in one COPY; the seconds it took."""
    started, at = time.perf_counter(), datetime.now(UTC)
    with psycopg.connect(admin_url) as conn:
        with conn.cursor().copy(f"COPY api.machines ({COLUMNS}) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row(machine(i, at))
        for g in range(GROUPS):
            conn.execute(
                "INSERT INTO api.groups (name, description, position) VALUES (%s, '', 0) ON CONFLICT DO NOTHING",
                (f"rack-{g:02d}",),
            )
        conn.execute("ANALYZE api.machines")
    return time.perf_counter() - started


async def median_ms(get: Callable[[], Awaitable[httpx.Response]], expect: str) -> float:
    """The median wall time of ``REPEATS`` requests (after one warm-up), each checked to be a page."""
    (await get()).raise_for_status()
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        answer = await get()
        times.append(time.perf_counter() - started)
        if answer.status_code != 200 or expect not in answer.text:
            raise RuntimeError(f"{answer.request.url}: {answer.status_code}, {expect!r} not in the answer")
    return 1000 * statistics.median(times)


async def server_cases(row: Row, http: httpx.AsyncClient, token: str, n: int) -> list[dict[str, Any]]:
    """Both sides authenticated by the same session (its cookie, or as a bearer token), so both pay its
    lookup (and its idle-time write)."""
    page, rest = "/console/machines", "/machines"
    cookie, bearer = {"dpm_session": token}, {"Authorization": f"Bearer {token}"}
    last, probe = -(-n // 50), f"node-{n // 2:05d}"[:-1]  # a prefix of ten names
    cases = [  # (label, console query, the row it must show, REST query of the same rows)
        ("first page", {}, "node-00000", {}),
        (f"search {probe!r} (10 hits)", {"q": probe}, probe + "9", {}),
        ("group rack-07", {"group": "rack-07"}, "node-00007", {"group": "rack-07"}),
        (f"late page ({last - 1} of {last})", {"page": str(last - 1)}, f"node-{(last - 2) * 50:05d}", {}),
    ]
    out = []
    for label, query, shows, same in cases:
        ours = await median_ms(lambda q=query: http.get(page, params=q, cookies=cookie), shows)  # type: ignore[misc]
        base = await median_ms(lambda q=same: http.get(rest, params=q, headers=bearer), "machine_id")  # type: ignore[misc]
        baseline = "REST GET /machines" + ("?group=rack-07" if same else " (all: no paging)")
        out.append(row(f"console: machine list, {label}", ours, baseline, base, unit="ms"))
    return out


async def visit(page: Any, url: str, ready_selector: str) -> tuple[float, float]:
    """(ms to DOMContentLoaded by Navigation Timing, ms until ``ready_selector`` is visible)."""
    started = time.perf_counter()
    await page.goto(url, wait_until="domcontentloaded")
    await page.locator(ready_selector).first.wait_for(state="visible", timeout=30_000)
    shown = 1000 * (time.perf_counter() - started)
    loaded = await page.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    return float(loaded), shown


async def browser_cases(row: Row, url: str, token: str) -> list[dict[str, Any]]:
    if not CHROMIUM.exists():
        print("console: /usr/bin/chromium is missing: no browser figures (apt-get install chromium)", flush=True)
        return []
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1366, "height": 768})
            await context.add_cookies([{"name": "dpm_session", "value": token, "url": url}])
            page = await context.new_page()
            figures = {}
            for case, path, selector in (
                ("list", "/console/machines", "main table"),
                ("floor", "/console/none", "main"),
            ):
                seen = [await visit(page, url + path, selector) for _ in range(VISITS + 1)][1:]  # the first warms up
                figures[case] = [statistics.median(s[k] for s in seen) for k in (0, 1)]
        finally:
            await browser.close()
    (dcl, shown), (floor_dcl, floor_shown) = figures["list"], figures["floor"]
    return [
        row("console: browser, machine list to DOMContentLoaded", dcl, "the 404 page (no data)", floor_dcl, unit="ms"),
        row("console: browser, machine list table visible", shown, "the 404 page shown", floor_shown, unit="ms"),
    ]


async def list_cases(
    row: Row, *, admin_url: str, service_url: str, nats_url: str, machines: int
) -> list[dict[str, Any]]:
    work, port, token = Path(tempfile.mkdtemp(prefix="dpm-bench-console-")), free_port(), secrets.token_urlsafe(24)
    print(f"\nconsole: the machine list with {machines:,} machines, loopback", flush=True)
    server = api(work, port, token, admin_url=admin_url, service_url=service_url, nats_url=nats_url)
    url = f"http://127.0.0.1:{port}"
    try:
        await ready(f"{url}/readyz")
        print(f"(wrote {machines:,} machines into the read model in {fill(admin_url, machines):.1f} s)", flush=True)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            user = await session(http)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            out = await server_cases(row, http, user, machines)
        return out + await browser_cases(row, url, user)
    finally:
        stop(server)
