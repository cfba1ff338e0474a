"""The boot network as an attacker sees it (issue 12 items 5, 9, 12, 14): pxe's operator routes answer
only the api; one deploy token per execution, only for the address pxe saw the machine boot from,
renewed by every call of its deploy environment and dead once the step ends; a discovery flood is cut
at its bound and counted; an operator takes over an identity a discovered machine squatted; TFTP
listens where DPM_HTTP_HOST says; an over-long file name is a 404 with a code."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid

import httpx
import pytest

from dpm_netproto import tftp as tp
from dpm_netproto.dhcp import (
    BOOTREQUEST,
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_USER_CLASS,
    OPT_VENDOR_CLASS,
    REQUEST,
    DhcpPacket,
    build,
)
from dpm_pxe.settings import PxeSettings
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import ManualClock as Clock
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    DeployTokenIssued,
    ExecutionCompleted,
    ExecutionQueued,
    MachineDeleted,
    MachineDiscovered,
    NetbootRequested,
)
from dpm_schemas.events.boot import Arch, DhcpMode
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec
from dpm_schemas.ids import stream_id

from .conftest import PXE_TOKEN

pytestmark = pytest.mark.integration

MAC = "52:54:00:bb:00:01"


async def events_of(eventlog, sid: str) -> list:
    return [rec.event for rec in await eventlog.read_stream(sid)]


async def append(eventlog, sid: str, *events) -> None:
    await eventlog.append(sid, ANY_VERSION, [NewEvent(e, Metadata.new(actor="scheduler")) for e in events])


async def test_pxe_answers_explain_recent_and_leases_only_to_the_api(api_service, pxe_service, auth) -> None:
    pxe = pxe_service()
    api = api_service(api_pxe_url=f"http://127.0.0.1:{pxe.port}")
    async with running(api, headers=auth) as a, running(pxe) as p:
        for path in (f"/boot/{MAC}/explain", "/boot/recent", "/dhcp/leases"):
            for headers in ({}, {"Authorization": "Bearer guess"}, auth):
                r = await p.http.get(path, headers=headers)
                assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E133", (path, headers)
            ok = await p.http.get(path, headers={"Authorization": f"Bearer {PXE_TOKEN}"})
            assert ok.status_code == 200, path
        assert (await a.http.get(f"/boot/machines/{MAC}")).json()["action"] == "local"
        assert (await a.http.get("/boot/recent")).status_code == 200
        assert (await a.http.get("/dhcp/leases")).status_code == 200
        anonymous = await a.http.get("/boot/recent", headers={"Authorization": ""})
        assert anonymous.status_code == 401


async def _deploy_setup(a, eventlog, *, kind: ScenarioKind = ScenarioKind.BACKUP) -> tuple[uuid.UUID, uuid.UUID]:
    """A registered machine whose execution waits for its network boot (the scheduler's events by hand)."""
    r = await a.http.post("/machines", json={"name": "pc1", "macs": [MAC]})
    machine_id = uuid.UUID(r.json()["machine_id"])
    execution = uuid.uuid4()
    spec = ScenarioSpec(kind=kind, params=(("image", "img-{name}"),))
    queued = ExecutionQueued(
        execution_id=execution, run_id=uuid.uuid4(), machine_id=machine_id, scenario_id=uuid.uuid4(), revision=1,
        name="backup", spec=spec,
    )  # fmt: skip
    await append(
        eventlog,
        stream_id(subjects.EXECUTION, execution),
        queued,
        NetbootRequested(machine_id=machine_id, execution_id=execution),
    )
    return machine_id, execution


def from_address(url: str, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (another loopback address: another machine)."""
    return httpx.AsyncClient(base_url=url, transport=httpx.AsyncHTTPTransport(local_address=address), timeout=30)


async def _script(p, mac: str = MAC) -> str:
    async def fetched() -> str | None:
        text = (await p.http.get(f"/boot/{mac}.ipxe")).text
        return text if "dpm.token=" in text else None

    return await eventually(fetched, timeout=10, what="pxe serves the deploy environment")


def _token(script: str) -> str:
    return re.search(r"dpm\.token=(\S+)", script).group(1)  # type: ignore[union-attr]


async def test_one_token_per_execution_for_the_client_that_fetched_it(api_service, pxe_service, auth) -> None:
    api = api_service()
    pxe = pxe_service(pxe_api_url=f"http://127.0.0.1:{api.port}")
    async with running(api, headers=auth) as a, running(pxe) as p:
        eventlog = a.runtime.eventlog
        machine_id, execution = await _deploy_setup(a, eventlog)
        first = _token(await _script(p))
        again = (await p.http.get(f"/boot/{MAC}.ipxe")).text  # a firmware retry: the same token again
        assert _token(again) == first
        async with from_address(p.url, "127.0.0.2") as other:  # another client asking for that MAC
            stolen = (await other.get(f"/boot/{MAC}.ipxe")).text
        assert "dpm.token" not in stolen and "another client" in stolen and "sanboot" in stolen
        issued = [
            e for e in await events_of(eventlog, stream_id(subjects.BOOT, MAC)) if isinstance(e, DeployTokenIssued)
        ]
        assert len(issued) == 1 and issued[0].client_ip == "127.0.0.1" and issued[0].execution_id == execution

        bearer = {"Authorization": f"Bearer {first}"}
        step = await a.http.get("/deploy/v1/step", params={"execution_id": str(execution)}, headers=bearer)
        assert step.status_code == 200 and step.json()["machine_id"] == str(machine_id)
        assert step.json()["end"] == "reboot"  # a backup without power_off_at_end: back into its OS
        async with from_address(a.url, "127.0.0.2") as other:  # the token copied to another host
            r = await other.get("/deploy/v1/step", params={"execution_id": str(execution)}, headers=bearer)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E134"

        # the execution ends: the token is refused everywhere, image transfers included
        await append(
            eventlog,
            stream_id(subjects.EXECUTION, execution),
            ExecutionCompleted(execution_id=execution, machine_id=machine_id),
        )

        async def refused() -> httpx.Response | None:
            r = await a.http.get("/deploy/v1/step", params={"execution_id": str(execution)}, headers=bearer)
            return r if r.status_code == 401 else None

        r = await eventually(refused, timeout=10, what="the token dies with its execution")
        assert r.json()["error"]["code"] == "DPM-E134" and "completed" in r.json()["error"]["message"]
        opened = await a.http.post("/deploy/v1/transfers", json={"execution_id": str(execution)}, headers=bearer)
        assert opened.status_code == 401 and opened.json()["error"]["code"] == "DPM-E134"
        report = {"execution_id": str(execution), "status": "completed", "percent": 100}
        late = await a.http.post("/deploy/v1/steps", json=report, headers=bearer)
        assert late.status_code == 401


async def test_every_deploy_call_renews_the_token_past_its_idle_time(api_service, pxe_service, auth) -> None:
    api = api_service()
    clock = Clock()
    api.app.state.clock = clock
    pxe = pxe_service(pxe_api_url=f"http://127.0.0.1:{api.port}", pxe_deploy_token_ttl=60)
    async with running(api, headers=auth) as a, running(pxe) as p:
        _machine_id, execution = await _deploy_setup(a, a.runtime.eventlog)
        bearer = {"Authorization": f"Bearer {_token(await _script(p))}"}
        query = {"execution_id": str(execution)}
        for _ in range(3):  # step polls only (a client waiting for its multicast session): 135 s > 60 s idle
            clock.advance(seconds=45)
            r = await a.http.get("/deploy/v1/step", params=query, headers=bearer)
            assert r.status_code == 200, r.text
        clock.advance(seconds=45)  # a progress report renews it too
        report = {"execution_id": str(execution), "status": "progress", "percent": 5}
        assert (await a.http.post("/deploy/v1/steps", json=report, headers=bearer)).status_code == 202
        clock.advance(seconds=61)  # then silence past its idle time: it expired
        r = await a.http.get("/deploy/v1/step", params=query, headers=bearer)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E134"
        assert "expired" in r.json()["error"]["message"]


def test_the_token_outlives_the_schedulers_no_response_timeout_by_default() -> None:
    """The scheduler fails a silent execution after its no-response timeout; the token must not die first."""
    idle = PxeSettings.model_fields["pxe_deploy_token_ttl"].default
    assert idle >= SchedulerSettings.model_fields["scheduler_no_response_timeout"].default == 1800


def _dhcp_request(mac: str, address: str, port: int) -> None:
    """iPXE's DHCP REQUEST for the address a plain DHCP server offered it (proxy mode: pxe only hears it)."""
    packet = DhcpPacket(
        op=BOOTREQUEST,
        xid=0x1234,
        chaddr=bytes.fromhex(mac.replace(":", "")),
        options={
            OPT_MESSAGE_TYPE: bytes([REQUEST]),
            OPT_REQUESTED_IP: socket.inet_aton(address),
            OPT_VENDOR_CLASS: b"PXEClient:Arch:00000:UNDI:002001",
            OPT_USER_CLASS: b"iPXE",
        },
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        s.sendto(build(packet), ("127.0.0.1", port))


async def test_the_deploy_environment_goes_only_to_the_address_pxe_saw_boot(api_service, pxe_service, auth) -> None:
    api = api_service()
    dhcp = free_port(udp=True)
    pxe = pxe_service(
        pxe_api_url=f"http://127.0.0.1:{api.port}", pxe_dhcp_enabled=True, pxe_dhcp_host="127.0.0.1",
        pxe_dhcp_port=dhcp, pxe_dhcp_pxe_port=free_port(udp=True), pxe_dhcp_mode=DhcpMode.PROXY,
        pxe_server_ip="127.0.0.1",
    )  # fmt: skip
    service = {"Authorization": f"Bearer {PXE_TOKEN}"}
    async with running(api, headers=auth) as a, running(pxe) as p:
        eventlog = a.runtime.eventlog
        _machine_id, execution = await _deploy_setup(a, eventlog)

        async def pending() -> bool:
            return (await p.http.get(f"/boot/{MAC}/explain", headers=service)).json()["action"] == "deploy"

        await eventually(pending, timeout=10, what="pxe sees the netboot request")
        async with from_address(p.url, "127.0.0.7") as attacker:  # polls the MAC before the machine boots
            early = (await attacker.get(f"/boot/{MAC}.ipxe")).text
        assert "dpm.token" not in early and "sanboot" in early and "DPM-E136" in early

        _dhcp_request(MAC, "127.0.0.5", dhcp)  # the machine boots: its DHCP names its address

        async def machine_script() -> str | None:
            async with from_address(p.url, "127.0.0.5") as machine:
                text = (await machine.get(f"/boot/{MAC}.ipxe")).text
            return text if "dpm.token=" in text else None

        token = _token(await eventually(machine_script, timeout=10, what="the machine gets its deploy environment"))
        async with from_address(p.url, "127.0.0.7") as attacker:  # and after its DHCP, still not the attacker
            late = (await attacker.get(f"/boot/{MAC}.ipxe")).text
        assert "dpm.token" not in late and "sanboot" in late and "DPM-E136" in late
        issued = [
            e for e in await events_of(eventlog, stream_id(subjects.BOOT, MAC)) if isinstance(e, DeployTokenIssued)
        ]
        assert [(e.client_ip, e.execution_id) for e in issued] == [("127.0.0.5", execution)]
        async with from_address(a.url, "127.0.0.5") as machine:
            r = await machine.get(
                "/deploy/v1/step", params={"execution_id": str(execution)}, headers={"Authorization": f"Bearer {token}"}
            )
        assert r.status_code == 200, r.text


async def test_a_discovery_flood_is_cut_at_its_bound_and_counted(api_service, pxe_service, auth) -> None:
    pxe = pxe_service(pxe_discovery_burst=5, pxe_discovery_rate=0.001)
    async with running(api_service(), headers=auth) as a, running(pxe) as p:
        eventlog = a.runtime.eventlog
        macs = [f"52:54:00:cc:00:{i:02x}" for i in range(30)]
        for mac in macs:
            r = await p.http.get(f"/boot/{mac}.ipxe", params={"uuid": str(uuid.uuid4())})
            assert r.status_code == 200 and "sanboot" in r.text  # each still boots its disk
        recorded = [mac for mac in macs if await eventlog.read_stream(stream_id(subjects.BOOT, mac))]
        assert recorded == macs[:5]
        counters = (await p.http.get("/statusz")).json()["counters"]
        assert counters["discovery_dropped"] == 25 and counters["discovery_recorded"] == 5


async def test_the_new_machines_group_is_bounded(api_service, auth) -> None:
    async with running(api_service(api_discovery_max_machines=3), headers=auth) as a:
        for i in range(5):
            mac = f"52:54:00:dd:00:{i:02x}"
            await append(
                a.runtime.eventlog, stream_id(subjects.BOOT, mac), MachineDiscovered(mac=mac, arch=Arch.BIOS_X86)
            )

        async def handled() -> bool:
            return a.runtime.consumers["api-boot"].stats.handled >= 5

        await eventually(handled, timeout=15, what="every discovery handled")

        async def listed() -> int:
            return len((await a.http.get("/machines")).json())

        await eventually(listed, until=lambda n: n == 3, timeout=15, what="three machines, not five")


async def test_an_operator_takes_over_an_identity_a_discovered_machine_squatted(api_service, auth) -> None:
    smbios = uuid.uuid4()
    async with running(api_service(), headers=auth) as a:
        eventlog = a.runtime.eventlog
        squat = MachineDiscovered(mac=MAC, arch=Arch.BIOS_X86, client_uuid=smbios)  # caller-chosen UUID
        await eventlog.append(stream_id(subjects.BOOT, MAC), ANY_VERSION, [NewEvent(squat, Metadata.new(actor="pxe"))])

        async def discovered() -> list | None:
            return (await a.http.get("/machines")).json() or None

        (squatter,) = await eventually(discovered, timeout=15, what="the discovered machine registered")
        assert squatter["group_name"] == "new-machines"
        r = await a.http.post("/machines", json={"name": "pc1", "macs": [MAC], "smbios_uuid": str(smbios)})
        assert r.status_code == 201, r.text

        async def only_pc1() -> bool:
            return [m["name"] for m in (await a.http.get("/machines")).json()] == ["pc1"]

        await eventually(only_pc1, timeout=15, what="the operator's machine replaces the discovered one")
        deleted = [
            rec
            for rec in await eventlog.read_stream(stream_id(subjects.MACHINE, squatter["machine_id"]))
            if isinstance(rec.event, MachineDeleted)
        ]
        assert deleted and deleted[0].metadata.actor != "pxe-discovery"  # the operator's act, in the log

        # a discovered machine an operator already touched is theirs: that conflict is still refused
        other = "52:54:00:bb:00:09"
        await eventlog.append(
            stream_id(subjects.BOOT, other),
            ANY_VERSION,
            [NewEvent(MachineDiscovered(mac=other, arch=Arch.BIOS_X86), Metadata.new(actor="pxe"))],
        )

        async def second() -> dict | None:
            return next((m for m in (await a.http.get("/machines")).json() if other in m["macs"]), None)

        row = await eventually(second, timeout=15, what="the second discovery registered")
        edit = {"name": row["name"], "macs": [other], "group": "new-machines", "os_type": "linux"}
        assert (await a.http.put(f"/machines/{row['machine_id']}", json=edit)).is_success
        clash = await a.http.post("/machines", json={"name": "pc2", "macs": [other]})
        assert clash.status_code == 409 and clash.json()["error"]["code"] == "DPM-E105"


async def test_tftp_listens_where_dpm_http_host_says(pxe_service, tmp_path) -> None:
    port = free_port(udp=True)
    pxe = pxe_service(pxe_tftp_enabled=True, pxe_tftp_port=port)  # DPM_HTTP_HOST is 127.0.0.1
    (tmp_path / "boot").mkdir(exist_ok=True)
    (tmp_path / "boot" / "f.bin").write_bytes(b"x" * 100)

    async def ask(address: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(tp.request("f.bin"), (address, port))
            try:
                return await asyncio.wait_for(loop.sock_recv(s, 2048), 1.0)
            except (TimeoutError, ConnectionRefusedError):
                return None

    async with running(pxe):
        assert await eventually(lambda: ask("127.0.0.1"), timeout=10, what="TFTP answers on 127.0.0.1")
        assert await ask("127.0.0.2") is None  # 0.0.0.0 used to answer every address of the host


async def test_an_over_long_file_name_is_a_404_with_a_code(pxe_service) -> None:
    async with running(pxe_service()) as p:
        r = await p.http.get("/files/" + "a" * 300)
        assert r.status_code == 404 and r.json()["error"]["code"] == "DPM-E135"
        r = await p.http.get("/files/deploy/" + "b" * 256 + "/x")
        assert r.status_code == 404 and r.json()["error"]["code"] == "DPM-E135"
