"""A realistic log for the rebuild test: every service that keeps read models runs against one
PostgreSQL and nats-server, and the lab simulator's machines go through what an operator's fleet
does -- accounts, groups, API and CSV registration, every implemented scenario kind (backup, restore,
disk check, simulated), a multicast session, power-on, schedules fired, a suspended and failed
executions, a machine discovered by PXE, an agent enrolled and online, then edits, renames and
deletions. ``drive`` returns once every execution is final and the log is quiet."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from websockets.asyncio.client import connect

from dpm_agent_gateway.bootstrap import bootstrap as gateway_bootstrap
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_api.settings import ApiSettings
from dpm_imager.bootstrap import bootstrap as imager_bootstrap
from dpm_imager.settings import ImagerSettings
from dpm_lab.sim import Lab, LabConfig, SimMachine, fleet
from dpm_pxe.bootstrap import bootstrap as pxe_bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.service import Service
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import Running, running
from dpm_scheduler.bootstrap import bootstrap as scheduler_bootstrap
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas import agent_protocol
from dpm_schemas.agent_protocol import (
    Command,
    CommandResult,
    Facts,
    Heartbeat,
    Hello,
    InstallReport,
    Inventory,
    Welcome,
)
from dpm_schemas.events.packages import PackageOutcome
from dpm_updater.bootstrap import bootstrap as updater_bootstrap
from dpm_updater.settings import UpdaterSettings

from .conftest import ENROLMENT, PXE_TOKEN, TOKEN, common, lab_setup, run_until_done

KiB, MiB = 1024, 1024 * 1024
FINAL = ("completed", "failed", "suspended")
CSV = """name,macs,smbios_uuid,ip,group,os_type
web-01,52:54:00:b1:00:01 52:54:00:b1:00:02,,10.0.6.1,rack-1,linux
web-02,52:54:00:b1:00:03,6f1c3a52-0000-4000-8000-0000000000b2,,rack-1,
web-03,52:54:00:b1:00:04,,10.0.6.3,rack-1,linux
ws-01,52:54:00:b1:00:05,,,rack-1,Windows 11
"""


@dataclass
class Stack:
    services: dict[str, Running]  # by service name: every service, whether it has projections or not
    machines: list[SimMachine]
    lab: Lab
    database: Any  # dpm_runtime.testing.fixtures.Database: the snapshots read as its owner
    admin: dict[str, str] = field(default_factory=dict)  # an admin user's session (the bootstrap token ends)

    @property
    def api(self) -> httpx.AsyncClient:
        return self.services["api"].http


def services(database: Any, nats: Any, tmp: Path) -> tuple[list[Service], LabConfig]:
    """Every dpm service, wired for the lab as ``lab_stack`` wires api, pxe and scheduler."""
    base = common(database, nats)
    dhcp_port, pxe_dhcp_port, tftp_port = (free_port(udp=True) for _ in range(3))
    wol, imager_port = free_port(), free_port()
    imager = ImagerSettings(**base, imager_port=imager_port, relay_enabled=False, imager_root=tmp / "store",
                            imager_reserve_bytes=0, imager_gc_grace=0)  # fmt: skip
    api = ApiSettings(**base, api_port=free_port(), api_token=SecretStr(TOKEN), api_pxe_token=SecretStr(PXE_TOKEN),
                      api_imager_url=f"http://127.0.0.1:{imager_port}")  # fmt: skip
    pxe = PxeSettings(
        **base, pxe_port=free_port(), relay_enabled=False, pxe_root=boot_files(tmp / "boot"),
        pxe_service_token=SecretStr(PXE_TOKEN), pxe_dhcp_enabled=True, pxe_dhcp_host="127.0.0.1",
        pxe_dhcp_port=dhcp_port, pxe_dhcp_pxe_port=pxe_dhcp_port, pxe_tftp_enabled=True, pxe_tftp_host="127.0.0.1",
        pxe_tftp_port=tftp_port, pxe_server_ip="127.0.0.1", pxe_api_url=f"http://127.0.0.1:{api.api_port}",
    )  # fmt: skip
    scheduler = SchedulerSettings(
        **base, scheduler_port=free_port(), scheduler_wol_port=wol, scheduler_power_on_timeout=60,
        scheduler_power_on_interval=0, scheduler_concurrency=6, scheduler_tick=0.1, scheduler_wol_repeats=1,
        scheduler_suspend_timeout=2.0,
    )  # fmt: skip
    gateway = AgentGatewaySettings(
        **base, agent_gateway_port=free_port(), relay_enabled=False, agent_gateway_enrolment_token=SecretStr(ENROLMENT),
        agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=2.0,
    )  # fmt: skip
    updater = UpdaterSettings(**base, updater_port=free_port(), relay_enabled=False, updater_root=tmp / "packages")
    built = [api_bootstrap(api), pxe_bootstrap(pxe), scheduler_bootstrap(scheduler), imager_bootstrap(imager),
             gateway_bootstrap(gateway), updater_bootstrap(updater)]  # fmt: skip
    built[0].app.state.pxe_url = f"http://127.0.0.1:{pxe.pxe_port}"
    return built, LabConfig(dhcp=("127.0.0.1", dhcp_port), tftp=("127.0.0.1", tftp_port), wol_port=wol,
                            step_seconds=0.2)  # fmt: skip


def boot_files(root: Path) -> Path:
    """Stand-ins for the boot files pxe serves; the lab only counts bytes."""
    (root / "deploy").mkdir(parents=True)
    (root / "undionly.kpxe").write_bytes(b"\x90" * 70_000)
    (root / "deploy" / "vmlinuz").write_bytes(b"k" * 4096)
    (root / "deploy" / "initrd.img").write_bytes(b"i" * 4096)
    return root


@contextlib.asynccontextmanager
async def started(database: Any, nats: Any, tmp: Path):  # type: ignore[no-untyped-def]
    """Every service running and the lab listening, until the module ends."""
    built, config = services(database, nats, tmp)
    machines = fleet(9, prefix="rb")
    disks(machines, tmp)
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
        up = {s.name: await stack.enter_async_context(running(s, headers=auth(TOKEN))) for s in built}
        lab = Lab(machines[:8], config, http)  # the ninth is unknown to the lab's switch until discovery
        lab.machines[machines[8].mac] = machines[8]
        lab_task = asyncio.create_task(lab.run(stop))
        try:
            yield Stack(up, machines, lab, database)
        finally:
            stop.set()
            await lab_task


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def disks(machines: list[SimMachine], tmp: Path) -> None:
    """Disk-image files: a source with data, targets big enough, one too small; rb0003/rb0004 have none."""
    rng = random.Random(13)
    sizes = {0: 4 * MiB, 1: 6 * MiB, 2: 1 * MiB, 6: 6 * MiB, 7: 6 * MiB}
    for i, size in sizes.items():
        path = tmp / f"{machines[i].name}.img"
        with open(path, "wb") as f:
            f.truncate(size)
            if i == 0:
                for offset in range(0, size, 512 * KiB):
                    f.seek(offset)
                    f.write(rng.randbytes(64 * KiB))
        machines[i].disk = path


def soon(seconds: float = 1.5) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def ok(response: Any, status: int | tuple[int, ...] = (200, 201, 202, 204)) -> Any:
    """The response, asserting its status (a readable failure instead of a KeyError later)."""
    r = await response
    wanted = (status,) if isinstance(status, int) else status
    assert r.status_code in wanted, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    return r


async def drive(s: Stack) -> None:
    """The fleet's history; independent parts run at once to keep the wall time down."""
    s.admin = await accounts(s.api)
    await inventory(s)
    await asyncio.gather(imaging(s), simulated(s.api), agent(s), power_and_discovery(s), packages(s))
    await multicast(s)
    await schedules(s.api)
    await edits(s.api)
    await ok(s.api.post("/clear", json={"state": "failed"}))
    await ok(s.api.delete("/auth/bootstrap-token", headers=s.admin))  # from here on, the admin's session
    await settle(s)


