"""Which machine an enrolment binds, and whether it may: no enrolment takes over a machine's identity.

MACs and SMBIOS UUIDs are claims anyone can make, so they only ever *find* a machine:
- an unbound enrolment token (or the gateway's shared secret) enrols a new machine, or a registered
  one that has no agent token and was never revoked -- else DPM-E123 / DPM-E124;
- a token bound to a machine at issue (``dpm agents enrolment-token --machine X``, the explicit admin
  step) enrols only that machine -- the host's facts must match it, else DPM-E125 -- and replaces its
  agent token, lifting a revocation; the old token's sessions are then closed on every replica.
A refused enrolment changes nothing: it runs in the caller's transaction, so the use of the
enrolment token is rolled back with it and the real agent keeps its token and its session.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from dpm_agent_gateway import store
from dpm_runtime.eventlog import ANY_VERSION, Conn, EventLog
from dpm_schemas import E, Metadata, NewEvent, subjects
from dpm_schemas.agent_protocol import Facts
from dpm_schemas.events import AgentEnrolled
from dpm_schemas.ids import machine_key, stream_id

log = logging.getLogger(__name__)

_MATCHES = "NOT deleted AND (macs && %s OR (smbios_uuid IS NOT NULL AND smbios_uuid = %s))"


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


async def resolve(conn: Conn, facts: Facts, prefer: uuid.UUID | None = None) -> Found:
    """The registered machine owning any of these MACs or this SMBIOS UUID (``prefer`` first, then the
    oldest); else the natural key of an unregistered machine."""
    cur = await conn.execute(
        f"SELECT machine_id, name FROM {store.SCHEMA}.machine_directory WHERE {_MATCHES}"
        " ORDER BY machine_id = %s DESC, position LIMIT 1",
        (list(facts.macs), facts.smbios_uuid, prefer),
    )
    row = await cur.fetchone()
    if row:
        return Found(row[0], row[1])
    return Found(machine_key(mac=facts.macs[0], smbios_uuid=facts.smbios_uuid), None)


def describe(facts: Facts) -> str:
    smbios = f", SMBIOS UUID {facts.smbios_uuid}" if facts.smbios_uuid else ""
    return f"{facts.hostname}: MAC {', '.join(facts.macs)}{smbios}"


async def bind(conn: Conn, eventlog: EventLog, grant: Grant, facts: Facts, digest: str) -> AgentEnrolled:
    """Give the machine these facts name the token ``digest`` if the grant allows it, and record it."""
    found = await resolve(conn, facts, prefer=grant.machine_id)
    replaced = False
    if grant.machine_id is not None:
        if found.machine_id != grant.machine_id or found.name is None:
            log.warning("enrolment refused: token bound to %s presented by %s", grant.machine_id, describe(facts))
            raise E.ENROLMENT_OTHER_MACHINE(bound=grant.machine_id, facts=describe(facts), found=found.label)
        replaced = await store.replace_token(conn, found.machine_id, digest)
    elif (revoked := await store.claim_token(conn, found.machine_id, digest)) is not None:
        log.warning(
            "enrolment refused: %s claims machine %s, which has an agent or was revoked", describe(facts), found.label
        )
        raise (E.MACHINE_AGENT_REVOKED if revoked else E.MACHINE_HAS_AGENT)(machine=found.label)
    event = AgentEnrolled(
        machine_id=found.machine_id,
        token_sha256=digest,
        hostname=facts.hostname,
        macs=facts.macs,
        smbios_uuid=facts.smbios_uuid,
        registered=found.name is not None,
        enrolment_token_id=grant.token_id,
        replaced=replaced,
    )
    appended = await eventlog.append(
        stream_id(subjects.AGENT, found.machine_id),
        ANY_VERSION,
        [NewEvent(event, Metadata.new(actor="agent-gateway"))],
        conn=conn,
    )
    await store.enrolled_at(conn, found.machine_id, appended.position)
    return event
