"""Real agent processes, each in its own network namespace with its own MACs and SMBIOS UUID from its
configuration, against a real agent-gateway: presence follows them, addresses follow them, and a
revoked token is refused."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running
from dpm_schemas import agent_protocol
from dpm_schemas.events import AgentEnrolled, InventoryReported

from .conftest import ENROLMENT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
]

TIMEOUT = 3.0


def agent_config(tmp: Path, i: int, server: str) -> tuple[Path, list[str], str]:
    macs = [f"52:54:0a:00:{i:02x}:01", f"52:54:0a:00:{i:02x}:02"]
    smbios = str(uuid.UUID(int=0xA6E47 << 64 | i))
    path = tmp / f"agent{i}.toml"
    path.write_text(
        f'server = "{server}"\nenrolment_token = "{ENROLMENT}"\nstate_dir = "{tmp / f"state{i}"}"\n'
        f'macs = {macs!r}\nsmbios_uuid = "{smbios}"\nhostname = "lab-{i}"\ninventory = {str(i == 0).lower()}\n'
        "max_backoff = 1.0\n".replace("'", '"')
    )
    return path, macs, smbios


@contextlib.contextmanager
def _reaped(procs: dict[int, subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


async def test_agents_presence_addresses_and_revocation(api_service, gateway_service, auth, tmp_path) -> None:
    gateway = gateway_service(
        agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=TIMEOUT, http_host="0.0.0.0"
    )
    procs: dict[int, subprocess.Popen[bytes]] = {}
    with netlab.NetLab(hosts_wanted=3) as lab, _reaped(procs):
        server = f"http://{lab.host_ip}:{gateway.port}"
        async with running(api_service(), headers=auth) as api, running(gateway):
            configs = {}
            for i in range(len(lab.hosts)):
                path, macs, smbios = agent_config(tmp_path, i, server)
                configs[i] = path
                r = await api.http.post(
                    "/machines", headers=auth, json={"name": f"lab-{i}", "macs": macs[::-1], "smbios_uuid": smbios}
                )
                assert r.status_code == 201

            def start(i: int) -> None:
                log = open(tmp_path / f"agent{i}.log", "ab")  # noqa: SIM115 -- the child owns it
                procs[i] = lab.popen(
                    lab.hosts[i],
                    [sys.executable, "-m", "dpm_agent", "--config", str(configs[i])],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

            async def machines() -> dict[str, dict]:
                return {m["name"]: m for m in (await api.http.get("/machines")).json()}

            for i in range(3):
                start(i)
            fleet = await eventually(
                machines, until=lambda ms: all(m["online"] for m in ms.values()), timeout=30, what="all agents online"
            )
            assert {n: m["ip"] for n, m in fleet.items()} == {f"lab-{i}": str(h.ip) for i, h in enumerate(lab.hosts)}
            assert {(m["agent_version"], m["agent_outdated"]) for m in fleet.values()} == {("0.1.0", False)}

            # kill an agent: offline within the heartbeat timeout (plus the sweep period)
            procs[0].send_signal(signal.SIGKILL)
            await asyncio.to_thread(procs[0].wait)
            killed = time.monotonic()
            await eventually(
                machines, until=lambda ms: not ms["lab-0"]["online"], timeout=TIMEOUT + 5, what="lab-0 offline"
            )
            assert time.monotonic() - killed <= TIMEOUT + 2
            assert (await machines())["lab-1"]["online"]  # the others stay online

            start(0)
            await eventually(machines, until=lambda ms: ms["lab-0"]["online"], timeout=20, what="lab-0 back online")
            enrolled = [e for e in await api.runtime.eventlog.read_all() if isinstance(e.event, AgentEnrolled)]
            assert len(enrolled) == 3  # the restart reused its token
            (inventory,) = [
                e.event for e in await api.runtime.eventlog.read_all() if isinstance(e.event, InventoryReported)
            ]  # once: the restart's report was unchanged
            assert inventory.os and inventory.kernel and any(p.startswith("dpkg=") for p in inventory.packages)

            # change an agent's address: the record follows
            new_ip = lab.subnet.network_address + 77
            # keep the new (secondary) address when the old primary goes, as a DHCP renumbering would
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    lab.hosts[1].netns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.conf.eth0.promote_secondaries=1",
                ],
                check=True,
            )
            subprocess.run(["ip", "-n", lab.hosts[1].netns, "addr", "add", f"{new_ip}/24", "dev", "eth0"], check=True)
            subprocess.run(
                ["ip", "-n", lab.hosts[1].netns, "addr", "del", f"{lab.hosts[1].ip}/24", "dev", "eth0"], check=True
            )
            await eventually(
                machines,
                until=lambda ms: ms["lab-1"]["ip"] == str(new_ip),
                timeout=20,
                what="lab-1's new address recorded",
            )

            # revoke an agent's token: the connection is dropped, reconnects are refused, it stays offline
            lab2 = (await machines())["lab-2"]
            token = (tmp_path / "state2" / "token").read_text()
            r = await api.http.post(f"/machines/{lab2['machine_id']}/agent/revoke", headers=auth)
            assert r.status_code == 202
            await eventually(
                machines,
                until=lambda ms: not ms["lab-2"]["online"],
                timeout=TIMEOUT + 10,
                what="lab-2 offline after revocation",
            )
            async with connect(
                f"ws://127.0.0.1:{gateway.port}{agent_protocol.AGENT_PATH}",
                additional_headers={"Authorization": f"Bearer {token}"},
            ) as ws:
                refused = agent_protocol.decode(await ws.recv())
                await asyncio.wait_for(ws.wait_closed(), 5)
            assert refused.code == "DPM-E402" and ws.close_code == agent_protocol.CLOSE_UNAUTHORIZED
            await asyncio.sleep(TIMEOUT)  # the agent keeps retrying; it must stay refused and offline
            assert not (await machines())["lab-2"]["online"]
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            for p in procs.values():  # wait in threads: the gateway answering their goodbyes runs on this loop
                assert await asyncio.to_thread(p.wait, 15) == 0
