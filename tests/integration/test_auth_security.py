"""Attacks on the api's front door, each reproduced: a chunked body past the limit on the anonymous
login, a hostile Host header aiming the api's own imager call elsewhere, a flood of password guesses,
a stolen session changing the password, sessions that never end, a bootstrap token that cannot be
withdrawn, error texts on the anonymous /statusz, and a session file other local accounts can read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest

from dpm_api import auth as auth_module
from dpm_runtime.testing import ManualClock as Clock
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

from .facts import record_image

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_user(api, username: str, role: str = "operator") -> str:
    password = f"{username}-secret-1"
    r = await api.http.post("/users", json={"username": username, "password": password, "role": role})
    assert r.status_code == 201, r.text
    return password


async def login(api, username: str, password: str) -> httpx.Response:
    return await api.http.post("/auth/login", json={"username": username, "password": password}, headers={})


@contextlib.asynccontextmanager
async def from_address(api, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections really come from ``address`` (another loopback source: the api
    sees it as the socket's peer, nothing a header could fake)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=api.url, timeout=30, transport=transport) as http:
        yield http


async def login_from(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/auth/login", json={"username": username, "password": password})


async def session(api, username: str, password: str) -> dict[str, str]:
    r = await login(api, username, password)
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


async def ten_megabytes() -> AsyncIterator[bytes]:
    for _ in range(160):
        yield b'{"username": "x", "password": "' + b"A" * 65_536


async def test_a_chunked_10_mb_body_to_login_gets_413_and_the_api_keeps_serving(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        password = await add_user(api, "otto")
        r = await api.http.post("/auth/login", content=ten_megabytes(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "DPM-E409", r.text
        assert r.request.headers["transfer-encoding"] == "chunked" and "content-length" not in r.request.headers
        declared = await api.http.post("/auth/login", content=b"x" * (2 << 20))
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "DPM-E409"
        assert (await login(api, "otto", password)).status_code == 200  # nothing lost, still serving


class Listener:
    """A tiny HTTP server on one loopback address: records every request, answers with ``reply``."""

    def __init__(self, host: str, port: int, reply: bytes) -> None:
        self.host, self.port, self.reply = host, port, reply
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(self.reply)
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self.handle, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


def http_reply(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    )
    return head.encode() + b"\r\n" + body


async def test_verify_calls_the_imager_from_settings_never_the_host_header(api_service, auth) -> None:
    verified = b'{"image": "disk1", "manifest": "m", "chunks": 1, "corrupt": [], "ok": true, "secret": "upstream"}'
    good = Listener("127.0.0.1", 0, http_reply("200 OK", verified))
    async with good:
        port = good.server.sockets[0].getsockname()[1]
        async with (
            Listener("127.0.0.2", port, http_reply("200 OK", verified)) as hostile,
            running(api_service(api_imager_port=port), headers=auth) as api,
        ):
            await record_image(api, "disk1")
            r = await api.http.post("/images/disk1/verify", headers={"Host": f"127.0.0.2:{api.service.port}"})
            assert r.status_code == 200, r.text
            assert r.json() == {"image": "disk1", "manifest": "m", "chunks": 1, "corrupt": [], "ok": True}
            assert hostile.requests == [] and len(good.requests) == 1  # the token went only where settings say

            good.reply = http_reply("500 Internal Server Error", b"Traceback: secret internals")
            r = await api.http.post("/images/disk1/verify")
            assert r.status_code == 502 and r.json()["error"]["code"] == "DPM-E414", r.text
            assert "secret" not in r.text  # the upstream body is never echoed
            assert hostile.requests == []


async def test_wrong_logins_lock_out_with_429_and_scrypt_runs_off_the_loop(
    api_service, auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread, threads, running_now, peak = threading.get_ident(), set(), [0], [0]
    real_scrypt, lock = auth_module.hashlib.scrypt, threading.Lock()

    def spying_scrypt(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            threads.add(threading.get_ident())
            running_now[0] += 1
            peak[0] = max(peak[0], running_now[0])
        try:
            return real_scrypt(*args, **kwargs)
        finally:
            with lock:
                running_now[0] -= 1

    clock = Clock()
    service = api_service(api_login_max_failures=5, api_login_max_attempts_per_source=20, api_login_concurrency=2)
    service.app.state.clock = clock
    async with running(service, headers=auth) as api:
        password = await add_user(api, "vera", "viewer")
        monkeypatch.setattr(auth_module.hashlib, "scrypt", spying_scrypt)
        guesses = [login(api, "vera", f"guess-{i}") for i in range(50)]
        answers = await asyncio.gather(*guesses, api.http.get("/machines"))
        assert answers[-1].status_code == 200  # other routes answer meanwhile
        codes = sorted(r.json()["error"]["code"] for r in answers[:-1])
        assert codes == ["DPM-E405"] * 5 + ["DPM-E410"] * 45  # counted before checking: no burst slips past
        throttled = next(r for r in answers if r.status_code == 429)
        assert int(throttled.headers["Retry-After"]) > 0
        assert loop_thread not in threads and peak[0] <= 2  # hashing in worker threads, two at a time
        assert (await login(api, "vera", password)).status_code == 429  # locked even with the right password
        async with from_address(api, "127.0.0.2") as elsewhere:  # the real user, at another address, gets in
            assert (await login_from(elsewhere, "vera", password)).status_code == 200
        assert (await login(api, "vera", password)).status_code == 429  # the attacker's address stays locked

        passed = 0  # per source: other names from the same address are throttled too (20 attempts in all)
        while (r := await login(api, f"ghost{passed}", "x")).status_code == 401:
            passed += 1
        assert r.status_code == 429 and passed == 15

        clock.advance(seconds=301)  # the lockout ends; no sleeping
        assert (await login(api, "vera", password)).status_code == 200


async def test_guesses_from_many_addresses_only_slow_the_name_down_and_the_admin_still_gets_in(
    api_service, auth
) -> None:
    clock = Clock()
    service = api_service(api_login_max_failures=3, api_login_max_failures_per_user=6, api_login_user_lockout=10)
    service.app.state.clock = clock
    async with running(service, headers=auth) as api:
        password = await add_user(api, "admin", "admin")
        for attacker in ("127.0.0.3", "127.0.0.4"):
            async with from_address(api, attacker) as http:
                codes = [(await login_from(http, "admin", f"guess-{i}")).status_code for i in range(4)]
                assert codes == [401, 401, 401, 429], codes  # each attacker address: locked out after 3
        async with from_address(api, "127.0.0.2") as admin:
            slowed = await login_from(admin, "admin", password)  # 6 guesses in all: the name is slowed down...
            assert slowed.status_code == 429 and 0 < int(slowed.headers["Retry-After"]) <= 10, slowed.text
            clock.advance(seconds=11)  # ...for seconds, not the attackers' 5 minutes
            assert (await login_from(admin, "admin", password)).status_code == 200
        async with from_address(api, "127.0.0.3") as http:
            assert (await login_from(http, "admin", password)).status_code == 429  # attackers still locked out


async def test_changing_your_password_needs_the_current_one_and_revokes_tokens(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        password = await add_user(api, "otto")
        mine = await session(api, "otto", password)
        issued = (await api.http.post("/auth/tokens", headers=mine, json={"name": "ci"})).json()
        token = bearer(issued["token"])
        assert (await api.http.get("/machines", headers=token)).status_code == 200

        for body in ({"password": "new-secret-1"}, {"password": "new-secret-1", "current_password": "wrong"}):
            refused = await api.http.put("/users/otto/password", headers=token, json=body)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "DPM-E411", refused.text
        assert (await login(api, "otto", password)).status_code == 200  # the password did not change

        body = {"password": "new-secret-1", "current_password": password}
        assert (await api.http.put("/users/otto/password", headers=token, json=body)).status_code == 202
        for old in (token, mine):
            assert (await api.http.get("/machines", headers=old)).status_code == 401
        assert (await login(api, "otto", password)).status_code == 401
        assert (await login(api, "otto", "new-secret-1")).status_code == 200
        audit = (await api.http.get("/audit", params={"category": "user", "type": "ApiTokenRevoked"})).json()
        assert [e["actor"] for e in audit] == ["otto"]  # the revocation is an event

        reset = await api.http.put("/users/otto/password", json={"password": "reset-secret-1"})  # an admin: no current
        assert reset.status_code == 202 and (await login(api, "otto", "reset-secret-1")).status_code == 200


async def test_sessions_end_after_their_absolute_lifetime_however_busy(api_service, auth) -> None:
    clock = Clock()
    service = api_service(api_session_idle_timeout=1800, api_session_max_age=3600)
    service.app.state.clock = clock
    async with running(service, headers=auth) as api:
        mine = await session(api, "otto", await add_user(api, "otto"))
        for _ in range(2):
            clock.advance(minutes=25)  # used within the idle time: alive
            assert (await api.http.get("/machines", headers=mine)).status_code == 200
        clock.advance(minutes=11)  # 61 minutes old, 11 minutes idle
        r = await api.http.get("/machines", headers=mine)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E412", r.text


async def test_a_session_s_idle_clock_is_written_at_most_every_30_s(api_service, auth) -> None:
    """A page's many requests read the session and write nothing; the idle clock still moves."""
    clock = Clock()
    service = api_service(api_session_idle_timeout=1800, api_session_max_age=36_000)
    service.app.state.clock = clock
    async with running(service, headers=auth) as api:
        mine = await session(api, "otto", await add_user(api, "otto"))

        async def last_used() -> datetime:
            async with api.runtime.pool.connection() as conn:
                cur = await conn.execute("SELECT last_used FROM api.sessions WHERE username = 'otto'")
                return (await cur.fetchone())[0]

        opened = await last_used()
        for _ in range(3):
            clock.advance(seconds=9)
            assert (await api.http.get("/machines", headers=mine)).status_code == 200
        assert await last_used() == opened  # 27 s of requests: not one write
        clock.advance(seconds=4)
        assert (await api.http.get("/machines", headers=mine)).status_code == 200
        assert await last_used() == clock.now  # 31 s: written
        clock.advance(minutes=29)  # idle since that write, within the timeout
        assert (await api.http.get("/machines", headers=mine)).status_code == 200
        clock.advance(minutes=31)
        r = await api.http.get("/machines", headers=mine)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E406", r.text


