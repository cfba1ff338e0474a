"""Machines registered by themselves (a network boot's discovery) that an operator has not touched.

Discovery is anonymous: anything on the boot network can claim a MAC or an SMBIOS UUID first. Such a
claim must never block the operator who then registers the real machine, so an operator's
registration takes over the identities of an untouched discovered machine (it is deleted, with its
MachineDeleted and IdentityReleased events under the operator's name) instead of failing with
"already registered". A discovered machine an operator edited, powered or otherwise used is theirs:
that conflict is still refused (DPM-E105), for a human to sort out.
"""

from __future__ import annotations

import uuid

from dpm_api.domain.csvfile import MachineSpec, identities
from dpm_runtime.eventlog import Conn, EventLog
from dpm_schemas import subjects
from dpm_schemas.events import IdentityClaimed, MachineEdited, MachineRegistered
from dpm_schemas.events.groups import NEW_MACHINES
from dpm_schemas.ids import stream_id

DISCOVERY_ACTOR = "pxe-discovery"
AGENT_ACTOR = "agent-enrolment"
AUTO_ACTORS = frozenset({DISCOVERY_ACTOR, AGENT_ACTOR})


async def squatters(log: EventLog, conn: Conn, spec: MachineSpec) -> list[uuid.UUID]:
    """The untouched discovered machines that hold one of ``spec``'s MACs or its SMBIOS UUID."""
    found: list[uuid.UUID] = []
    for identity in identities(spec):
        history = await log.read_stream(stream_id(subjects.IDENTITY, identity), conn=conn)
        if not history or not isinstance(claim := history[-1].event, IdentityClaimed):
            continue
        if claim.machine_id not in found and await untouched_discovery(log, conn, claim.machine_id):
            found.append(claim.machine_id)
    return found


async def untouched_discovery(log: EventLog, conn: Conn, machine_id: uuid.UUID) -> bool:
    """Since its last registration, only discovery wrote its stream, and it is still in new-machines.
    (An agent-enrolled machine is not taken over: its agent holds a token bound to it.)"""
    history = await log.read_stream(stream_id(subjects.MACHINE, machine_id), conn=conn)
    starts = [i for i, rec in enumerate(history) if isinstance(rec.event, MachineRegistered)]
    if not starts:
        return False
    since = history[starts[-1] :]
    if any(rec.metadata.actor != DISCOVERY_ACTOR for rec in since):
        return False
    if not all(isinstance(rec.event, MachineRegistered | MachineEdited) for rec in since):
        return False
    last = since[-1].event
    assert isinstance(last, MachineRegistered | MachineEdited)
    return last.group == NEW_MACHINES
