"""The agent's own upgrade, decided without I/O (seed catalog: the agent's version must be the
server's; a machine whose agent differs is upgraded automatically, and one whose upgrade failed is
flagged, its upgrade left to a scenario).

The agent's package (``dpm-agent``) is judged by the version the agent reported when it said hello,
never by the machine's inventory: the agent is not a dpkg package on every machine, and the
validation already refuses registering it at any version but the server's, so an upgrade is never a
downgrade. An unknown version (no hello recorded yet) is not judged: the hello triggers another look.

After the upgrade's install, the agent restarts and says hello again: at the server's version the
remote update that waited for it goes on; at another version (or back at the old one once its
package installed) the upgrade did not take (DPM-E218); a failed install is DPM-E217.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from dpm_packages.validation import agent_release
from dpm_schemas import DpmError, E
from dpm_schemas.packages import AGENT_PACKAGE_ID
from dpm_schemas.version import DPM_VERSION
from dpm_updater.domain.delivery import Plan, Stored, item_of

UPGRADES = uuid.UUID("5b0e7c2e-1d3f-4a8b-9c61-3e2f7d9a4b10")  # a held step's upgrade delivery, from its id


def needed(agent_version: str | None, agent_package: Stored | None, server: str = DPM_VERSION) -> Stored | None:
    """The agent package to deliver first, or None: the version is unknown or the server's already,
    or no agent package of the server's release is registered (one left from before a server
    upgrade or rollback would install another release): the machine stays shown as outdated."""
    if not agent_version or agent_version == server or agent_package is None:
        return None
    return agent_package if agent_release(agent_package.package.system_version) == server else None


def plan(agent_package: Stored, current: str, server: str = DPM_VERSION) -> Plan:
    """The upgrade alone (the agent restarts after it, so nothing is queued behind it)."""
    assert agent_package.package.id == AGENT_PACKAGE_ID
    return Plan((item_of(agent_package),), (f"{AGENT_PACKAGE_ID}: upgrading the agent from {current} to {server}",))


def upgrade_id(execution_id: uuid.UUID) -> uuid.UUID:
    """The upgrade delivery of the step held for it: one per execution, so a redelivery makes no other."""
    return uuid.uuid5(UPGRADES, str(execution_id))


class Next(Enum):
    WAIT = "wait"  # the upgrade is still under way
    RESUME = "resume"  # the agent is at the server's version: the held step goes on
    FAIL = "fail"  # the step fails with the error given


@dataclass(frozen=True, slots=True)
class Wait:
    """A remote-update step held for its machine's agent upgrade (``updater.agent_waits``)."""

    execution_id: uuid.UUID
    machine_id: uuid.UUID
    upgrade_id: uuid.UUID
    current: str  # the agent's version when the step was held
    installed_at: datetime | None = None  # when the upgrade's install reported success

    @property
    def installed(self) -> bool:
        return self.installed_at is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    next: Next
    error: DpmError | None = None


def on_hello(wait: Wait, version: str, *, changed: bool, server: str = DPM_VERSION) -> Verdict:
    """The agent said hello at ``version``; ``changed``: the gateway saw its version change while
    online (a restart within the timeout), else it came online. An old version on coming online
    before the install reported is a reconnect of the old agent, not the upgrade's result."""
    if version == server:
        return Verdict(Next.RESUME)
    if changed or wait.installed:
        return Verdict(Next.FAIL, _not_taken(wait, version, server))
    return Verdict(Next.WAIT)


def on_tick(wait: Wait, version: str | None, now: datetime, grace: timedelta, server: str = DPM_VERSION) -> Verdict:
    """The timer's look at a held step, for what no event says: the presence read model at the
    server's version already (the hello was handled before the step was held), or an agent that
    restarted at its old version within the heartbeat timeout (no event at all) ``grace`` after its
    upgrade's install reported success."""
    if version == server:
        return Verdict(Next.RESUME)
    if wait.installed_at is not None and now - wait.installed_at >= grace:
        return Verdict(Next.FAIL, _not_taken(wait, version or "unknown", server))
    return Verdict(Next.WAIT)


def on_install(wait: Wait, ok: bool, code: str | None, message: str, server: str = DPM_VERSION) -> Verdict:
    """The upgrade's install ended: a failure fails the held step; a success waits for the hello."""
    if ok:
        return Verdict(Next.WAIT)
    reason = message or "the installer gave no reason"
    error = E.AGENT_UPGRADE_FAILED(
        machine_id=wait.machine_id, current=wait.current, server=server, code=code or "?", reason=reason[:500]
    )
    return Verdict(Next.FAIL, error)


def _not_taken(wait: Wait, version: str, server: str) -> DpmError:
    return E.AGENT_UPGRADE_NOT_TAKEN(
        machine_id=wait.machine_id, package=AGENT_PACKAGE_ID, current=version, server=server
    )
