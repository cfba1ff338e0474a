"""Which agent sessions must close, and what the agent is told (pure).

The truth is the database's (``adapters.store.session_truth``): per machine, its current token hash,
whether that token is revoked, and the id of its newest session. A held session is stale once its
token is no longer the machine's (replaced by a bound re-enrolment, or revoked) or a newer session
opened: "newest wins", so an agent that comes back after a network drop replaces its own half-open
session at once instead of waiting for a timeout.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from dpm_schemas import E, agent_protocol
from dpm_schemas.agent_protocol import Refused

Truth = Mapping[uuid.UUID, tuple[str | None, bool, uuid.UUID | None]]  # (token hash, revoked, newest session)


class Verdict(enum.Enum):
    REVOKED = "revoked"  # the token is no longer the machine's: replaced or revoked
    REPLACED = "replaced"  # a newer session with the same token opened


class Held(Protocol):
    """What a held session is judged by."""

    @property
    def machine_id(self) -> uuid.UUID: ...

    @property
    def token_sha256(self) -> str: ...

    @property
    def session_id(self) -> uuid.UUID: ...


S = TypeVar("S", bound=Held)


def stale(held: Iterable[S], truth: Truth) -> list[tuple[S, Verdict]]:
    """Which held sessions must close, and why; a machine the truth does not know is revoked."""
    out = []
    for session in held:
        digest, revoked, newest = truth.get(session.machine_id, (None, True, None))
        if revoked or digest != session.token_sha256:
            out.append((session, Verdict.REVOKED))
        elif newest is not None and newest != session.session_id:
            out.append((session, Verdict.REPLACED))
    return out


def refusal(machine_id: uuid.UUID, verdict: Verdict) -> tuple[int, Refused]:
    """The close code and the Refused frame a session of ``machine_id`` ends with."""
    if verdict is Verdict.REVOKED:
        err = E.AGENT_TOKEN_REFUSED(detail=" or was replaced by a new enrolment")
        return agent_protocol.CLOSE_UNAUTHORIZED, Refused(code=err.code, message=err.message)
    err = E.AGENT_SESSION_REPLACED(machine_id=machine_id)
    return agent_protocol.CLOSE_REPLACED, Refused(code=err.code, message=err.message)
