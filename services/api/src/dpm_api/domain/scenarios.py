"""Scenario rules (pure): which kinds are available, each kind's parameters, multicast settings, and
which machine states refuse an assignment."""

from __future__ import annotations

import math
import uuid
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from dpm_api.domain.images import MachineFacts, render_name
from dpm_packages.remote_update import request_of
from dpm_schemas import E
from dpm_schemas.events.scenarios import NETBOOT_KINDS, UNAVAILABLE_KINDS, DeployEnd, ScenarioKind, ScenarioSpec

MULTICAST = IPv4Network("224.0.0.0/4")
LOCAL_CONTROL = IPv4Network("224.0.0.0/24")  # link-local control block: routers and protocols use it
MULTICAST_KINDS = frozenset({ScenarioKind.RESTORE, ScenarioKind.REMOTE_UPDATE, ScenarioKind.FIRMWARE})

# execution states that refuse a new assignment (seed catalog §3.2), with the words the error uses
BUSY_STATES = {
    "queued": "waiting to run a scenario",
    "powering-on": "running a scenario (powering on)",
    "rebooting": "running a scenario (rebooting)",
    "waiting": "waiting for its multicast session",
    "running": "running a scenario",
    "failed": "in scenario execution error",
    "suspending": "being interrupted",
    "suspended": "interrupted (scenario execution interrupted)",
}


def check_spec(spec: ScenarioSpec) -> None:
    check_available(spec.kind)
    check_params(spec)
    if spec.deploy_end is not None and spec.kind not in NETBOOT_KINDS:
        raise E.SCENARIO_INVALID(reason=f"deploy_end is for kinds that boot the deploy environment, not {spec.kind}")
    if spec.power_off_at_end and spec.deploy_end not in (None, DeployEnd.POWER_OFF):
        raise E.SCENARIO_INVALID(reason=f"power_off_at_end contradicts deploy_end {spec.deploy_end}")
    if spec.kind is ScenarioKind.REMOTE_UPDATE:
        request_of(spec)  # DPM-E282 naming the bad parameter
    if spec.multicast is None:
        return
    if spec.kind is ScenarioKind.REMOTE_UPDATE:
        raise E.KIND_NOT_AVAILABLE(kind="remote-update", reason="multicast delivery of packages is not built yet")
    if spec.kind not in MULTICAST_KINDS:
        raise E.SCENARIO_INVALID(
            reason=f"multicast delivery is for restore, remote update or firmware, not {spec.kind}"
        )
    group = IPv4Address(spec.multicast.group)
    if group not in MULTICAST or group in LOCAL_CONTROL:
        raise E.SCENARIO_INVALID(reason=f"{group} is not a usable multicast group (224.0.1.0-239.255.255.255)")


def busy_reason(state: str | None, cleared: bool, power_error: str | None) -> str | None:
    """Why a machine cannot take a scenario now, or None."""
    if power_error:
        return f"in remote power-on error ({power_error})"
    if state is None or (state in ("failed", "suspended") and cleared):
        return None
    return BUSY_STATES.get(state)


def check_available(kind: ScenarioKind) -> None:
    """Kinds no service implements are refused at save and at run (DPM-E115): they used to netboot
    the machine and fail there (os-install, firmware), or time out after half an hour (remote-update)."""
    if kind in UNAVAILABLE_KINDS:
        raise E.KIND_NOT_AVAILABLE(kind=kind.value, reason="no dpm service implements this step yet")


# A template filled in with facts every machine may have: the rule the api applies when it opens a
# transfer (render_name, the imager's ImageName pattern), checked when the scenario is saved.
_SAMPLE = MachineFacts(name="machine", mac="52:54:00:00:00:01", smbios_uuid=uuid.UUID(int=1))


def _image_template(template: str) -> str:
    """Raises DPM-E162 itself (not a ValueError, so it passes through pydantic unchanged)."""
    render_name(template, _SAMPLE)  # no '..', no absolute path, only the allowed characters
    return template


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Number = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,2}$")]  # disk and partition numbers, 1-999
Flag = Literal["true", "false"]
ImageTemplate = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_image_template)]


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackupParams(_Params):
    image: ImageTemplate
    disk: Number = "1"
    partition: Number | None = None
    mode: Literal["used", "full"] = "used"
    ignore_hidden: Flag = "false"


class RestoreParams(_Params):
    image: ImageTemplate
    disk: Number = "1"
    partition: Number | None = None
    ignore_hidden: Flag = "false"
    grow_gpt: Flag = "false"


class SimulatedParams(_Params):
    # the scheduler turns it into a timestamp: inf or 1e30 used to overflow every engine round
    seconds: Annotated[float, Field(ge=0, le=7 * 86400), AfterValidator(_finite)] = 1.0


class RemoteUpdateParams(_Params):
    """Known keys only; their values are checked by ``dpm_packages.remote_update`` (DPM-E282)."""

    packages: str
    when: str = "now"
    at: str = ""


PARAMS: dict[ScenarioKind, type[_Params]] = {
    ScenarioKind.BACKUP: BackupParams,
    ScenarioKind.RESTORE: RestoreParams,
    ScenarioKind.DISK_CHECK: _Params,  # none
    ScenarioKind.SIMULATED: SimulatedParams,
    ScenarioKind.REMOTE_UPDATE: RemoteUpdateParams,
}


def check_params(spec: ScenarioSpec) -> None:
    """Each kind's parameters against its model: known keys only, numbers finite and bounded, image
    templates that render to a valid name. The first problem is DPM-E114 naming the key (an image
    name the imager would refuse is DPM-E162, as at run time)."""
    model = PARAMS.get(spec.kind, _Params)
    try:
        model.model_validate(dict(spec.params))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "-"
        raise E.SCENARIO_PARAM_INVALID(key=key, kind=spec.kind.value, reason=first["msg"]) from None
