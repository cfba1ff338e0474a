"""The bootstrap token (DPM_API_TOKEN) expires DPM_API_TOKEN_MAX_AGE after an api first accepted it
(issue 12, item 11): refused then with DPM-E425 and a remedy that says how to go on, accepted until
just before; the first use is a fact in the log, so a restarted api and a second replica count from
the same instant; a new value starts afresh; and `dpm auth revoke-bootstrap-token` withdraws it."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr

from dpm_api import bootstrap_token
from dpm_api.auth import sha256
from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_runtime.testing import ManualClock as Clock
from dpm_runtime.testing.services import running

from .conftest import TOKEN

pytestmark = pytest.mark.integration

HOUR = 3600.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_with(api_service, clock: Clock, token: str | None = None):  # type: ignore[no-untyped-def]
    # sessions idle longer than the token lives, so an admin's session outlasts the moves of the clock
    service = api_service(api_token_max_age=HOUR, api_session_idle_timeout=2 * HOUR)
    if token is not None:  # the same settings with another DPM_API_TOKEN
        service = api_bootstrap(service.settings.model_copy(update={"api_token": SecretStr(token)}))
    service.app.state.clock = clock
    return service


async def admin_session(api) -> dict[str, str]:  # type: ignore[no-untyped-def]
    body = {"username": "ada", "password": "ada-secret-1", "role": "admin"}
    assert (await api.http.post("/users", json=body)).status_code == 201
    r = await api.http.post("/auth/login", json={"username": "ada", "password": "ada-secret-1"}, headers={})
    assert r.status_code == 200, r.text
    return bearer(r.json()["token"])


async def first_uses(api) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with api.runtime.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT stream_id, metadata->>'actor' FROM events WHERE type = 'BootstrapTokenFirstUsed' ORDER BY position"
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def test_the_bootstrap_token_expires_max_age_after_its_first_use_with_its_own_code(
    api_service, auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="dpm_api.bootstrap_token")
    clock = Clock()
    started = clock.now
    async with running(api_with(api_service, clock), headers=auth) as api:
        assert (await api.http.get("/machines")).status_code == 200  # its first use: the clock starts
        admin = await admin_session(api)
        state = (await api.http.get("/auth/bootstrap-token", headers=admin)).json()
        assert state["enabled"] and not state["expired"] and not state["revoked"] and state["max_age_seconds"] == HOUR
        assert datetime.fromisoformat(state["first_used_at"]) == started
        assert datetime.fromisoformat(state["expires_at"]) == started + timedelta(hours=1)
        assert TOKEN not in str(state)

        clock.advance(seconds=HOUR - 1)  # one second before: still accepted
        assert (await api.http.get("/machines")).status_code == 200
        clock.advance(seconds=1)
        r = await api.http.get("/machines")
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E425", r.text
        remedy = r.json()["error"]["remedy"]
        assert "dpm login" in remedy and "var/api-token" in remedy and "DPM_API_TOKEN" in remedy
        assert (await api.http.get("/machines", headers=admin)).status_code == 200  # users are not affected
        assert (await api.http.get("/auth/bootstrap-token", headers=admin)).json()["expired"] is True
        assert await first_uses(api) == [(f"user-bootstrap-{sha256(TOKEN)[:32]}", "bootstrap")]  # one fact, its actor

    warnings = [r.getMessage() for r in caplog.records if "expires at" in r.getMessage()]
    assert len(warnings) == 1 and "DPM-E425" in warnings[0], warnings  # within a day: once, not per request


async def test_the_first_use_survives_a_restart_and_replicas_agree_a_new_value_starts_afresh(api_service, auth) -> None:
    clock = Clock()
    started = clock.now
    async with running(api_with(api_service, clock), headers=auth) as api:
        assert (await api.http.get("/machines")).status_code == 200

    clock.advance(minutes=30)  # a restart half an hour later counts from the first use, not from its start
    a, b = api_with(api_service, clock), api_with(api_service, clock)
    async with running(a, headers=auth) as one, running(b, headers=auth) as two:
        answers = await asyncio.gather(*(api.http.get("/machines") for api in (one, two) for _ in range(5)))
        assert [r.status_code for r in answers] == [200] * 10
        assert len(await first_uses(one)) == 1  # the restarted replicas recorded nothing more
        clock.advance(minutes=30)
        for api in (one, two):
            r = await api.http.get("/machines")
            assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E425", r.text
            assert started.isoformat(timespec="seconds") in r.json()["error"]["message"]

    rotated = "rotated-token-0123456789"  # a new DPM_API_TOKEN: accepted afresh, from its own first use
    async with running(api_with(api_service, clock, rotated), headers=bearer(rotated)) as api:
        assert (await api.http.get("/machines")).status_code == 200
        assert (await api.http.get("/machines", headers=auth)).status_code == 401  # the old value is gone
        assert len(await first_uses(api)) == 2


async def test_two_replicas_meeting_a_new_token_at_once_record_one_first_use(api_service, auth) -> None:
    clock = Clock()
    a, b = api_with(api_service, clock), api_with(api_service, clock)
    async with running(a, headers=auth) as one, running(b, headers=auth) as two:
        answers = await asyncio.gather(*(api.http.get("/machines") for _ in range(4) for api in (one, two)))
        assert [r.status_code for r in answers] == [200] * 8
        assert len(await first_uses(one)) == 1
        # the loser of the race (here: a late second attempt) reads the winner's instant back
        late = await bootstrap_token._record_first_use(two.runtime, sha256(TOKEN), clock.now + timedelta(hours=1))
        assert late.first_used_at == clock.now and len(await first_uses(one)) == 1


async def dpm(api, token: str, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DPM_API_URL": api.url, "DPM_API_TOKEN": token, "DPM_SESSION_FILE": "/nonexistent"}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dpm_cli", *args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dpm_auth_revoke_bootstrap_token_against_a_real_api(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        code, out, err = await dpm(api, TOKEN, "auth", "revoke-bootstrap-token")
        assert code == 1 and "DPM-E415" in err and out == "", err  # no admin user could take over yet

        code, out, err = await dpm(api, TOKEN, "auth", "bootstrap-token")
        assert code == 0 and "first used" in out and "expires" in out and TOKEN not in out, err

        admin = (await admin_session(api))["Authorization"].partition(" ")[2]
        code, out, err = await dpm(api, admin, "auth", "revoke-bootstrap-token")
        assert code == 0 and out.startswith("revoked the bootstrap token"), err
        r = await api.http.get("/machines")
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E413", r.text

        code, out, err = await dpm(api, admin, "auth", "bootstrap-token")
        assert code == 0 and out.strip() == "bootstrap token: revoked", err
        code, _, err = await dpm(api, TOKEN, "auth", "bootstrap-token")
        assert code == 1 and "DPM-E413" in err