async def accounts(api: httpx.AsyncClient) -> dict[str, str]:
    for user, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin"), ("temp", "viewer")):
        await ok(api.post("/users", json={"username": user, "password": f"{user}-secret-1", "role": role}))

    async def login(user: str) -> dict[str, str]:
        r = await ok(api.post("/auth/login", json={"username": user, "password": f"{user}-secret-1"}, headers={}))
        return auth(r.json()["token"])

    admin, operator = await login("ada"), await login("otto")
    kept = (await ok(api.post("/auth/tokens", headers=operator, json={"name": "ci"}))).json()
    dropped = (await ok(api.post("/auth/tokens", headers=operator, json={"name": "old"}))).json()
    await ok(api.delete(f"/auth/tokens/{dropped['token_id']}", headers=operator))
    await ok(api.get("/machines", headers=auth(kept["token"])))
    await ok(api.put("/users/vera/role", json={"role": "operator"}))
    await ok(api.put("/users/otto/password", json={"password": "otto-secret-2"}, headers=admin))
    await ok(api.delete("/users/temp"))
    await ok(api.post("/auth/logout", headers=await login("vera")))
    return admin


async def inventory(s: Stack) -> None:
    api = s.api
    await lab_setup(api, s.machines[:8])  # boot settings, the loopback group, the lab machines by API
    for group in ("rack-1", "rack-2", "spare"):
        await ok(api.put(f"/groups/{group}", json={"subnet": "10.0.6.0/24"} if group == "rack-1" else {}))
    await ok(api.post("/machines/import", content=CSV))


