"""Real PXE clients network-boot against dpm: QEMU (software emulation) on a tap device in a lab.

* BIOS, full mode: QEMU's own iPXE ROM asks dpm for an address and gets its script URL; the
  unknown machine is discovered (with the SMBIOS UUID from option 97) and auto-registered.
* UEFI, proxy mode beside dnsmasq (a plain DHCP server in another namespace): the firmware's own
  PXE client (EDK2, not iPXE) gets its address from dnsmasq and the iPXE binary from dpm over TFTP;
  that iPXE fetches its script over HTTP and prints its reason on the serial console.

Slow (each boot takes 20-90 s without KVM) but run in CI.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from pydantic import SecretStr

from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_api.settings import ApiSettings
from dpm_pxe.bootstrap import bootstrap as pxe_bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually, netlab
from dpm_runtime.testing.services import running
from dpm_schemas import subjects
from dpm_schemas.events import MachineBooted, MachineDiscovered
from dpm_schemas.events.boot import Arch, BootStage, DhcpMode
from dpm_schemas.ids import stream_id

from .vm import machine_argv, qemu

IPXE = Path("/usr/lib/ipxe")
OVMF_CODE, OVMF_VARS = Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not netlab.available(), reason="needs root and iproute2"),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86"),
    pytest.mark.skipif(not (IPXE / "undionly.kpxe").exists(), reason="needs Debian's ipxe"),
    pytest.mark.skipif(not OVMF_CODE.exists(), reason="needs Debian's ovmf"),
    pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq-base"),
]

TOKEN = "qemu-test-token-0123456789"
PXE_TOKEN = "qemu-pxe-service-0123456789"  # the api's credential for pxe's explain, recent boots, leases
BOOT_TIMEOUT = 300.0


async def test_bios_full_mode_and_uefi_proxy_mode_beside_dnsmasq(database, nats_server, tmp_path) -> None:
    root = tmp_path / "boot"
    root.mkdir()
    for name in ("undionly.kpxe", "ipxe.efi"):
        shutil.copy(IPXE / name, root / name)
    common = {
        "database_url": SecretStr(database.service_url),
        "database_admin_url": SecretStr(database.admin_url),
        "nats_url": nats_server.url,
    }
    with netlab.NetLab(hosts_wanted=1) as lab:
        (dhcp_host,) = lab.hosts
        pxe = pxe_bootstrap(
            PxeSettings(
                **common,
                http_host="0.0.0.0",
                pxe_port=free_port(),
                relay_enabled=False,
                pxe_root=root,
                pxe_server_ip=lab.host_ip,
                pxe_tftp_host=str(lab.host_ip),
                pxe_dhcp_interface=lab.bridge,
                pxe_ipv6_router_advert=True,  # iPXE's ROM skips its ~15 s wait for IPv6 (bench --only boot)
                pxe_service_token=SecretStr(PXE_TOKEN),
            )
        )
        api = api_bootstrap(
            ApiSettings(
                **common,
                api_port=free_port(),
                api_token=SecretStr(TOKEN),
                api_pxe_url=f"http://127.0.0.1:{pxe.port}",
                api_pxe_token=SecretStr(PXE_TOKEN),
            )
        )
        async with running(api, headers={"Authorization": f"Bearer {TOKEN}"}) as a, running(pxe):
            eventlog, state = a.runtime.eventlog, pxe.app.state.boot.state

            async def mode_is(mode: DhcpMode) -> None:
                async def applied() -> bool:
                    return state.current.mode is mode

                await eventually(applied, timeout=10, what=f"pxe in {mode} mode")

            async def boots(mac: str) -> list:
                return [r.event for r in await eventlog.read_stream(stream_id(subjects.BOOT, mac))]

            async def booted_ipxe(mac: str) -> list:
                events = await boots(mac)
                return events if any(isinstance(e, MachineBooted) and e.stage is BootStage.IPXE for e in events) else []

            # 1. BIOS, full mode: QEMU's iPXE ROM gets an address and its script URL from dpm
            first, bios_mac, bios_uuid = lab.host_ip + 100, "52:54:00:d9:00:01", uuid.uuid4()
            full = {
                "mode": "full",
                "ranges": [
                    {"start": str(first), "end": str(first + 20), "subnet": str(lab.subnet), "router": str(lab.host_ip)}
                ],
            }
            assert (await a.http.put("/boot/settings", json=full)).status_code == 200
            await mode_is(DhcpMode.FULL)
            argv = machine_argv(lab.add_tap(), bios_uuid, tmp_path / "bios.serial", 256)
            argv += ["-device", f"e1000,netdev=n0,mac={bios_mac}", "-boot", "n"]
            with qemu(argv, tmp_path / "bios.log"):
                events = await eventually(
                    lambda: booted_ipxe(bios_mac), timeout=BOOT_TIMEOUT, interval=1, what="BIOS VM fetched its script"
                )
            discovered = [e for e in events if isinstance(e, MachineDiscovered)]
            assert discovered == [MachineDiscovered(mac=bios_mac, arch=Arch.BIOS_X86, client_uuid=bios_uuid)]
            (ipxe,) = [e for e in events if isinstance(e, MachineBooted)]
            assert ipxe.arch is Arch.BIOS_X86 and first <= IPv4Address(ipxe.client_ip) <= first + 20
            leases = (await a.http.get("/dhcp/leases")).json()
            assert {"ip": ipxe.client_ip, "mac": bios_mac, "state": "bound"}.items() <= leases[0].items()

            async def registered() -> list:
                rows = (await a.http.get("/machines")).json()
                return [m for m in rows if bios_mac in m["macs"]]

            (machine,) = await eventually(registered, timeout=15, what="the discovered VM registered")
            assert machine["group_name"] == "new-machines" and machine["smbios_uuid"] == str(bios_uuid)
            recent = (await a.http.get("/boot/recent", params={"mac": bios_mac})).json()
            assert recent[0]["decision"].startswith("unknown MAC: discovered")

            # 2. UEFI, proxy mode: dnsmasq in another namespace gives the address; dpm the boot files
            proxy = {"mode": "proxy"}
            assert (await a.http.put("/boot/settings", json=proxy)).status_code == 200
            await mode_is(DhcpMode.PROXY)
            low, high = lab.host_ip + 150, lab.host_ip + 170
            dnsmasq_argv = [
                "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
                "--interface=eth0", "--bind-interfaces", "--log-dhcp",
                f"--dhcp-range={low},{high},255.255.255.0,10m",
                f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}",
            ]  # fmt: skip
            with open(tmp_path / "dnsmasq.log", "wb") as dnsmasq_log:
                dnsmasq = lab.popen(dhcp_host, dnsmasq_argv, stdout=dnsmasq_log, stderr=subprocess.STDOUT)
            try:
                uefi_mac, uefi_uuid, serial = "52:54:00:d9:00:02", uuid.uuid4(), tmp_path / "uefi.serial"
                vars_copy = tmp_path / "OVMF_VARS.fd"
                shutil.copy(OVMF_VARS, vars_copy)
                argv = machine_argv(lab.add_tap(), uefi_uuid, serial, 512)
                argv += [
                    "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,file={vars_copy}",
                    "-device", f"virtio-net-pci,netdev=n0,mac={uefi_mac},romfile=",
                ]  # fmt: skip
                with qemu(argv, tmp_path / "uefi.log"):
                    events = await eventually(
                        lambda: booted_ipxe(uefi_mac),
                        timeout=BOOT_TIMEOUT,
                        interval=1,
                        what="UEFI VM fetched its script",
                    )

                    async def script_printed() -> bool:
                        # by then the api has registered the machine the ROM stage discovered
                        return "dpm: no network-boot work is pending" in serial.read_text(errors="replace")

                    await eventually(script_printed, timeout=60, interval=0.5, what="iPXE ran the script")
            finally:
                dnsmasq.terminate()
                dnsmasq.wait(10)
            rom = [e for e in events if isinstance(e, MachineBooted) and e.stage is BootStage.ROM]
            ipxe_boot = [e for e in events if isinstance(e, MachineBooted) and e.stage is BootStage.IPXE]
            assert rom and rom[0].arch is Arch.UEFI_X64 and rom[0].client_ip is None  # proxy: no address from dpm
            assert ipxe_boot[0].arch is Arch.UEFI_X64
            assert low <= IPv4Address(ipxe_boot[0].client_ip) <= high  # dnsmasq's address
            assert [e.client_uuid for e in events if isinstance(e, MachineDiscovered)] == [uefi_uuid]
            assert uefi_mac not in {lease["mac"] for lease in (await a.http.get("/dhcp/leases")).json()}
            assert "DHCPACK" in (tmp_path / "dnsmasq.log").read_text()
