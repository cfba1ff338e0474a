"""Authentication and roles: 401 without a valid token, viewers cannot change anything, operators
cannot administer, sessions expire when idle, API tokens work until revoked, and the audit trail
names the actor of every change."""

from __future__ import annotations

import httpx
import pytest

from dpm_runtime.testing import ManualClock
from dpm_runtime.testing.services import running

pytestmark = pytest.mark.integration

MACHINE = {"name": "m1", "macs": ["52:54:00:00:07:01"]}


async def login(api, username: str, password: str) -> dict[str, str]:
    r = await api.http.post("/auth/login", json={"username": username, "password": password}, headers={})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_requests_without_a_valid_token_get_401(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api, httpx.AsyncClient(base_url=api.url) as bare:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic abc"},
            {"Authorization": "Bearer dpms_forged"},
            {"Authorization": "Bearer dpmt_forged"},
        ):
            for method, path in (("GET", "/machines"), ("POST", "/machines"), ("GET", "/audit")):
                r = await bare.request(method, path, headers=headers, json=MACHINE if method == "POST" else None)
                assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E401", (headers, path, r.text)
        assert (await bare.get("/healthz")).status_code == 200  # health stays open for orchestrators
        assert (await api.http.get("/machines")).json() == []


async def test_roles_viewer_reads_operator_changes_admin_administers(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        for user, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
            r = await api.http.post("/users", json={"username": user, "password": f"{user}-secret-1", "role": role})
            assert r.status_code == 201, r.text
        viewer, operator, admin = [await login(api, u, f"{u}-secret-1") for u in ("vera", "otto", "ada")]

        assert (await api.http.get("/machines", headers=viewer)).status_code == 200
        for method, path, body in (
            ("POST", "/machines", MACHINE),
            ("PUT", "/groups/g1", {}),
            ("POST", "/machines/import", None),
            ("POST", "/admin/projections/machines/rebuild", None),
        ):
            r = await api.http.request(method, path, headers=viewer, json=body)
            assert r.status_code == 403 and r.json()["error"]["code"] == "DPM-E404", (path, r.text)
        assert "viewer" in r.json()["error"]["message"]

        created = await api.http.post("/machines", headers=operator, json=MACHINE)
        assert created.status_code == 201
        for method, path, body in (
            ("POST", "/users", {"username": "eve", "password": "12345678"}),
            ("GET", "/audit", None),
            ("POST", "/admin/projections/machines/rebuild", None),
        ):
            r = await api.http.request(method, path, headers=operator, json=body)
            assert r.status_code == 403, (path, r.text)
        assert (await api.http.post("/admin/projections/machines/rebuild", headers=admin)).status_code == 200

        wrong = await api.http.post("/auth/login", json={"username": "vera", "password": "nope"}, headers={})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "DPM-E405"

        # disabling a user ends its sessions at once
        assert (await api.http.delete("/users/vera", headers=admin)).status_code == 202
        assert (await api.http.get("/machines", headers=viewer)).status_code == 401


async def test_sessions_expire_when_idle_and_tokens_work_until_revoked(api_service, auth) -> None:
    clock = ManualClock()
    service = api_service(api_session_idle_timeout=90)
    service.app.state.clock = clock
    async with running(service, headers=auth) as api:
        await api.http.post("/users", json={"username": "otto", "password": "otto-secret-1", "role": "operator"})
        session = await login(api, "otto", "otto-secret-1")
        for _ in range(3):  # use keeps it alive: 180 s in all, never 90 s idle
            clock.advance(seconds=60)
            assert (await api.http.get("/machines", headers=session)).status_code == 200
        issued = await api.http.post("/auth/tokens", headers=session, json={"name": "ci"})
        assert issued.status_code == 201
        token = {"Authorization": f"Bearer {issued.json()['token']}"}
        clock.advance(seconds=91)  # idle past the timeout
        expired = await api.http.get("/machines", headers=session)
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "DPM-E406"

        assert (await api.http.post("/machines", headers=token, json=MACHINE)).status_code == 201
        assert (await api.http.get("/auth/whoami", headers=token)).json() == {"username": "otto", "role": "operator"}
        token_id = issued.json()["token_id"]
        assert (await api.http.delete(f"/auth/tokens/{token_id}", headers=token)).status_code == 202
        assert (await api.http.get("/machines", headers=token)).status_code == 401


async def test_audit_names_the_actor_of_every_change(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        await api.http.post("/users", json={"username": "otto", "password": "otto-secret-1", "role": "operator"})
        operator = await login(api, "otto", "otto-secret-1")
        machine_id = (await api.http.post("/machines", headers=operator, json=MACHINE)).json()["machine_id"]
        await api.http.delete(f"/machines/{machine_id}", headers=operator)
        trail = (await api.http.get("/audit", params={"actor": "otto", "category": "machine"})).json()
        assert [e["type"] for e in trail] == ["MachineRegistered", "MachineDeleted"]
        assert all(e["stream_id"] == f"machine-{machine_id}" for e in trail)
        users = (await api.http.get("/audit", params={"category": "user"})).json()
        assert [(e["type"], e["actor"]) for e in users] == [
            ("BootstrapTokenFirstUsed", "bootstrap"),  # its lifetime starts (DPM_API_TOKEN_MAX_AGE)
            ("UserCreated", "bootstrap"),
            ("UserLoggedIn", "otto"),
        ]
        raw = (await api.http.get("/audit", params={"type": "UserCreated", "limit": 1})).json()
        assert len(raw) == 1
        # passwords (and their hashes) never reach the event log -- nor, therefore, NATS
        async with api.runtime.pool.connection() as conn:
            rows = await (await conn.execute("SELECT data, metadata::text FROM events")).fetchall()
        assert rows and not any(b"otto-secret" in bytes(d) or b"scrypt" in bytes(d) or "scrypt" in m for d, m in rows)
