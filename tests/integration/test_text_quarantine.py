"""Issue 12 item 1: a NUL no longer wedges a read model. A viewer's token named ``x\\u0000y`` is
refused with a code (it used to reach the log, after which the accounts model retried forever and
revoking tokens or disabling users silently did nothing); an event already in the log that cannot be
applied is quarantined, counted in /statusz, listed for admins, and skipped or retried."""

from __future__ import annotations

import uuid

import pytest

from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.events import ApiTokenIssued, GroupDefined

pytestmark = pytest.mark.integration


async def login(api, username: str, password: str) -> dict[str, str]:
    r = await api.http.post("/auth/login", json={"username": username, "password": password}, headers={})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_a_nul_in_a_token_name_is_refused_and_accounts_keep_working(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        await api.http.post("/users", json={"username": "vera", "password": "vera-secret-1", "role": "viewer"})
        viewer = await login(api, "vera", "vera-secret-1")
        for name in ("x\u0000y", "bell\u0007", "esc\u001b[2J", "nel\u0085"):
            r = await api.http.post("/auth/tokens", headers=viewer, json={"name": name})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "DPM-E005" and "name" in r.json()["error"]["message"], r.text
        r = await api.http.put("/groups/lab", json={"description": "a\u0000b"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E005", r.text

        ok = await api.http.post("/auth/tokens", headers=viewer, json={"name": "Größe 日本"})
        assert ok.status_code == 201, ok.text
        token = {"Authorization": f"Bearer {ok.json()['token']}"}
        assert (await api.http.delete(f"/auth/tokens/{ok.json()['token_id']}", headers=token)).status_code == 202
        assert (await api.http.get("/machines", headers=token)).status_code == 401  # the revocation applied
        status = (await api.http.get("/statusz")).json()
        assert status["projections"]["accounts"]["quarantined"] == 0


async def test_an_unappliable_event_is_quarantined_shown_and_skipped(api_service, auth, eventlog: EventLog) -> None:
    async with running(api_service(), headers=auth) as api:
        # what an older, laxer contract let into the log: it no longer decodes
        poison = ApiTokenIssued.model_construct(
            token_id=uuid.uuid4(), username="ghost", name="x\x00y", token_sha256="0" * 64
        )
        bad = await eventlog.append("user-ghost", ANY_VERSION, [NewEvent(poison, Metadata.new(actor="ghost"))])
        bad_group = GroupDefined.model_construct(name="lab", description="a\x00b", subnet=None, broadcast=None)
        await eventlog.append("group-lab", ANY_VERSION, [NewEvent(bad_group, Metadata.new(actor="t"))])
        created = await api.http.post(
            "/users", json={"username": "otto", "password": "otto-secret-1", "role": "viewer"}
        )
        assert created.status_code == 201, created.text  # later events still apply
        await login(api, "otto", "otto-secret-1")

        async def counts() -> dict:
            return (await api.http.get("/statusz")).json()["projections"]

        seen = await eventually(counts, until=lambda p: p["accounts"]["quarantined"] == 1, what="quarantined")
        assert "error" not in str(seen)  # anonymous: counts only
        await api.http.post("/users", json={"username": "vera", "password": "vera-secret-1", "role": "viewer"})
        viewer = await login(api, "vera", "vera-secret-1")
        assert (await api.http.get("/admin/quarantine", headers=viewer)).status_code == 403

        listed = (await api.http.get("/admin/quarantine", params={"projection": "accounts"})).json()
        assert [(e["position"], e["type"], e["status"]) for e in listed] == [
            (bad.position, "ApiTokenIssued", "quarantined")
        ]
        assert "\x00" not in listed[0]["error"]
        retry = await api.http.post(f"/admin/quarantine/accounts/{bad.position}/retry")
        assert retry.status_code == 409 and retry.json()["error"]["code"] == "DPM-E171", retry.text
        skipped = await api.http.post(f"/admin/quarantine/accounts/{bad.position}/skip")
        assert skipped.status_code == 200 and skipped.json()["status"] == "skipped", skipped.text
        assert (await counts())["accounts"]["quarantined"] == 0
        missing = await api.http.post("/admin/quarantine/accounts/999999/retry")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "DPM-E170"

        rebuilt = await api.http.post("/admin/projections/groups/rebuild")
        assert rebuilt.status_code == 200 and rebuilt.json()["quarantined"] >= 1, rebuilt.text


@pytest.mark.parametrize("cell", ["lin\x00ux", "esc\x1b[2J", "nel\x85"])
def test_a_csv_cell_with_a_control_character_is_refused_with_line_and_column(cell: str) -> None:
    from dpm_api.domain import csvfile
    from dpm_schemas.errors import DpmError

    with pytest.raises(DpmError) as refused:
        csvfile.parse(f"name,macs,os_type\nm1,52:54:00:00:07:01,ok\nm2,52:54:00:00:07:02,{cell}\n")
    assert refused.value.code == "DPM-E110"
    assert (refused.value.details["line"], refused.value.details["column"]) == (3, 3)