async def packages(s: Stack) -> None:
    """Content uploaded in two pieces and registered twice (revisions 1, 2), an upload whose digest
    lies (aborted), a package registered and removed, a package source whose sync fails."""
    api, updater = s.api, s.services["updater"].http
    data = b"\x7fpackage" * 5000
    for declared in (hashlib.sha256(data).hexdigest(), "0" * 64):
        grant = (await ok(api.post("/packages/uploads", json={"size": len(data), "sha256": declared}))).json()
        for start, end in ((0, 1000), (1000, len(data))):
            headers = {"Authorization": f"Bearer {grant['token']}", "Upload-Offset": str(start),
                       "Content-Type": "application/offset+octet-stream"}  # fmt: skip
            await ok(updater.patch(f"/v1/uploads/{grant['upload_id']}", content=data[start:end], headers=headers),
                     (200, 204, 422))  # fmt: skip
        if declared != "0" * 64:
            body = {"definition": {"id": "hello", "type": "deb"}, "upload_id": grant["upload_id"]}
            await ok(api.post("/packages", json=body))
            await ok(api.post("/packages", json={"definition": {"id": "hello", "type": "deb", "urgency": "high"}}))
    await ok(
        api.post("/packages", json={"definition": {"id": "gone", "type": "script", "execution": {"command": "true"}}})
    )
    await ok(api.delete("/packages/gone"))
    source = {"name": "lab", "url": "http://127.0.0.1:9/debian", "include": ["hello"]}  # nothing listens: DPM-E254
    await ok(api.post("/sources", json=source))
    await eventually(lambda: api.get("/sources/lab"), until=lambda r: r.json()["last_sync"] is not None,
                     what="the lab source's failed sync")  # fmt: skip


