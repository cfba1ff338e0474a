"""Agent enrolment tokens (admin): single-use by default, expiring, shown once."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dpm_api import auth
from dpm_api.deps import AdminDep, RuntimeDep
from dpm_runtime.eventlog import NO_STREAM
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import EnrolmentTokenIssued
from dpm_schemas.ids import stream_id

router = APIRouter(prefix="/agents", tags=["agents"])


class EnrolmentIn(BaseModel):
    uses: int = Field(default=1, ge=1, le=100_000, description="How many machines may enrol with it")
    expires_in: float = Field(default=86400.0, gt=0, le=365 * 86400, description="Seconds until it expires")


class EnrolmentOut(BaseModel):
    token_id: uuid.UUID
    token: str
    uses: int
    expires_at: datetime


@router.post("/enrolment-tokens", status_code=201, response_model=EnrolmentOut)
async def issue_enrolment_token(body: EnrolmentIn, rt: RuntimeDep, actor: AdminDep) -> EnrolmentOut:
    """An enrolment token for new agents; it is shown only now."""
    token_id, token = uuid.uuid4(), "dpme_" + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=body.expires_in)
    event = EnrolmentTokenIssued(
        token_id=token_id, token_sha256=auth.sha256(token), expires_at=expires_at, uses=body.uses
    )
    await rt.eventlog.append(
        stream_id(subjects.ENROLMENT, token_id), NO_STREAM, [NewEvent(event, Metadata.new(actor=actor))]
    )
    return EnrolmentOut(token_id=token_id, token=token, uses=body.uses, expires_at=expires_at)
