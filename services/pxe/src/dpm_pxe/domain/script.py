"""What a network-booting machine boots, and why (pure): the iPXE script served at
``/boot/<mac>.ipxe``. A pending netboot request sends it into the deploy environment; anything else
boots the local disk, so a machine left on network-first boot order still starts its OS. Pending work
whose deploy environment is missing (``deployenv``) waits: the machine asks again later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlencode

from dpm_pxe.domain.deployenv import Missing
from dpm_schemas.events.boot import Arch, BootSettingsChanged


class Action(StrEnum):
    DEPLOY = "deploy"
    LOCAL = "local"
    WAIT = "wait"  # pending work, but its deploy environment is missing: ask again later (``later``)


@dataclass(frozen=True)
class Pending:
    """A machine's pending netboot, as the ``netboot`` projection holds it."""

    execution_id: uuid.UUID
    expires_at: datetime | None
    position: int = 0  # of the NetbootRequested: a deploy token is won once per request (``tokens``)


@dataclass(frozen=True)
class Machine:
    machine_id: uuid.UUID
    name: str


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    machine: Machine | None = None
    execution_id: uuid.UUID | None = None
    request: int = 0  # log position of the execution's NetbootRequested (its deploy token is won per request)
    missing: Missing | None = None  # WAIT: the deploy file that is not there


def decide(machine: Machine | None, pending: Pending | None, now: datetime) -> Decision:
    if machine is None:
        return Decision(Action.LOCAL, "unknown MAC: discovered (it joins the new-machines group); boots its disk")
    if pending is None:
        return Decision(Action.LOCAL, "no network-boot work is pending; boots its disk", machine)
    if pending.expires_at is not None and pending.expires_at <= now:
        return Decision(
            Action.LOCAL,
            f"the network boot for execution {pending.execution_id} expired at {pending.expires_at.isoformat()}",
            machine,
        )
    return Decision(
        Action.DEPLOY,
        f"execution {pending.execution_id} waits for the deploy environment",
        machine,
        pending.execution_id,
        pending.position,
    )


def withheld(decision: Decision, gone: Missing | None) -> Decision:
    """A deploy decision whose deploy environment is missing (``gone``) waits instead: no script that
    fails on its first line, no local disk while the execution is pending."""
    if decision.action is not Action.DEPLOY or gone is None:
        return decision
    reason = f"{gone.file} {gone.what} on the boot server (run `make deploy-os`)"
    return replace(decision, action=Action.WAIT, reason=reason, missing=gone)


# BIOS: hand over to the first disk (iPXE's sanboot), else return to the firmware's next boot entry.
# UEFI: ``exit`` returns to the firmware, which boots the next entry of its boot order.
LOCAL = """#!ipxe
echo dpm: {reason}
iseq ${{platform}} pcbios && sanboot --no-describe --drive 0x80 ||
exit
"""

# BOOTIF (pxelinux's convention, which dracut and Debian's installer read too): the MAC of the NIC
# iPXE booted over (netX is the last one opened), so the deploy environment configures that NIC and
# not merely the first it finds.
BOOT_ARGS = "initrd=initrd.img BOOTIF=01-${{netX/mac:hexhyp}} dpm.execution={execution} dpm.server={server}"
DEPLOY = (
    """#!ipxe
echo dpm: {name}: {reason}
kernel {files}/{kernel} """
    + BOOT_ARGS
    + """ dpm.token={token} {cmdline}
initrd --name initrd.img {files}/{initrd}
boot || goto failed
:failed
echo dpm: the deploy environment did not boot; booting the local disk
iseq ${{platform}} pcbios && sanboot --no-describe --drive 0x80 ||
exit
"""
)


def render(
    decision: Decision, *, settings: BootSettingsChanged, files_url: str, server_url: str, token: str | None
) -> str:
    reason = decision.reason.replace("\n", " ")
    if decision.action is Action.LOCAL or decision.machine is None or token is None:
        return LOCAL.format(reason=reason)
    return DEPLOY.format(
        name=decision.machine.name,
        reason=reason,
        files=files_url.rstrip("/"),
        kernel=settings.deploy_kernel,
        initrd=settings.deploy_initrd,
        execution=decision.execution_id,
        server=server_url,
        token=token,
        cmdline=settings.deploy_cmdline.replace("\n", " "),
    )


# pxe cannot decide now (it is starting, or PostgreSQL is unavailable): iPXE retries no HTTP error,
# so a 5xx would boot the local disk and lose the machine's pending work. It gets this script instead
# and asks again; the execution's power-on and no-response watchdogs bound the loop. The URL is
# relative (resolved against this script's own), "./" so the MAC's colons are not read as a scheme.
LATER = """#!ipxe
echo dpm: {reason}; asking again in {seconds} s
sleep {seconds}
chain --replace --autofree ./{mac}.ipxe?{query}
"""


def later(mac: str, arch: str, client_uuid: uuid.UUID | None, reason: str, seconds: int = 5) -> str:
    """The script that asks for this machine's script again in ``seconds``; ``mac`` normalised."""
    query = urlencode({"arch": arch, **({"uuid": str(client_uuid)} if client_uuid else {})})
    return LATER.format(reason=_plain(reason), seconds=seconds, mac=mac, query=query)


def _plain(text: str) -> str:
    """Text iPXE echoes as is: no line breaks, no ``${...}`` expansion, no ``;`` or ``||`` chaining."""
    return "".join(c if c.isalnum() or c in " .,:-()/'" else " " for c in text)[:200]


# Boot media (mode off): an iPXE built with this script embedded gets an address from whatever DHCP
# server the site has (``dhcp`` is IPv4 only, so iPXE does not wait for IPv6 router advertisements),
# then asks dpm the same question a network boot does.
MEDIA = """#!ipxe
echo dpm boot media: asking {base} what to boot
:retry
dhcp || goto wait
chain {base}/boot/${{net0/mac}}.ipxe?arch=${{platform}}-${{buildarch}} && exit ||
:wait
echo dpm: no answer yet; retrying in 10 s
sleep 10
goto retry
"""

# what ${platform}-${buildarch} says on boot media, as the architecture of the boot events
MEDIA_ARCH = {
    "pcbios-i386": Arch.BIOS_X86,
    "pcbios-x86_64": Arch.BIOS_X86,
    "efi-x86_64": Arch.UEFI_X64,
    "efi-arm64": Arch.UEFI_ARM64,
}


def media(base_url: str) -> str:
    return MEDIA.format(base=base_url.rstrip("/"))


def arch_of(text: str) -> Arch:
    """``?arch=`` from a DHCP-given script URL (an Arch value) or from boot media (platform-buildarch)."""
    try:
        return Arch(text)
    except ValueError:
        return MEDIA_ARCH.get(text, Arch.UNKNOWN)
