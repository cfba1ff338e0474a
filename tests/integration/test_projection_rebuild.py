"""The machine list projection rebuilt from position 0 equals the live one, row for row; and events
appended while a rebuild runs are neither lost nor doubled by the swap."""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
import psycopg
import pytest

from dpm_api.domain.view import MachineRow, evolve, target_of
from dpm_api.projections import COLUMNS
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    MachineBooted,
    MachineCameOnline,
    MachineDeleted,
    MachineRegistered,
    MachineRenamed,
    MachineWentOffline,
)
from dpm_schemas.events.boot import Arch, BootStage
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration


def history(rng: random.Random, machines: int, events: int) -> list[tuple[str, object]]:
    """A plausible fleet history: registrations, then boots from any NIC, presence, renames, deletions."""
    out: list[tuple[str, object]] = []
    fleet: dict[uuid.UUID, tuple[str, ...]] = {}
    for n in range(machines):
        mid = uuid.uuid4()
        macs = tuple(f"52:54:00:{n // 256:02x}:{n % 256:02x}:{k:02x}" for k in range(rng.choice([1, 2, 3])))
        fleet[mid] = macs
        out.append((mid.hex, MachineRegistered(machine_id=mid, name=f"m{n:03d}", macs=macs)))
    ids = list(fleet)
    for i in range(events):
        mid = rng.choice(ids)
        kind = rng.random()
        if kind < 0.7:
            ev: object = MachineBooted(
                mac=rng.choice(fleet[mid]),
                arch=rng.choice(list(Arch)),
                client_ip=f"10.0.{i % 200}.{i % 250 + 1}",
                stage=rng.choice(list(BootStage)),
            )
            out.append(("boot-" + rng.choice(fleet[mid]), ev))
            continue
        if kind < 0.85:
            ev = MachineCameOnline(machine_id=mid, agent_version="0.1.0")
        elif kind < 0.95:
            ev = MachineWentOffline(machine_id=mid, reason="heartbeat timeout")
        elif kind < 0.99:
            ev = MachineRenamed(machine_id=mid, name=f"renamed-{i}")
        else:
            ev = MachineDeleted(machine_id=mid)
        out.append((mid.hex, ev))
    return out


async def append_all(eventlog, items) -> None:
    for key, ev in items:
        category = subjects.BOOT if key.startswith("boot-") else subjects.MACHINE
        await eventlog.append(
            stream_id(category, key.removeprefix("boot-")), ANY_VERSION, [NewEvent(ev, Metadata.new())]
        )  # type: ignore[arg-type]


async def snapshot(database) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(database.admin_url) as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM api.machines ORDER BY machine_id")
        return await cur.fetchall()


async def folded(eventlog) -> list[tuple]:
    """The expected table, folded in memory by the pure domain functions."""
    rows: dict[uuid.UUID, MachineRow | None] = {}
    by_mac: dict[str, uuid.UUID] = {}
    async for batch in eventlog.batches():
        for rec in batch:
            mid = target_of(rec.event, by_mac)
            if mid is None:
                continue
            rows[mid] = after = evolve(rec.event, rows.get(mid), rec)
            if after:
                by_mac.update(dict.fromkeys(after.macs, mid))
    return sorted(
        (
            (r.machine_id, r.name, list(r.macs), *tuple(r[i] for i in range(3, len(COLUMNS))))
            for r in rows.values()
            if r
        ),
        key=lambda t: t[0],
    )


async def test_rebuilt_equals_live_row_for_row(api_service, auth, database) -> None:
    async with running(api_service(), headers=auth) as api:
        rt = api.runtime
        items = history(random.Random(1), machines=60, events=3000)
        await append_all(rt.eventlog, items)
        assert await rt.projections["machines"].wait_for(await rt.eventlog.head(), timeout=30)
        live = await snapshot(database)
        assert len(live) > 30 and any(row[COLUMNS.index("boot_count")] > 0 for row in live)

        r = await api.http.post("/admin/projections/machines/rebuild", headers=auth)
        assert r.status_code == 200, r.text
        # every machine event was folded; the log also holds the bootstrap token's first use
        # (recorded by this very request), which the machines projection does not read
        assert (r.json()["events"], r.json()["position"]) == (len(items), await rt.eventlog.head())
        assert await snapshot(database) == live
        assert [tuple(x) for x in live] == [tuple(x) for x in await folded(rt.eventlog)]


async def test_events_appended_during_a_rebuild_survive_the_swap(api_service, auth, database) -> None:
    async with running(api_service(), headers=auth) as api:
        rt = api.runtime
        items = history(random.Random(2), machines=40, events=4000)
        await append_all(rt.eventlog, items[:3000])
        writer = asyncio.create_task(append_all(rt.eventlog, items[3000:]))
        r = await api.http.post("/admin/projections/machines/rebuild", headers=auth)
        assert r.status_code == 200, r.text
        await writer
        assert await rt.projections["machines"].wait_for(await rt.eventlog.head(), timeout=30)
        assert [tuple(x) for x in await snapshot(database)] == [tuple(x) for x in await folded(rt.eventlog)]


async def test_unknown_projection_and_unauthenticated_rebuild_are_refused(api_service, auth) -> None:
    async with running(api_service(), headers=auth) as api:
        r = await api.http.post("/admin/projections/nope/rebuild", headers=auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "DPM-E020"
        async with httpx.AsyncClient(base_url=api.url) as bare:
            r = await bare.post("/admin/projections/machines/rebuild")
        assert r.status_code == 401


async def test_an_agent_online_before_its_registration_shows_online(api_service, auth, database) -> None:
    """An agent that enrols and says hello at once: the gateway's MachineCameOnline reaches the log
    before the api's reaction registers the machine. The machine is online, live and after a rebuild;
    one that came online and went offline before its registration is not."""
    online, offline = uuid.uuid4(), uuid.uuid4()
    async with running(api_service(), headers=auth) as api:
        rt = api.runtime

        async def append(category: str, mid: uuid.UUID, event: object) -> None:
            new = [NewEvent(event, Metadata.new())]  # type: ignore[arg-type]
            await rt.eventlog.append(stream_id(category, mid), ANY_VERSION, new)

        for mid in (online, offline):
            await append(subjects.AGENT, mid, MachineCameOnline(machine_id=mid, agent_version="0.1.0"))
        await append(subjects.AGENT, offline, MachineWentOffline(machine_id=offline, reason="gone"))
        for n, mid in enumerate((online, offline)):
            registered = MachineRegistered(machine_id=mid, name=f"early-{n}", macs=(f"52:54:00:ee:00:0{n}",))
            await append(subjects.MACHINE, mid, registered)

        async def states() -> dict[str, tuple[bool, str | None]]:
            r = await api.http.get("/machines", headers=auth)
            return {m["name"]: (m["online"], m["agent_version"]) for m in r.json()}

        want = {"early-0": (True, "0.1.0"), "early-1": (False, None)}
        assert await rt.projections["machines"].wait_for(await rt.eventlog.head(), timeout=30)
        assert await states() == want
        r = await api.http.post("/admin/projections/machines/rebuild", headers=auth)
        assert r.status_code == 200, r.text
        assert await states() == want
