"""Agent enrolment tokens (admin): single-use by default, expiring, shown once; optionally bound to one
machine -- the only way to re-enrol a machine whose agent already has a token or was revoked."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpm_api import auth
from dpm_api.deps import AdminDep, RuntimeDep
from dpm_api.requestmeta import command_metadata
from dpm_runtime.eventlog import NO_STREAM, Conn
from dpm_schemas import E, NewEvent, subjects
from dpm_schemas.events import EnrolmentTokenIssued
from dpm_schemas.ids import stream_id
from dpm_schemas.text import Name

router = APIRouter(prefix="/agents", tags=["agents"])


class EnrolmentIn(BaseModel):
    uses: int = Field(default=1, ge=1, le=100_000, description="How many machines may enrol with it")
    expires_in: float = Field(default=86400.0, gt=0, le=365 * 86400, description="Seconds until it expires")
    machine: Annotated[Name, Field(max_length=253)] | None = Field(
        default=None,
        description="Bind it to this machine (id or name): it then enrols only that machine, replacing its "
        "agent token (re-imaged machine, lost token) or lifting a revocation",
    )


class EnrolmentOut(BaseModel):
    token_id: uuid.UUID
    token: str
    uses: int
    expires_at: datetime
    machine_id: uuid.UUID | None = None


@router.post("/enrolment-tokens", status_code=201, response_model=EnrolmentOut)
async def issue_enrolment_token(body: EnrolmentIn, rt: RuntimeDep, actor: AdminDep) -> EnrolmentOut:
    """An enrolment token for agents; it is shown only now."""
    token_id, token = uuid.uuid4(), "dpme_" + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=body.expires_in)
    async with rt.pool.connection() as conn:
        machine_id = await machine_ref(conn, body.machine) if body.machine else None
    event = EnrolmentTokenIssued(
        token_id=token_id, token_sha256=auth.sha256(token), expires_at=expires_at, uses=body.uses, machine_id=machine_id
    )
    await rt.eventlog.append(
        stream_id(subjects.ENROLMENT, token_id), NO_STREAM, [NewEvent(event, command_metadata(actor))]
    )
    return EnrolmentOut(token_id=token_id, token=token, uses=body.uses, expires_at=expires_at, machine_id=machine_id)


async def machine_ref(conn: Conn, ref: str) -> uuid.UUID:
    """One registered machine by id or name (a name several machines share is refused)."""
    try:
        cur = await conn.execute("SELECT machine_id FROM api.machines WHERE machine_id = %s", (uuid.UUID(ref),))
    except ValueError:
        cur = await conn.execute("SELECT machine_id FROM api.machines WHERE name = %s", (ref,))
    rows = await cur.fetchall()
    if not rows:
        raise E.MACHINE_NOT_FOUND(machine_id=ref)
    if len(rows) > 1:
        raise E.INVALID_REQUEST(reason=f"several machines are named {ref!r}; give the machine id")
    return uuid.UUID(str(rows[0][0]))
