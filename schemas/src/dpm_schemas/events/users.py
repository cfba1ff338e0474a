"""User stream (written by api): accounts, roles, API tokens, logins. Passwords never enter the log
(nor NATS): their scrypt hashes live in the api's credentials table. API tokens are 256-bit random
values, so their SHA-256 may be recorded."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from dpm_schemas.base import Event
from dpm_schemas.text import Text

Username = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9._-]*$")]


class Role(StrEnum):
    """viewer reads; operator also changes machines, groups and power; admin also manages users and the system."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return (Role.VIEWER, Role.OPERATOR, Role.ADMIN).index(self)


class UserCreated(Event):
    wire_name = "UserCreated"

    username: Username
    role: Role


class UserRoleChanged(Event):
    wire_name = "UserRoleChanged"

    username: Username
    role: Role


class UserPasswordChanged(Event):
    wire_name = "UserPasswordChanged"

    username: Username


class UserDisabled(Event):
    wire_name = "UserDisabled"

    username: Username


class UserLoggedIn(Event):
    wire_name = "UserLoggedIn"

    username: Username


class ApiTokenIssued(Event):
    wire_name = "ApiTokenIssued"

    token_id: uuid.UUID
    username: Username
    name: Annotated[Text, Field(max_length=100)]
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ApiTokenRevoked(Event):
    wire_name = "ApiTokenRevoked"

    token_id: uuid.UUID
    username: Username


class BootstrapTokenRevoked(Event):
    """An admin revoked the bootstrap token (DPM_API_TOKEN) with this SHA-256: the api refuses it from
    now on, whatever its environment says; a new DPM_API_TOKEN (and a restart) rotates it."""

    wire_name = "BootstrapTokenRevoked"

    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class BootstrapTokenFirstUsed(Event):
    """The api accepted the bootstrap token with this SHA-256 for the first time, at ``at`` (the api's
    clock): its DPM_API_TOKEN_MAX_AGE counts from here, on every replica and after every restart. One
    per token value (its own stream, appended only as a new stream), so a new value starts afresh."""

    wire_name = "BootstrapTokenFirstUsed"

    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    at: datetime
