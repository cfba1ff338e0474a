"""A restore scenario on a real (emulated) machine: QEMU network-boots through dpm's pxe service
into the deploy environment built by deploy/deploy-os/build.py (Debian's kernel and Python, the
deploy client), which restores an image from the imager onto its virtual disk -- byte for byte --
and then reboots into what it restored.

The whole path is the production one: the scheduler requests the netboot and waits for the boot;
QEMU's iPXE ROM gets an address from pxe (full mode) and the deploy script with a token; the
deploy environment's DHCP on the NIC it booted over (the second of two, BOOTIF), the api's step
and transfer, chunks from the imager, step reports; then its end action: a reboot, a network boot
that pxe answers "boot local disk", and the restored disk's own boot code on the serial console.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid

import pytest

from agent.tests.deploy.disks import blank, mkext4, need_tools, sfdisk, sha256, tree
from dpm_agent.deploy.jobs import run_backup
from dpm_agent.deploy.remote import TransferGrant
from dpm_runtime.testing import eventually, netlab

from .stack import qemu_stack
from .vm import machine_argv, marker_boot_code, qemu

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    need_tools,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86"),
    pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt"),
]
MARKER = "DPM-RESTORED-OS-BOOTED"
DEAD_MAC = "52:54:00:d9:10:ff"  # a NIC on no network, ahead of the one the machine boots over
MiB = 1024 * 1024


async def test_qemu_netboots_and_restores_an_image_byte_for_byte(database, nats_server, deploy_os, tmp_path) -> None:
    source = blank(tmp_path / "golden.img", 48 * MiB)
    sfdisk(str(source), "label: gpt\nsize=40MiB, type=L\n")
    mkext4(source, MiB, 40 * MiB, tree(tmp_path / "content"))
    with open(source, "r+b") as disk:  # the golden disk's "operating system": boot code printing a marker
        disk.write(marker_boot_code(MARKER))
    target = blank(tmp_path / "vm-disk.img", 64 * MiB)
    async with qemu_stack(database, nats_server, deploy_os, tmp_path) as stack:
        lab, http = stack.lab, stack.http
        mac, smbios = "52:54:00:d9:10:01", uuid.uuid4()
        body = {"name": "vm1", "macs": [mac], "smbios_uuid": str(smbios), "group": "lab"}
        assert (await http.post("/machines", json=body)).status_code == 201

        grant = (await http.post("/images/transfers", json={"image": "golden", "direction": "backup"})).json()
        await asyncio.to_thread(run_backup, str(source), TransferGrant.from_json(grant), mode="full")
        spec = {"kind": "restore", "params": {"image": "golden"}, "timeout_seconds": 900}
        assert (await http.post("/scenarios", json={"name": "put-golden", "spec": spec})).status_code == 201
        run = (await http.post("/scenarios/put-golden/runs", json={"machines": ["vm1"]})).json()

        async def execution() -> dict:
            rows = (await http.get("/executions", params={"run_id": run["run_id"]})).json()
            return rows[0] if rows else {}

        await eventually(execution, until=lambda r: r.get("state") == "powering-on", timeout=30, what="woken")
        serial = tmp_path / "vm1.serial"
        # the deploy environment reboots into the disk when done: this VM must reset, not exit
        argv = [a for a in machine_argv(lab.add_tap(), smbios, serial, 512) if a != "-no-reboot"]
        # two NICs: the first (lower PCI slot, so eth0) leads nowhere and has no boot ROM; the machine
        # boots over the second, and the deploy environment must use that one (BOOTIF), not eth0
        argv += [
            "-netdev", "hubport,id=dead,hubid=7",
            "-device", f"virtio-net-pci,netdev=dead,mac={DEAD_MAC},romfile=,addr=0x4",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1,addr=0x5",
            "-drive", f"file={target},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=2",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip
        with qemu(argv, tmp_path / "vm1.log") as vm:
            final = await eventually(
                execution,
                until=lambda r: r.get("state") in ("completed", "failed"),
                timeout=600,
                interval=1,
                what="the restore finished",
            )
            # it reboots, network-boots again, is told "boot local disk", and starts the restored system
            booted = await eventually(
                lambda: asyncio.to_thread(serial.read_text, errors="replace"),
                until=lambda text: MARKER in text or vm.poll() is not None,
                timeout=300,
                interval=1,
                what="the restored disk booted",
            )
            # the deploy environment uploaded its logs before rebooting: readable through the api
            logs = await http.get(f"/executions/{final['execution_id']}/logs", params={"part": "console"})
    console = serial.read_text(errors="replace")
    assert final["state"] == "completed", (final, console[-3000:])
    assert "DPM-DEPLOY-EXIT 0" in console
    assert f"nic eth1 (BOOTIF {mac})" in console  # the NIC it booted over, not the first one
    assert "DPM-DEPLOY-END reboot" in console  # a restore's default end: back into the local disk
    assert MARKER in booted and booted.index(MARKER) > booted.index("DPM-DEPLOY-END"), booted[-2000:]
    assert sha256(target, 48 * MiB) == sha256(source)
    assert logs.status_code == 200 and logs.headers["x-content-type-options"] == "nosniff", logs.text[-2000:]
    assert re.search(r"^@@T [0-9.]+ init$", logs.text, re.M), logs.text[:2000]  # /init's first stamp
    assert "step report: progress 0% restore started; deploy environment up in" in logs.text, logs.text[-3000:]
    assert "dpm.token=" not in logs.text
