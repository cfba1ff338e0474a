"""One delivery's grant and install order, built together: the order carries a fresh token, the grant
(the event that opens the data plane to it) only the token's SHA-256. Remote-update steps and
automatic deliveries both make theirs here."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from dpm_schemas.agent_protocol import InstallItem, InstallOrder, InstallWhen
from dpm_schemas.events import PackageDeliveryGranted
from dpm_updater.domain.delivery import content_ids


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: uuid.UUID  # a remote-update step's execution, or an auto-update's own id
    machine_id: uuid.UUID
    step: str
    purpose: Literal["remote-update", "auto-update", "deferred"]
    items: Sequence[InstallItem]
    expires_at: datetime
    timeout_seconds: int
    when: InstallWhen = InstallWhen.NOW
    at: datetime | None = None


def grant_and_order(d: Delivery, server: str) -> tuple[PackageDeliveryGranted, InstallOrder]:
    token = secrets.token_urlsafe(32)
    granted = PackageDeliveryGranted(
        execution_id=d.delivery_id,
        machine_id=d.machine_id,
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        packages=tuple(i.package.id for i in d.items),
        revisions=tuple(i.package.revision for i in d.items),
        contents=content_ids(d.items),
        expires_at=d.expires_at,
        purpose=d.purpose,
    )
    order = InstallOrder(
        execution_id=d.delivery_id,
        step=d.step,
        server=server,
        token=token,
        items=tuple(d.items),
        when=d.when,
        at=d.at,
        timeout_seconds=d.timeout_seconds,
    )
    return granted, order
