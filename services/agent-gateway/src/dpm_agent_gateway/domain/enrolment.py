"""Which machine an enrolment binds, and whether it may (pure): no enrolment takes over a machine's
identity.

MACs and SMBIOS UUIDs are claims anyone can make, so they only ever *find* a machine:
- an unbound enrolment token (or the gateway's shared secret) enrols a new machine, or a registered
  one that has no agent token and was never revoked -- else DPM-E123 / DPM-E124;
- a token bound to a machine at issue (``dpm agents enrolment-token --machine X``, the explicit admin
  step) enrols only that machine -- the host's facts must match it, else DPM-E125 -- and replaces its
  agent token, lifting a revocation; the old token's sessions are then closed on every replica.
A refused enrolment changes nothing: ``handlers.enrol`` runs it in the caller's transaction, so the
use of the enrolment token is rolled back with it and the real agent keeps its token and its session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from dpm_schemas import E
from dpm_schemas.agent_protocol import Facts
from dpm_schemas.errors import DpmError
from dpm_schemas.events import AgentEnrolled
from dpm_schemas.ids import machine_key


@dataclass(frozen=True)
class Grant:
    """What the presented enrolment token allows: its id (None: the shared secret) and its machine."""

    token_id: uuid.UUID | None = None
    machine_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Found:
    machine_id: uuid.UUID
    name: str | None  # None: not registered (the natural key the api will register it under)

    @property
    def label(self) -> str:
        return self.name or str(self.machine_id)


def unregistered(facts: Facts) -> Found:
    """The machine these facts name when no registered machine owns them: its natural key."""
    return Found(machine_key(mac=facts.macs[0], smbios_uuid=facts.smbios_uuid), None)


def describe(facts: Facts) -> str:
    smbios = f", SMBIOS UUID {facts.smbios_uuid}" if facts.smbios_uuid else ""
    return f"{facts.hostname}: MAC {', '.join(facts.macs)}{smbios}"


def bound_refusal(grant: Grant, found: Found, facts: Facts) -> DpmError | None:
    """Why a token bound to a machine may not enrol the one these facts found (None: it may)."""
    if grant.machine_id is None or (found.machine_id == grant.machine_id and found.name is not None):
        return None
    return E.ENROLMENT_OTHER_MACHINE(bound=grant.machine_id, facts=describe(facts), found=found.label)


def claim_refusal(found: Found, *, revoked: bool) -> DpmError:
    """Why an unbound enrolment may not claim ``found``: it has an agent, or its agent was revoked."""
    return (E.MACHINE_AGENT_REVOKED if revoked else E.MACHINE_HAS_AGENT)(machine=found.label)


def enrolled(grant: Grant, found: Found, facts: Facts, digest: str, *, replaced: bool) -> AgentEnrolled:
    return AgentEnrolled(
        machine_id=found.machine_id,
        token_sha256=digest,
        hostname=facts.hostname,
        macs=facts.macs,
        smbios_uuid=facts.smbios_uuid,
        registered=found.name is not None,
        enrolment_token_id=grant.token_id,
        replaced=replaced,
    )
