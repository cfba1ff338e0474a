"""The per-machine boot decision and its iPXE script."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from dpm_pxe.script import Action, Machine, arch_of, decide, media, render
from dpm_pxe.state import Pending
from dpm_schemas.events.boot import Arch, BootSettingsChanged, DhcpMode

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
PC = Machine(uuid.uuid4(), "pc-01")
RUN = uuid.uuid4()
SETTINGS = BootSettingsChanged(mode=DhcpMode.PROXY, deploy_kernel="deploy/vmlinuz", deploy_initrd="deploy/initrd.img")


def test_unknown_and_idle_machines_boot_their_disk() -> None:
    unknown = decide(None, None, NOW)
    assert unknown.action is Action.LOCAL and "discovered" in unknown.reason
    idle = decide(PC, None, NOW)
    assert idle.action is Action.LOCAL and "no network-boot work" in idle.reason
    script = render(idle, settings=SETTINGS, files_url="http://s/files", server_url="http://s:8080", token=None)
    assert script.startswith("#!ipxe\n") and "sanboot --no-describe --drive 0x80" in script and "\nexit\n" in script


def test_pending_work_boots_the_deploy_environment_with_its_execution_and_token() -> None:
    decision = decide(PC, Pending(RUN, NOW + timedelta(minutes=5)), NOW)
    assert decision.action is Action.DEPLOY and decision.execution_id == RUN
    script = render(decision, settings=SETTINGS, files_url="http://s/files/", server_url="http://s:8080", token="tok")
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert kernel.startswith("kernel http://s/files/deploy/vmlinuz initrd=initrd.img ")
    assert f"dpm.execution={RUN}" in kernel and "dpm.server=http://s:8080" in kernel and "dpm.token=tok" in kernel
    assert "initrd --name initrd.img http://s/files/deploy/initrd.img" in script


def test_an_expired_request_boots_the_disk_and_says_so() -> None:
    decision = decide(PC, Pending(RUN, NOW - timedelta(seconds=1)), NOW)
    assert decision.action is Action.LOCAL and "expired" in decision.reason


def test_boot_media_ask_the_same_endpoint_and_name_their_architecture() -> None:
    text = media("http://10.0.0.1:26502/")
    assert text.startswith("#!ipxe\n") and "\ndhcp || goto wait\n" in text
    assert "chain http://10.0.0.1:26502/boot/${net0/mac}.ipxe?arch=${platform}-${buildarch}" in text
    assert arch_of("pcbios-i386") is Arch.BIOS_X86 and arch_of("efi-x86_64") is Arch.UEFI_X64
    assert arch_of("uefi-x64") is Arch.UEFI_X64 and arch_of("<script>") is Arch.UNKNOWN
