"""The deploy environment on other hardware than virtio: four QEMU machines, each with another NIC
and another disk controller (e1000e + NVMe, RTL8139 + AHCI, VMXNET3 + MegaRAID SAS, virtio-net +
virtio-scsi), restored by one scenario run. Each loads the drivers of its own devices (by modalias;
its serial console names them), finds its disk and network, and gets the image byte for byte."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from contextlib import ExitStack

import pytest

from agent.tests.deploy.disks import blank, mkext4, need_tools, sfdisk, sha256, tree
from dpm_agent.deploy.jobs import run_backup
from dpm_agent.deploy.remote import TransferGrant
from dpm_runtime.testing import eventually, netlab

from .stack import qemu_stack
from .vm import machine_argv, qemu

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    need_tools,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86"),
    pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt"),
]
MiB = 1024 * 1024
# (QEMU NIC, disk controller devices, the drivers the deploy environment must have loaded for them)
MATRIX = [
    ("e1000e", ["-device", "nvme,drive=d0,serial=dpm0"], {"e1000e", "nvme"}),
    ("rtl8139", ["-device", "ich9-ahci,id=sata0", "-device", "ide-hd,drive=d0,bus=sata0.0"], {"ahci", "sd_mod"}),
    ("vmxnet3", ["-device", "megasas,id=sas0", "-device", "scsi-hd,drive=d0,bus=sas0.0"], {"vmxnet3", "megaraid_sas"}),
    ("virtio-net-pci", ["-device", "virtio-scsi-pci,id=vs0", "-device", "scsi-hd,drive=d0,bus=vs0.0"],
     {"virtio_net", "virtio_scsi", "sd_mod"}),
]  # fmt: skip


async def test_four_nics_and_four_disk_controllers_restore(database, nats_server, deploy_os, tmp_path) -> None:
    source = blank(tmp_path / "golden.img", 24 * MiB)
    sfdisk(str(source), "label: gpt\nsize=16MiB, type=L\n")
    mkext4(source, MiB, 16 * MiB, tree(tmp_path / "content"))
    vms = [(f"hw{i}", f"52:54:00:d9:20:0{i}", uuid.uuid4(), tmp_path / f"hw{i}.img") for i in range(len(MATRIX))]
    async with qemu_stack(database, nats_server, deploy_os, tmp_path) as stack:
        http = stack.http
        for name, mac, smbios, disk in vms:
            blank(disk, 32 * MiB)
            body = {"name": name, "macs": [mac], "smbios_uuid": str(smbios), "group": "lab"}
            assert (await http.post("/machines", json=body)).status_code == 201
        grant = (await http.post("/images/transfers", json={"image": "golden", "direction": "backup"})).json()
        await asyncio.to_thread(run_backup, str(source), TransferGrant.from_json(grant), mode="full")
        spec = {"kind": "restore", "params": {"image": "golden"}, "timeout_seconds": 1200, "power_off_at_end": True}
        assert (await http.post("/scenarios", json={"name": "put-golden", "spec": spec})).status_code == 201
        run = (await http.post("/scenarios/put-golden/runs", json={"group": "lab"})).json()

        async def executions() -> list[dict]:
            return (await http.get("/executions", params={"run_id": run["run_id"]})).json()

        def woken(rows: list[dict]) -> bool:
            return len(rows) == len(MATRIX) and all(r["state"] == "powering-on" for r in rows)

        await eventually(executions, until=woken, timeout=60, what="all four woken")
        with ExitStack() as machines:
            for (name, mac, smbios, disk), (nic, controller, _) in zip(vms, MATRIX, strict=True):
                argv = machine_argv(stack.lab.add_tap(), smbios, tmp_path / f"{name}.serial", 512)
                argv += ["-device", f"{nic},netdev=n0,mac={mac},bootindex=1",
                         "-drive", f"file={disk},format=raw,if=none,id=d0", *controller]  # fmt: skip
                machines.enter_context(qemu(argv, tmp_path / f"{name}.log"))
            final = await eventually(
                executions,
                until=lambda rows: all(r["state"] in ("completed", "failed") for r in rows),
                timeout=1200,
                interval=2,
                what="the four restores ended",
            )
    by_name = {r["machine"]: r for r in final}
    for (name, _, _, disk), (nic, _, drivers) in zip(vms, MATRIX, strict=True):
        console = (tmp_path / f"{name}.serial").read_text(errors="replace")
        loaded = next((line.split() for line in console.splitlines() if " modules " in line), [])
        assert by_name[name]["state"] == "completed", (nic, by_name[name], console[-3000:])
        assert drivers <= set(loaded), (nic, loaded)
        if nic == "rtl8139":
            assert {"8139cp", "8139too"} & set(loaded), loaded
        assert sha256(disk, 24 * MiB) == sha256(source), nic
