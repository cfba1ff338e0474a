"""The per-machine boot decision and its iPXE script."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from dpm_pxe.domain.script import Action, Machine, Pending, arch_of, decide, later, media, render
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
    assert "BOOTIF=01-${netX/mac:hexhyp}" in kernel  # the deploy environment configures the NIC it booted over
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


def test_the_script_for_later_asks_again_for_the_same_machine_and_echoes_plain_text() -> None:
    client = uuid.UUID("6f1c3a52-0000-4000-8000-0000000000c1")
    script = later("52:54:00:c1:00:01", "uefi-x64", client, "db down; ${x} || exit\nkernel evil")
    lines = script.splitlines()
    assert lines[0] == "#!ipxe" and lines[2] == "sleep 5"
    assert lines[3] == f"chain --replace --autofree ./52:54:00:c1:00:01.ipxe?arch=uefi-x64&uuid={client}"
    reason = lines[1].removeprefix("echo dpm: ").removesuffix("; asking again in 5 s")
    assert len(lines) == 4 and reason.startswith("db down") and "kernel evil" in reason
    assert not set(reason) & set(";${}|&\n")  # nothing iPXE would expand, chain or run
    assert "uuid" not in later("52:54:00:c1:00:01", "bios-x86", None, "starting")
