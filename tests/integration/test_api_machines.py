"""The api service end to end: register, list, show, delete; catalogued errors; authentication."""

from __future__ import annotations

import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

pytestmark = pytest.mark.integration


async def test_register_list_show_delete(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        r = await api.http.post(
            "/machines",
            headers=auth,
            json={"name": "web-01", "macs": ["52-54-00-AA-BB-01", "52:54:00:aa:bb:02"], "ip": "10.0.0.5"},
        )
        assert r.status_code == 201, r.text
        machine_id = r.json()["machine_id"]
        listed = (await api.http.get("/machines")).json()  # read-your-writes: POST waited for the projection
        assert [(m["name"], m["macs"], m["ip"]) for m in listed] == [
            ("web-01", ["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"], "10.0.0.5")
        ]
        assert (await api.http.get(f"/machines/{machine_id}")).json()["group_name"] == "new-machines"

        again = await api.http.post("/machines", headers=auth, json={"name": "dup", "macs": ["52-54-00-AA-BB-01"]})
        assert again.status_code == 409 and again.json()["error"]["code"] == "DPM-E105"

        async def status():
            return (await api.http.get("/statusz")).json()

        seen = await eventually(status, until=lambda s: s["relay"]["checkpoint"] >= 1, what="relay published")
        assert seen["relay"]["active"] is True and seen["projections"]["machines"]["position"] >= 1

        gone = await api.http.delete(f"/machines/{machine_id}", headers=auth)
        assert gone.status_code == 202
        assert (await api.http.get("/machines")).json() == []
        missing = await api.http.get(f"/machines/{machine_id}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "DPM-E102"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x", "macs": ["not-a-mac"]}, 422, "DPM-E101"),
        ({"name": "x", "macs": []}, 422, "DPM-E100"),
        ({"name": "", "macs": ["52-54-00-00-00-01"]}, 422, "DPM-E100"),
        ({"name": "x", "macs": ["52-54-00-00-00-01"], "ip": "999.1.1.1"}, 422, "DPM-E100"),
        ({"name": "x", "macs": "52-54-00-00-00-01", "extra": {"$gt": 1}}, 422, "DPM-E100"),
    ],
)
async def test_bad_input_gets_a_code_and_changes_nothing(api_service, auth, body, status, code) -> None:
    async with running(api_service(), headers=auth) as api:
        r = await api.http.post("/machines", headers=auth, json=body)
        assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        assert r.json()["error"]["remedy"]
        assert (await api.http.get("/machines")).json() == []


async def test_oversized_bodies_are_refused(api_service, auth) -> None:
    async with running(api_service(api_max_body=2048), headers=auth) as api:
        big = await api.http.post("/machines", json={"name": "x" * 5000, "macs": ["52-54-00-00-00-01"]})
        assert big.status_code == 413
        assert (await api.http.get("/machines")).json() == []
