"""The gateway's pure rules (issue 13), table-driven: which held sessions close and what they are
told, which presence changes are transitions, which machine an enrolment binds and whether it may."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from dpm_agent_gateway.domain import presence
from dpm_agent_gateway.domain.enrolment import Found, Grant, bound_refusal, claim_refusal, enrolled, unregistered
from dpm_agent_gateway.domain.sessions import Verdict, refusal, stale
from dpm_agent_gateway.domain.tokens import token_hash
from dpm_schemas import E, agent_protocol
from dpm_schemas.agent_protocol import Facts, Inventory
from dpm_schemas.events import (
    AgentVersionChanged,
    InventoryReported,
    MachineAddressesChanged,
    MachineCameOnline,
    MachineWentOffline,
)
from dpm_schemas.ids import machine_key

M, OTHER = uuid.UUID(int=1), uuid.UUID(int=2)
S1, S2 = uuid.UUID(int=11), uuid.UUID(int=12)


@dataclass
class Held:
    machine_id: uuid.UUID
    token_sha256: str
    session_id: uuid.UUID


@pytest.mark.parametrize(
    ("truth", "verdict"),
    [
        ({M: ("h", False, S1)}, None),  # its token, the newest session
        ({M: ("h", False, None)}, None),  # no session recorded yet
        ({M: ("h", True, S1)}, Verdict.REVOKED),
        ({M: ("other", False, S1)}, Verdict.REVOKED),  # replaced by a bound re-enrolment
        ({M: (None, False, S1)}, Verdict.REVOKED),
        ({}, Verdict.REVOKED),  # the machine has no token at all
        ({M: ("h", False, S2)}, Verdict.REPLACED),  # a newer session of the same token: newest wins
        ({M: ("h", True, S2)}, Verdict.REVOKED),  # revocation first
    ],
)
def test_which_held_sessions_close(truth: dict, verdict: Verdict | None) -> None:
    session = Held(M, "h", S1)
    assert stale([session], truth) == ([(session, verdict)] if verdict else [])


def test_a_closed_session_is_told_why() -> None:
    code, refused = refusal(M, Verdict.REVOKED)
    assert code == agent_protocol.CLOSE_UNAUTHORIZED and refused.code == E.AGENT_TOKEN_REFUSED.code
    code, refused = refusal(M, Verdict.REPLACED)
    assert code == agent_protocol.CLOSE_REPLACED and refused.code == E.AGENT_SESSION_REPLACED.code
    assert str(M) in refused.message


INV = Inventory(os="debian", kernel="6.1", packages=("b", "a"), digest="d2")


@pytest.mark.parametrize(
    ("change", "event", "columns"),
    [
        (presence.came_online(M, online=True, agent_version="1"), None, None),
        (
            presence.came_online(M, online=False, agent_version="1"),
            MachineCameOnline(machine_id=M, agent_version="1"),
            {"online": True, "agent_version": "1"},
        ),
        (presence.said_hello(M, online=True, agent_version="1", known_version="1"), None, None),
        (  # online already: a restart within the timeout, after the agent upgraded itself
            presence.said_hello(M, online=True, agent_version="2", known_version="1"),
            AgentVersionChanged(machine_id=M, agent_version="2", previous="1"),
            {"agent_version": "2"},
        ),
        (  # offline: it comes online, whatever its version was
            presence.said_hello(M, online=False, agent_version="2", known_version="1"),
            MachineCameOnline(machine_id=M, agent_version="2"),
            {"online": True, "agent_version": "2"},
        ),
        (presence.addresses(M, ("10.0.0.2", "10.0.0.1"), ["10.0.0.1", "10.0.0.2"]), None, None),  # order aside
        (
            presence.addresses(M, ("10.0.0.3",), ["10.0.0.1"]),
            MachineAddressesChanged(machine_id=M, ips=("10.0.0.3",)),
            {"ips": ["10.0.0.3"]},
        ),
        (presence.inventory(M, INV, "d2"), None, None),
        (
            presence.inventory(M, INV, "d1"),
            InventoryReported(machine_id=M, os="debian", kernel="6.1", packages=("a", "b"), digest="d2"),
            {"inventory_digest": "d2"},
        ),
        (
            presence.went_offline(M, 15.0),
            MachineWentOffline(machine_id=M, reason="no heartbeat for 15 s"),
            {"online": False},
        ),
    ],
)
def test_only_transitions_reach_the_log(
    change: presence.Change | None, event: object | None, columns: dict | None
) -> None:
    if event is None:
        assert change is None
    else:
        assert change is not None and change.event == event and dict(change.columns) == columns


FACTS = Facts(hostname="pc1", macs=("52:54:00:00:00:01",), smbios_uuid=None, ips=())
REGISTERED, NEW = Found(M, "pc1"), unregistered(FACTS)


@pytest.mark.parametrize(
    ("grant", "found", "refused"),
    [
        (Grant(), REGISTERED, None),  # unbound: the claim decides (claim_refusal)
        (Grant(), NEW, None),
        (Grant(uuid.uuid4(), M), REGISTERED, None),  # bound to the machine the facts find
        (Grant(uuid.uuid4(), OTHER), REGISTERED, E.ENROLMENT_OTHER_MACHINE.code),
        (Grant(uuid.uuid4(), NEW.machine_id), NEW, E.ENROLMENT_OTHER_MACHINE.code),  # bound, yet unregistered
    ],
)
def test_a_bound_token_enrols_only_its_machine(grant: Grant, found: Found, refused: str | None) -> None:
    err = bound_refusal(grant, found, FACTS)
    assert (err.code if err else None) == refused


def test_an_unbound_claim_is_refused_by_whether_the_machine_was_revoked() -> None:
    assert claim_refusal(REGISTERED, revoked=True).code == E.MACHINE_AGENT_REVOKED.code
    assert claim_refusal(REGISTERED, revoked=False).code == E.MACHINE_HAS_AGENT.code
    assert "pc1" in claim_refusal(REGISTERED, revoked=False).message
    assert str(NEW.machine_id) in claim_refusal(NEW, revoked=False).message  # labelled by its key


def test_the_enrolment_event_and_the_natural_key() -> None:
    assert Found(machine_key(mac=FACTS.macs[0], smbios_uuid=None), None) == NEW
    token_id = uuid.uuid4()
    event = enrolled(Grant(token_id, M), REGISTERED, FACTS, token_hash("t"), replaced=True)
    assert (event.machine_id, event.registered, event.replaced, event.enrolment_token_id) == (M, True, True, token_id)
    assert event.token_sha256 == token_hash("t") != "t" and len(event.token_sha256) == 64
    assert not enrolled(Grant(), NEW, FACTS, token_hash("t"), replaced=False).registered
