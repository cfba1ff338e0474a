"""Machines and groups through the api: one record per machine however many NICs, unique MACs and
SMBIOS UUIDs (even under concurrent requests), edits, name rules, group network settings, CSV."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

pytestmark = pytest.mark.integration


def machine(name: str, *macs: str, **extra) -> dict:
    return {"name": name, "macs": list(macs), **extra}


async def names(api) -> list[str]:
    return [m["name"] for m in (await api.http.get("/machines")).json()]


async def test_macs_and_uuids_are_unique_across_machines_and_freed_by_edit_and_delete(api_service, auth) -> None:
    smbios = str(uuid.uuid4())
    async with running(api_service(), headers=auth) as api:
        first = await api.http.post(
            "/machines",
            headers=auth,
            json=machine("db-01", "52:54:00:00:01:01", "52:54:00:00:01:02", smbios_uuid=smbios),
        )
        assert first.status_code == 201
        db01 = first.json()["machine_id"]

        clash = await api.http.post("/machines", headers=auth, json=machine("db-02", "52-54-00-00-01-02"))
        assert clash.status_code == 409
        err = clash.json()["error"]
        assert err["code"] == "DPM-E105" and "52-54-00-00-01-02" in err["message"] and db01 in err["message"]
        clash = await api.http.post(
            "/machines", headers=auth, json=machine("db-03", "52:54:00:00:01:09", smbios_uuid=smbios)
        )
        assert clash.json()["error"]["code"] == "DPM-E105" and "SMBIOS" in clash.json()["error"]["message"]
        assert await names(api) == ["db-01"]  # the refused registrations claimed nothing either
        assert (
            await api.http.post("/machines", headers=auth, json=machine("ok", "52:54:00:00:01:09"))
        ).status_code == 201

        edit = await api.http.put(
            f"/machines/{db01}",
            headers=auth,
            json=machine("db-01b", "52:54:00:00:01:01", smbios_uuid=smbios, ip="10.1.1.1", os_type="linux"),
        )
        assert edit.status_code == 200, edit.text
        shown = (await api.http.get(f"/machines/{db01}")).json()
        assert (shown["name"], shown["macs"], shown["ip"], shown["os_type"]) == (
            "db-01b",
            ["52:54:00:00:01:01"],
            "10.1.1.1",
            "linux",
        )
        # the NIC the edit dropped is free for another machine now
        assert (
            await api.http.post("/machines", headers=auth, json=machine("db-02", "52:54:00:00:01:02"))
        ).status_code == 201
        assert (await api.http.delete(f"/machines/{db01}", headers=auth)).status_code == 202
        again = await api.http.post(
            "/machines", headers=auth, json=machine("db-01", "52:54:00:00:01:01", smbios_uuid=smbios)
        )
        assert again.status_code == 201 and again.json()["machine_id"] == db01  # natural key: same stream


async def test_concurrent_registrations_of_one_mac_make_exactly_one_machine(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        replies = await asyncio.gather(
            *(
                api.http.post(
                    "/machines", headers=auth, json=machine(f"race-{i}", "52:54:00:00:02:01", f"52:54:00:00:03:{i:02x}")
                )
                for i in range(8)
            )
        )
        codes = sorted(r.status_code for r in replies)
        assert codes == [201] + [409] * 7, [r.text for r in replies]
        assert len(await names(api)) == 1


@pytest.mark.parametrize(
    ("name", "os_type", "ok"),
    [
        ("web-01", None, True),
        ("web-01.example.org", "linux", True),
        ("-web", None, False),
        ("web_01", None, False),
        ("<b>x</b>", None, False),
        ("a" * 64, None, False),
        ("12345", None, False),
        ("WORKSTATION-0001", "Windows 11", False),  # 16 characters: too long for NetBIOS
        ("ws-0001", "windows server 2022", True),
    ],
)
async def test_machine_names_follow_rfc1123_and_netbios_for_windows(api_service, auth, name, os_type, ok) -> None:
    async with running(api_service(), headers=auth) as api:
        r = await api.http.post("/machines", headers=auth, json=machine(name, "52:54:00:00:04:01", os_type=os_type))
        assert (r.status_code == 201) is ok, r.text
        if not ok:
            assert r.json()["error"]["code"] == "DPM-E104"


async def test_groups_network_settings_membership_and_deletion(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        r = await api.http.put(
            "/groups/lab-b", headers=auth, json={"subnet": "192.168.0.0/24", "gateway": "192.168.0.1"}
        )
        assert r.status_code == 200 and r.json()["wol_broadcast"] == "192.168.0.255"
        bad = await api.http.put(
            "/groups/lab-c", headers=auth, json={"subnet": "192.168.0.0/24", "broadcast": "10.0.0.255"}
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "DPM-E108"
        assert [g["name"] for g in (await api.http.get("/groups")).json()] == ["new-machines", "lab-b"]

        lost = await api.http.post("/machines", headers=auth, json=machine("m1", "52:54:00:00:05:01", group="nowhere"))
        assert lost.status_code == 404 and lost.json()["error"]["code"] == "DPM-E106"
        assert (
            await api.http.post("/machines", headers=auth, json=machine("m1", "52:54:00:00:05:01", group="lab-b"))
        ).status_code == 201
        assert [m["name"] for m in (await api.http.get("/machines", params={"group": "lab-b"})).json()] == ["m1"]

        busy = await api.http.delete("/groups/lab-b", headers=auth)
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "DPM-E107"
        assert (await api.http.delete("/groups/new-machines", headers=auth)).status_code == 409


CSV = """name,macs,smbios_uuid,ip,group,os_type
web-01,52:54:00:00:06:01 52:54:00:00:06:02,,10.0.6.1,lab,linux
web-02,52:54:00:00:06:03,6f1c3a52-0000-4000-8000-000000000002,,new-machines,
ws-01,52:54:00:00:06:04,,,lab,Windows 11
"""


async def test_csv_round_trip_is_lossless_and_import_is_an_idempotent_upsert(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        assert (await api.http.put("/groups/lab", headers=auth, json={})).status_code == 200
        preview = await api.http.post("/machines/import", params={"dry_run": "true"}, headers=auth, content=CSV)
        assert preview.status_code == 200, preview.text
        assert [m["name"] for m in preview.json()["create"]] == ["web-01", "web-02", "ws-01"]
        assert await names(api) == []  # a dry run changes nothing

        applied = await api.http.post("/machines/import", headers=auth, content=CSV)
        assert applied.status_code == 200 and len(applied.json()["create"]) == 3
        exported = (await api.http.get("/machines/export")).text
        assert exported.splitlines() == CSV.splitlines()

        again = await api.http.post("/machines/import", headers=auth, content=exported)
        assert again.json() == {"dry_run": False, "create": [], "update": [], "unchanged": 3}

        changed = exported.replace("10.0.6.1", "10.0.6.99")
        diff = await api.http.post("/machines/import", params={"dry_run": "true"}, headers=auth, content=changed)
        (update,) = diff.json()["update"]
        assert update["name"] == "web-01" and update["changes"] == {"ip": ["10.0.6.1", "10.0.6.99"]}

        ids = {m["name"]: m["machine_id"] for m in (await api.http.get("/machines")).json()}
        for machine_id in ids.values():
            await api.http.delete(f"/machines/{machine_id}", headers=auth)
        await api.http.post("/machines/import", headers=auth, content=exported)
        assert (await api.http.get("/machines/export")).text == exported
        assert {m["name"]: m["machine_id"] for m in (await api.http.get("/machines")).json()} == ids


@pytest.mark.parametrize(
    ("csv_text", "line", "column"),
    [
        (CSV.replace("52:54:00:00:06:03", "52:54:00:zz:06:03"), 3, 2),
        (CSV.replace("10.0.6.1", "10.0.6"), 2, 4),
        (CSV.replace("ws-01", "ws_01"), 4, 1),
        (CSV.replace(",Windows 11", ",Windows 11,extra"), 4, 7),
        (CSV.replace("name,macs", "name,mac"), 1, 2),
        (CSV + "dup,52:54:00:00:06:01,,,,\n", 5, 2),
        (CSV.replace(",lab,linux", ",nowhere,linux"), 2, 0),
    ],
)
async def test_a_malformed_csv_changes_nothing_and_names_line_and_column(
    api_service, auth, csv_text, line, column
) -> None:
    async with running(api_service(), headers=auth) as api:
        assert (await api.http.put("/groups/lab", headers=auth, json={})).status_code == 200
        r = await api.http.post("/machines/import", headers=auth, content=csv_text)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "DPM-E110" and err["details"]["line"] == line and err["details"]["column"] == column
        assert f"line {line}" in err["message"] and "Nothing was imported" in err["message"]
        assert await names(api) == []


async def test_renaming_a_group_moves_its_machines_schedules_and_directories(
    api_service, scheduler_service, auth
) -> None:
    async with running(api_service(), headers=auth) as api, running(scheduler_service()) as sched:
        assert (await api.http.put("/groups/rack-1", json={"subnet": "10.9.1.0/24"})).is_success
        assert (await api.http.put("/groups/rack-2", json={})).is_success
        for i in range(2):
            await api.http.post("/machines", json=machine(f"r{i}", f"52:54:00:a1:00:{i:02x}", group="rack-1"))
        night = {"name": "night", "action": "power-off", "group": "rack-1", "cron": "0 22 * * *"}
        assert (await api.http.post("/schedules", json=night)).status_code == 201

        for new_name, code in (("rack-2", 422), ("new-machines", 422), ("bad/name", 422)):
            refused = await api.http.post("/groups/rack-1/rename", json={"new_name": new_name})
            assert refused.status_code == code and refused.json()["error"]["code"] == "DPM-E100", refused.text
        assert (await api.http.post("/groups/new-machines/rename", json={"new_name": "x"})).status_code == 422

        renamed = await api.http.post("/groups/rack-1/rename", json={"new_name": "row-A"})
        assert renamed.status_code == 200 and renamed.json()["wol_broadcast"] == "10.9.1.255"
        groups = {g["name"] for g in (await api.http.get("/groups")).json()}
        assert "row-A" in groups and "rack-1" not in groups
        assert {m["group_name"] for m in (await api.http.get("/machines")).json()} == {"row-A"}
        assert [s["group"] for s in (await api.http.get("/schedules")).json()] == ["row-A"]
        # the scheduler's own directory follows, so Wake-on-LAN still finds the group's broadcast
        pool = sched.runtime.pool

        async def directory() -> set:
            async with pool.connection() as conn:
                rows = await (
                    await conn.execute("SELECT DISTINCT group_name FROM scheduler.machine_directory")
                ).fetchall()
            return {r[0] for r in rows}

        await eventually(directory, until=lambda g: g == {"row-A"}, what="the scheduler's directory renamed")
        rebuilt = await api.http.post("/admin/projections/machines/rebuild")
        assert rebuilt.is_success
        assert {m["group_name"] for m in (await api.http.get("/machines")).json()} == {"row-A"}  # the log agrees
        assert (await api.http.put("/groups/rack-1", json={})).is_success  # the old name is free again
