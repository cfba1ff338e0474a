"""Is the deploy environment there to hand out (pure, over a probe of the boot root)?

A deploy script names a kernel and an initramfs under the boot root (the boot settings'). When either
is missing -- `make deploy-os` never ran, a wrong path in the settings -- iPXE fails on the first line,
falls back to the next boot entry, and the execution used to wait for its no-response timeout (DPM-E145,
half an hour by default) with nothing saying why. pxe finds out on the script request instead: it
withholds the script, records DeployBootUnavailable (the scheduler fails the execution with DPM-E430 at
once), and tells iPXE to ask again later -- never the local disk while the execution is pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from dpm_schemas import E
from dpm_schemas.events import DeployBootUnavailable
from dpm_schemas.events.boot import BootSettingsChanged

Probe = Callable[[str], int | None]  # the size of a file under the boot root; None: not there (or not served)


@dataclass(frozen=True)
class Missing:
    """The first deploy file that cannot be served: what it is, its path under the root, and why."""

    file: str  # "the deploy kernel deploy/vmlinuz"
    relative: str  # as the boot settings name it
    what: str  # "is not there" | "is empty"


def missing(settings: BootSettingsChanged, probe: Probe) -> Missing | None:
    """The kernel or initramfs of the deploy environment that ``probe`` finds absent or empty."""
    for name, path in (("kernel", settings.deploy_kernel), ("initramfs", settings.deploy_initrd)):
        size = probe(path)
        if size is None or size <= 0:
            return Missing(f"the deploy {name} {path}", path, "is not there" if size is None else "is empty")
    return None


def where(root: str, gone: Missing) -> str:
    """The absolute path an operator puts the file at (the root as configured, the settings' path)."""
    return f"{root.rstrip('/')}/{gone.relative.lstrip('/')}"[:1000]


def unavailable(
    gone: Missing, *, root: str, machine: str, machine_id: uuid.UUID, execution_id: uuid.UUID, mac: str
) -> DeployBootUnavailable:
    """The fact pxe records for the scheduler, with the catalogued code and its message."""
    path = where(root, gone)
    err = E.DEPLOY_ENV_MISSING(machine=machine, execution_id=execution_id, file=gone.file, what=gone.what, path=path)
    return DeployBootUnavailable(
        machine_id=machine_id, execution_id=execution_id, mac=mac, path=path, code=err.code, reason=err.message[:1000]
    )
