"""Scenario rules (pure): multicast settings, and which machine states refuse an assignment."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from dpm_schemas import E
from dpm_schemas.events.scenarios import ScenarioKind, ScenarioSpec

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


IMAGING_KINDS = frozenset({ScenarioKind.BACKUP, ScenarioKind.RESTORE})


def check_spec(spec: ScenarioSpec) -> None:
    check_imaging_params(spec)
    if spec.multicast is None:
        return
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


def check_imaging_params(spec: ScenarioSpec) -> None:
    """Backup and restore name their image (a template with {machine} {mac} {uuid} gives one image
    per machine); disk and partition are numbers as the disk configuration check shows them."""
    params = dict(spec.params)
    if spec.kind in IMAGING_KINDS and not params.get("image"):
        raise E.SCENARIO_INVALID(reason=f"a {spec.kind} scenario needs params.image (e.g. backups/{{machine}})")
    for key in ("disk", "partition"):
        if key in params and not (params[key].isdigit() and int(params[key]) >= 1):
            raise E.SCENARIO_INVALID(reason=f"params.{key} must be a number from 1, not {params[key]!r}")
    if params.get("mode", "used") not in ("used", "full"):
        raise E.SCENARIO_INVALID(
            reason=f"params.mode is used (used sectors) or full (every sector), not {params['mode']!r}"
        )
    for flag in ("ignore_hidden", "grow_gpt"):
        if params.get(flag, "false") not in ("true", "false"):
            raise E.SCENARIO_INVALID(reason=f"params.{flag} is true or false")