async def imaging(s: Stack) -> None:
    """Backups of two machines, a restore that completes and one refused (disk too small), disk checks,
    an image verified and one deleted."""
    api, m = s.api, s.machines
    backup = {"kind": "backup", "params": {"image": "golden/{machine}", "mode": "full"}}
    await ok(api.post("/scenarios", json={"name": "take", "spec": backup}))
    rows = await run_until_done(api, "take", {"machines": [m[0].name, m[1].name]}, 2, timeout=60)
    assert {r["state"] for r in rows} == {"completed"}, rows
    restore = {"kind": "restore", "params": {"image": f"golden/{m[0].name}"}}
    await ok(api.post("/scenarios", json={"name": "put", "spec": restore}))
    rows = await run_until_done(api, "put", {"machines": [m[1].name, m[2].name]}, 2, timeout=60)
    assert sorted(r["state"] for r in rows) == ["completed", "failed"], rows
    await ok(api.post("/scenarios", json={"name": "look", "spec": {"kind": "disk-check"}}))
    rows = await run_until_done(api, "look", {"machines": [m[1].name, m[3].name, m[4].name]}, 3, timeout=60)
    assert {r["state"] for r in rows} == {"completed"}, rows
    await ok(api.post(f"/images/golden/{m[0].name}/verify"))
    await ok(api.delete(f"/images/golden/{m[1].name}"))


async def multicast(s: Stack) -> None:
    """A multicast restore to two lab machines: the session starts when both are ready."""
    api, m = s.api, s.machines
    spec = {"kind": "restore", "multicast": {"group": "239.9.9.1", "max_targets": 2, "max_wait_seconds": 30},
            "params": {"image": f"golden/{m[0].name}"}}  # fmt: skip
    await ok(api.post("/scenarios", json={"name": "mc", "spec": spec}))
    rows = await run_until_done(api, "mc", {"machines": [m[6].name, m[7].name]}, 2, timeout=60)
    assert rows, rows


async def simulated(api: httpx.AsyncClient) -> None:
    """Simulated steps on the CSV machines: a run that completes, a revision, and one suspended."""
    quick = {"kind": "simulated", "params": {"seconds": "0.2"}}
    await ok(api.post("/scenarios", json={"name": "sim", "spec": quick}))
    rows = await run_until_done(api, "sim", {"group": "rack-1"}, 4, timeout=60)
    assert {r["state"] for r in rows} == {"completed"}, rows
    await ok(api.put("/scenarios/sim", json={"name": "sim", "spec": {**quick, "timeout_seconds": 600}}))
    await ok(api.post("/scenarios", json={"name": "long", "spec": {"kind": "simulated", "params": {"seconds": "600"}}}))
    run = (await ok(api.post("/scenarios/long/runs", json={"machines": ["web-03"]}))).json()
    row = await until_state(api, run["run_id"], ("running",))
    await ok(api.post(f"/executions/{row['execution_id']}/suspend"))
    await until_state(api, run["run_id"], ("suspended",))
    await ok(api.post("/clear", json={"machines": ["web-03"]}))


async def until_state(api: httpx.AsyncClient, run_id: str, states: tuple[str, ...]) -> dict:
    async def rows() -> list[dict]:
        return list((await api.get("/executions", params={"run_id": run_id})).json())

    got = await eventually(rows, until=lambda r: bool(r) and r[0]["state"] in states, timeout=30, what=str(states))
    return got[0]


