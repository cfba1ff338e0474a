"""What a network-booting machine boots, and why (pure): the iPXE script served at
``/boot/<mac>.ipxe``. A pending netboot request sends it into the deploy environment; anything else
boots the local disk, so a machine left on network-first boot order still starts its OS.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dpm_pxe.state import Pending
from dpm_schemas.events.boot import BootSettingsChanged


class Action(StrEnum):
    DEPLOY = "deploy"
    LOCAL = "local"


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
    )


# BIOS: hand over to the first disk (iPXE's sanboot), else return to the firmware's next boot entry.
# UEFI: ``exit`` returns to the firmware, which boots the next entry of its boot order.
LOCAL = """#!ipxe
echo dpm: {reason}
iseq ${{platform}} pcbios && sanboot --no-describe --drive 0x80 ||
exit
"""

DEPLOY = """#!ipxe
echo dpm: {name}: {reason}
kernel {files}/{kernel} initrd=initrd.img dpm.execution={execution} dpm.server={server} dpm.token={token} {cmdline}
initrd --name initrd.img {files}/{initrd}
boot || goto failed
:failed
echo dpm: the deploy environment did not boot; booting the local disk
iseq ${{platform}} pcbios && sanboot --no-describe --drive 0x80 ||
exit
"""


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
