"""What the console's browser tests share: Debian's chromium launched by Playwright, users per role,
logging a fresh browser context in, and posting a form the way a forged one would be posted.

Every dialog a page opens is recorded in the list given to ``logged_in``: a test asserts it stays
empty (an HTML name that ran as script would open one)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
XSS = "<img src=x onerror=alert(1)>"
USERS = {
    "admin": ("admin1", "admin-secret-1"),
    "operator": ("operator1", "operator-secret-1"),
    "viewer": ("viewer1", "viewer-secret-1"),
}
VIEWPORT = {"width": 1366, "height": 768}  # the laptop screen


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        await launched.close()


async def add_users(http: Any, roles: tuple[str, ...] = tuple(USERS)) -> None:
    """The users of ``roles`` (USERS' names and passwords), made over REST with the bootstrap token."""
    for role in roles:
        name, password = USERS[role]
        made = await http.post("/users", json={"username": name, "password": password, "role": role})
        assert made.is_success, made.text


async def logged_in(browser: Any, url: str, role: str, dialogs: list[str]) -> tuple[Any, Any]:
    """A fresh browser context (its own cookie jar) logged in as ``role``; every dialog is recorded
    (and dismissed). Returns the context and its page, on whatever page a login lands."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    page = await context.new_page()

    async def dialog(d: Any) -> None:
        dialogs.append(d.message)
        await d.dismiss()

    page.on("dialog", dialog)
    await page.goto(url + "/")
    assert page.url.endswith("/console/login")
    name, password = USERS[role]
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"/console/(?!login)"))
    return context, page


async def post_form(page: Any, action: str, fields: list[tuple[str, str]]) -> Any:
    """Build and submit a form to ``action`` in the page (as a forged one would be); the response."""
    async with page.expect_navigation() as nav:
        await page.evaluate(
            """([action, fields]) => { const f = document.createElement('form'); f.method = 'post';
                 f.action = action;
                 for (const [k, v] of fields) { const i = document.createElement('input'); i.type = 'hidden';
                   i.name = k; i.value = v; f.appendChild(i); }
                 document.body.appendChild(f); f.submit(); }""",
            [action, fields],
        )
    return await nav.value