async def test_the_bootstrap_token_can_be_disabled_or_revoked(api_service, auth) -> None:
    async with running(api_service(api_token_enabled=False)) as api:
        r = await api.http.get("/machines", headers=auth)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E401"

    async with running(api_service(), headers=auth) as api:
        admin = await session(api, "ada", await add_user(api, "ada", "admin"))
        assert (await api.http.delete("/auth/bootstrap-token", headers=admin)).status_code == 202
        r = await api.http.get("/machines", headers=auth)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E413", r.text
        assert (await api.http.get("/machines", headers=admin)).status_code == 200
        trail = (await api.http.get("/audit", headers=admin, params={"type": "BootstrapTokenRevoked"})).json()
        assert [e["actor"] for e in trail] == ["ada"]


async def test_the_bootstrap_token_is_not_withdrawn_while_no_admin_user_could_take_over(
    api_service, auth, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(api_service(), headers=auth) as api:
        await add_user(api, "otto", "operator")
        await add_user(api, "ada", "admin")
        assert (await api.http.delete("/users/ada")).status_code in (200, 202)  # the only admin, disabled
        await api.runtime.projections["accounts"].wait_for(await api.runtime.eventlog.head())
        r = await api.http.delete("/auth/bootstrap-token")
        assert r.status_code == 409 and r.json()["error"]["code"] == "DPM-E415", r.text
        assert "create an admin user first" in r.json()["error"]["remedy"].lower()
        assert (await api.http.get("/machines")).status_code == 200  # the token still works: no one locked out

    caplog.set_level("WARNING", logger="dpm_api.bootstrap_token")

    async def warned() -> bool:
        return any("DPM-E415" in r.getMessage() for r in caplog.records)

    async with running(api_service(api_token_enabled=False)):  # starts, but says no one could administer it
        await eventually(warned, timeout=30, what="a DPM-E415 warning")


async def test_statusz_shows_anonymous_callers_counters_but_no_error_text(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api, httpx.AsyncClient(base_url=api.url) as anonymous:
        consumer = next(iter(api.runtime.consumers.values()))
        consumer.stats.last_error = "OperationalError('password authentication failed for user \"dpm_secret\"')"
        r = await anonymous.get("/statusz")
        assert r.status_code == 200 and "dpm_secret" not in r.text and "last_error" not in r.text
        assert r.json()["consumers"][consumer.spec.durable]["handled"] >= 0
        assert (await anonymous.get("/healthz")).status_code == 200 and (await anonymous.get("/readyz")).is_success


async def test_dpm_login_replaces_a_world_readable_session_file_with_a_0600_one(api_service, auth, tmp_path) -> None:
    file = tmp_path / "session"
    file.write_text("old")
    file.chmod(0o644)
    async with running(api_service(), headers=auth) as api:
        password = await add_user(api, "otto")
        env = {**os.environ, "DPM_API_URL": api.url, "DPM_SESSION_FILE": str(file)}
        env.pop("DPM_API_TOKEN", None)
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "dpm_cli", "login", "--username", "otto", "--password-stdin"),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(f"{password}\n".encode()), 60)
        assert proc.returncode == 0 and out.decode().strip() == "logged in as otto (operator)", err
        assert stat.S_IMODE(file.stat().st_mode) == 0o600 and file.read_text().startswith("dpms_")
        assert (await api.http.get("/auth/whoami", headers=bearer(file.read_text()))).json()["username"] == "otto"

        old = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "dpm_cli", "login", "--username", "otto", "--password", password),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(old.communicate(), 60)
        assert old.returncode == 2  # --password is gone: a password on the command line shows in ps
