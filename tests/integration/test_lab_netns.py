"""The lab's realism mode: each simulated machine in its own network namespace on a lab bridge.
Woken by real Wake-on-LAN broadcasts, it network-boots with a real DHCP broadcast from its own
interface, runs the real deploy client on its disk when dpm netboots it, and otherwise boots its
OS -- the real agent, which enrols, comes online, and reboots the machine (into the network boot)
when a scenario with "reboot at start" needs it."""

from __future__ import annotations

import pytest

from agent.tests.deploy.disks import blank, need_tools, sfdisk
from dpm_lab.netns import NamespaceLab
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running

from .conftest import ENROLMENT, run_until_done

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    need_tools,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
]
MiB = 1024 * 1024


async def test_namespace_machines_netboot_run_their_agent_and_reboot_into_a_scenario(
    api_service, pxe_service, scheduler_service, gateway_service, auth, tmp_path
) -> None:
    ports = {"dhcp": free_port(udp=True), "tftp": free_port(udp=True), "wol": free_port()}
    disks = []
    for i in range(2):
        disk = blank(tmp_path / f"disk{i}.img", 32 * MiB)
        sfdisk(str(disk), f"label: {'gpt' if i else 'dos'}\nsize=8MiB, type=L\n")
        disks.append(disk)
    with netlab.NetLab(hosts_wanted=2) as lab:
        host = str(lab.host_ip)
        gateway = gateway_service(
            http_host="0.0.0.0", agent_gateway_heartbeat_interval=0.5, agent_gateway_heartbeat_timeout=3.0
        )
        api = api_service(http_host="0.0.0.0")
        pxe = pxe_service(
            http_host="0.0.0.0", pxe_dhcp_enabled=True, pxe_dhcp_host="0.0.0.0", pxe_dhcp_port=ports["dhcp"],
            pxe_dhcp_pxe_port=free_port(udp=True), pxe_dhcp_interface=lab.bridge, pxe_tftp_enabled=True,
            pxe_tftp_host=host, pxe_tftp_port=ports["tftp"], pxe_server_ip=lab.host_ip,
            pxe_api_url=f"http://{host}:{api.port}",
        )  # fmt: skip
        api.app.state.pxe_url = f"http://127.0.0.1:{pxe.port}"
        root = tmp_path / "boot"
        (root / "deploy").mkdir(parents=True, exist_ok=True)
        (root / "undionly.kpxe").write_bytes(b"\x90" * 70_000)
        (root / "deploy" / "vmlinuz").write_bytes(b"k" * 4096)
        (root / "deploy" / "initrd.img").write_bytes(b"i" * 4096)
        scheduler = scheduler_service(
            scheduler_wol_port=ports["wol"], scheduler_power_on_timeout=60, scheduler_power_on_interval=0,
            scheduler_tick=0.1, scheduler_wol_repeats=1,
        )  # fmt: skip
        nslab = NamespaceLab(lab, tmp_path / "lab")
        async with running(api, headers=auth) as a, running(pxe), running(scheduler), running(gateway):
            nodes = nslab.start(2, prefix="ns", ports=ports, gateway_url=f"http://{host}:{gateway.port}",
                                enrolment_token=ENROLMENT, disks=disks)  # fmt: skip
            try:
                http = a.http
                settings = {"mode": "proxy", "server_ip": host}
                assert (await http.put("/boot/settings", json=settings)).is_success
                assert (await http.put("/groups/netlab", json={"subnet": str(lab.subnet)})).is_success
                for node in nodes:
                    body = {"name": node.spec.name, "macs": [node.spec.mac], "smbios_uuid": node.spec.smbios_uuid,
                            "group": "netlab"}  # fmt: skip
                    assert (await http.post("/machines", json=body)).status_code == 201

                # 1. both off: woken, network-booted, the deploy client checks their real disks
                assert (
                    await http.post("/scenarios", json={"name": "check", "spec": {"kind": "disk-check"}})
                ).is_success
                rows = await run_until_done(http, "check", {"group": "netlab"}, 2, timeout=90)
                assert [r["state"] for r in rows] == ["completed", "completed"], rows
                labels = [(await http.get(f"/machines/{n.spec.name}/disks")).json()["disks"][0]["label"] for n in nodes]
                assert labels == ["dos", "gpt"]

                # 2. powered on without a scenario: a local boot, and the OS's agent comes online
                first = nodes[0].spec.name
                machine_id = next(m["machine_id"] for m in (await http.get("/machines")).json() if m["name"] == first)
                assert (await http.post(f"/machines/{machine_id}/power/on")).status_code == 202

                async def shown() -> dict:
                    return (await http.get(f"/machines/{machine_id}")).json()

                await eventually(shown, until=lambda m: m["online"], timeout=60, what="the agent online")

                # 3. a scenario that needs the network boot: the agent reboots the machine into it
                spec = {"kind": "disk-check", "reboot_at_start": True}
                assert (await http.post("/scenarios", json={"name": "recheck", "spec": spec})).is_success
                rows = await run_until_done(http, "recheck", {"machines": [first]}, 1, timeout=90)
                assert rows[0]["state"] == "completed", rows

                async def node_log() -> str:  # the node prints its stages a moment after they happen
                    return nodes[0].log.read_text()

                await eventually(node_log, until=lambda t: t.count("ns00: reported") == 2, timeout=10, what="ns00 log")
            finally:
                nslab.stop()
    log = nodes[0].log.read_text()
    assert "ns00: local" in log and "ns00: reboot" in log and log.count("ns00: reported") == 2, log