async def agent(s: Stack) -> None:
    """An agent enrols (the machine registers itself), comes online, is refused a netboot scenario
    without a reboot (DPM-E141, a failed execution), goes offline, re-enrols with a bound token and
    is revoked."""
    api, gw = s.api, s.services["agent-gateway"].http
    facts = Facts(macs=("52:54:0c:00:00:01",), smbios_uuid=uuid.UUID(int=0xA6E << 64 | 1), hostname="agent-01.lab")
    body = {"enrolment_token": ENROLMENT, "facts": facts.model_dump(mode="json")}
    enrolled = (await ok(gw.post(agent_protocol.ENROL_PATH, json=body))).json()
    url = f"ws://127.0.0.1:{s.services['agent-gateway'].service.port}{agent_protocol.AGENT_PATH}"
    async with connect(url, additional_headers=auth(enrolled["token"])) as ws:
        await ws.send(agent_protocol.encode(Hello(agent_version="0.1.0", facts=facts)))
        assert isinstance(agent_protocol.decode(await ws.recv()), Welcome)  # type: ignore[arg-type]
        beating = asyncio.create_task(heartbeats(ws))  # the session stays up, however long the steps take
        try:
            report = Inventory(os="Debian GNU/Linux 12", kernel="6.1.0", packages=("hello=2.10-2",), digest="rb-1")
            await ws.send(agent_protocol.encode(report))
            await until_machine(api, "agent-01", lambda m: bool(m["online"]))
            await ok(api.post("/scenarios", json={"name": "check-now", "spec": {"kind": "disk-check"}}))
            rows = await run_until_done(api, "check-now", {"machines": ["agent-01"]}, 1, timeout=30)
            assert rows[0]["code"] == "DPM-E141", rows
            await remote_update(s, ws)
        finally:
            beating.cancel()
    await until_machine(api, "agent-01", lambda m: not m["online"])
    bound = (await ok(api.post("/agents/enrolment-tokens", json={"machine": "agent-01"}))).json()
    body = {"enrolment_token": bound["token"], "facts": facts.model_dump(mode="json")}
    await eventually(lambda: gw.post(agent_protocol.ENROL_PATH, json=body), until=lambda r: r.status_code == 200,
                     what="the bound enrolment token learnt")  # fmt: skip
    await ok(api.post(f"/machines/{enrolled['machine_id']}/agent/revoke"))


async def heartbeats(ws: Any) -> None:
    for seq in range(1000):
        await ws.send(agent_protocol.encode(Heartbeat(seq=seq)))
        await asyncio.sleep(0.5)


async def remote_update(s: Stack, ws: Any) -> None:
    """A command-only package delivered by scenario (the agent's side played by hand: it accepts the
    order and reports the outcome to the updater), an auto-update time, and a rollout to an offline
    group (its rings pass with nobody to deliver to)."""
    api, updater = s.api, s.services["updater"].http
    tool = {"id": "tool", "type": "script", "execution": {"command": "true"}}
    await ok(api.post("/packages", json={"definition": tool}))
    spec = {"kind": "remote-update", "params": {"packages": "tool"}}
    await ok(api.post("/scenarios", json={"name": "patch-now", "spec": spec}))
    await ok(api.post("/clear", json={"machines": ["agent-01"]}))  # its disk check failed (DPM-E141)
    run = (await ok(api.post("/scenarios/patch-now/runs", json={"machines": ["agent-01"]}))).json()
    cmd = agent_protocol.decode(await asyncio.wait_for(ws.recv(), 30))
    assert isinstance(cmd, Command) and cmd.install is not None, cmd
    await ws.send(agent_protocol.encode(CommandResult(id=cmd.id, ok=True)))
    outcome = PackageOutcome(package_id="tool", revision=1, ok=True, exit_code=0, output_tail="done\n")
    final = InstallReport(execution_id=cmd.install.execution_id, status="completed", outcomes=(outcome,))
    await ok(
        updater.post(agent_protocol.REPORT_PATH, json=final.model_dump(mode="json"), headers=auth(cmd.install.token))
    )
    await until_state(api, run["run_id"], ("completed",))
    await ok(api.put("/machines/agent-01/auto-update", json={"at": "03:00", "timezone": "Europe/Berlin"}))
    rollout = (await ok(api.post("/rollouts", json={"package": "tool", "rings": ["rack-2", "spare"]}))).json()
    await eventually(lambda: api.get(f"/rollouts/{rollout['rollout_id']}"),
                     until=lambda r: r.json()["state"] == "completed", what="the rollout")  # fmt: skip


