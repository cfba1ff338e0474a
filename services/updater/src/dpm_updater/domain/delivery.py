"""What a remote-update step delivers, decided without I/O: the step's parameters, the packages the
machine's inventory makes applicable (the engine ``GET /machines/{m}/packages`` uses) in install
order, what is skipped and why, and whether a delivery token allows a request.

A package already applied is skipped (a remote update re-run on an up-to-date machine completes);
one that cannot apply here (wrong OS, a newer version installed) is skipped with its reason; one
whose facts are unknown is skipped too, since installing blind is what the "re-delivered forever"
trap of the original did. The step fails only when a named package does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from dpm_packages import Assessment, Inventory, Verdict, assess, install_order
from dpm_packages.remote_update import Request, request_of
from dpm_schemas import E
from dpm_schemas.agent_protocol import InstallItem
from dpm_schemas.packages import Package

__all__ = ["Grant", "Plan", "Request", "Stored", "check_grant", "content_ids", "plan", "request_of"]


@dataclass(frozen=True, slots=True)
class Stored:
    """A package as the updater's catalogue holds it: the definition and the content it names."""

    package: Package
    sha256: str | None
    size: int
    file_name: str


@dataclass(frozen=True, slots=True)
class Plan:
    items: tuple[InstallItem, ...]
    skipped: tuple[str, ...]  # "ID: why", for the step's messages

    def summary(self) -> str:
        sent = ", ".join(f"{i.package.id} r{i.package.revision}" for i in self.items)
        parts = [f"delivering {sent}" if sent else "nothing to install"]
        if self.skipped:
            parts.append("skipped " + "; ".join(self.skipped))
        return "; ".join(parts)[:1000]


def plan(request: Request, catalogue: Mapping[str, Stored], inventory: Inventory) -> Plan:
    """The items to send, in install order, and what is skipped; DPM-E276 for an unknown package."""
    missing = [p for p in request.package_ids if p not in catalogue]
    if missing:
        raise E.PACKAGE_NOT_FOUND(package=missing[0])
    chosen = [catalogue[p].package for p in request.package_ids]
    verdicts = assess(inventory, chosen)
    order = install_order(verdicts, chosen)
    items = tuple(item_of(catalogue[p]) for p in order)
    skipped = tuple(_why(a) for a in verdicts if a.verdict is not Verdict.APPLICABLE)
    alone = [i.package.id for i in items if i.package.execution.exclusive]
    if alone and len(items) > 1:  # the seed's rule: an exclusive package is applied on its own
        why = f"{alone[0]} is exclusive (applied alone); give it a remote update of its own"
        raise E.REMOTE_UPDATE_PARAMS_INVALID(param="packages", reason=why)
    return Plan(items, skipped)


def item_of(s: Stored) -> InstallItem:
    """The file goes by the name the package declares for it (its installer looks for that name),
    else the name it was uploaded under."""
    declared = s.package.execution.files[0] if s.package.execution.files else ""
    return InstallItem(package=s.package, sha256=s.sha256, size=s.size, file_name=declared or s.file_name)


def _why(a: Assessment) -> str:
    reasons = ", ".join(r.text for r in a.reasons) or a.verdict.value
    return f"{a.package_id}: {a.verdict.value} ({reasons})"


@dataclass(frozen=True, slots=True)
class Grant:
    """A delivery as the updater's read model holds it (``updater.deliveries``)."""

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    contents: tuple[str, ...]
    expires_at: datetime
    ended: bool
    purpose: str = "remote-update"  # or "auto-update": no execution runs it, its final report ends it
    packages: tuple[str, ...] = ()  # what it delivers: the only packages its reports may speak of


def check_grant(
    grant: Grant | None, now: datetime, *, sha256: str | None = None, execution_id: uuid.UUID | None = None
) -> Grant:
    """The grant if it allows downloading ``sha256`` / reporting on ``execution_id``, else DPM-E281."""
    what = f"content {sha256}" if sha256 else f"reports on execution {execution_id}" if execution_id else "it"
    if grant is None:
        raise E.DELIVERY_TOKEN_REFUSED(what=what, reason="no delivery has this token")
    if grant.ended:
        raise E.DELIVERY_TOKEN_REFUSED(what=what, reason="its execution has ended")
    if grant.expires_at <= now:
        raise E.DELIVERY_TOKEN_REFUSED(what=what, reason=f"it expired at {grant.expires_at.isoformat()}")
    if sha256 is not None and sha256 not in grant.contents:
        raise E.DELIVERY_TOKEN_REFUSED(what=what, reason="it is not part of this delivery")
    if execution_id is not None and execution_id != grant.execution_id:
        raise E.DELIVERY_TOKEN_REFUSED(what=what, reason="the token was given for another execution")
    return grant


def content_ids(items: Sequence[InstallItem]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i.sha256 for i in items if i.sha256))