async def until_machine(api: httpx.AsyncClient, name: str, until: Any) -> dict:
    async def row() -> dict:
        return next((m for m in (await api.get("/machines")).json() if m["name"] == name), {})

    return await eventually(row, until=lambda m: bool(m) and until(m), timeout=20, what=f"{name} as wanted")


async def power_and_discovery(s: Stack) -> None:
    """A registered lab machine powered on (it boots locally and stays on); an unregistered one
    network-boots and is discovered by pxe."""
    m = s.machines
    machine = await until_machine(s.api, m[5].name, bool)
    await ok(s.api.post(f"/machines/{machine['machine_id']}/power/on"))
    s.lab.power_on(m[8])
    await eventually(lambda: asyncio.sleep(0, m[5].stages), until=lambda st: "local" in st, what="rb0005 on")
    await eventually(lambda: asyncio.sleep(0, m[8].stages), until=lambda st: "local" in st, what="rb0008 booted")

    async def discovered() -> list[dict]:
        return [x for x in (await s.api.get("/machines")).json() if m[8].mac in x["macs"]]

    await eventually(discovered, what="the discovered machine")


async def schedules(api: httpx.AsyncClient) -> None:
    """A power-off and a run fired once, a recurring one kept, one deleted."""
    await ok(api.post("/schedules", json={"name": "off", "action": "power-off", "machines": ["rb0005"], "at": soon()}))
    await ok(api.post("/schedules", json={"name": "again", "action": "run", "scenario": "sim",
                                          "machines": ["web-01", "web-02"], "at": soon()}))  # fmt: skip
    await ok(api.post("/schedules", json={"name": "night", "action": "power-off", "group": "rack-1",
                                          "cron": "0 22 * * *"}))  # fmt: skip
    gone = (await ok(api.post("/schedules", json={"name": "gone", "action": "power-on", "group": "rack-2",
                                                  "cron": "0 6 * * 1-5"}))).json()  # fmt: skip
    await ok(api.delete(f"/schedules/{gone['schedule_id']}"))

    async def fired() -> list[dict]:
        return [r for r in (await api.get("/executions", params={"scenario": "sim"})).json() if r["revision"] == 2]

    await eventually(fired, until=lambda r: len(r) == 2 and {x["state"] for x in r} <= set(FINAL), timeout=30,
                     what="the scheduled run done")  # fmt: skip


async def edits(api: httpx.AsyncClient) -> None:
    """An edit, a rename, a deletion, a group renamed (moving machines and a schedule), a group and a
    scenario deleted."""
    ids = {m["name"]: m for m in (await api.get("/machines")).json()}
    web1 = ids["web-01"]
    body = {"name": "web-01", "macs": web1["macs"], "ip": "10.0.6.99", "group": "rack-1", "os_type": "linux"}
    await ok(api.put(f"/machines/{web1['machine_id']}", json=body))
    ws = ids["ws-01"]
    await ok(api.put(f"/machines/{ws['machine_id']}", json={"name": "ws-07", "macs": ws["macs"], "group": "rack-2"}))
    await ok(api.delete(f"/machines/{ids['web-02']['machine_id']}"))
    await ok(api.post("/groups/rack-1/rename", json={"new_name": "row-a"}))
    await ok(api.delete("/groups/spare"))
    await ok(api.delete("/scenarios/long"))


async def settle(s: Stack) -> None:
    """No execution left in flight, and every projection of every service caught up with the head."""

    async def in_flight() -> list[dict]:
        rows = (await s.api.get("/executions", headers=s.admin)).json()
        return [r for r in rows if r["state"] not in FINAL]

    await eventually(in_flight, until=lambda r: r == [], timeout=30, what="every execution final")
    for name, svc in s.services.items():
        rt = svc.runtime
        head = await rt.eventlog.head()
        for runner in rt.projections.values():
            assert await runner.wait_for(head, timeout=30), f"{name}.{runner.projection.name} behind {head}"
