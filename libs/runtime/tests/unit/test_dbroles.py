"""The per-service database roles (issue 12, item 12): one writer per stream category, the same in
``dbroles.ROLES`` and in migration 0004, and names that compose and ``dpm up`` agree on."""

from __future__ import annotations

import re
from importlib import resources

from dpm_runtime import dbroles
from dpm_schemas import subjects


def test_every_stream_category_has_exactly_one_writer_or_is_named_unowned() -> None:
    owners: dict[str, list[str]] = {}
    for r in dbroles.ROLES.values():
        for category in r.categories:
            owners.setdefault(category, []).append(r.service)
    assert set(owners) | set(dbroles.UNOWNED) == set(subjects.CATEGORIES), "a category without a decision"
    assert not set(owners) & set(dbroles.UNOWNED)
    assert {c: o for c, o in owners.items() if len(o) != 1} == {}


def test_the_migrations_seed_the_same_owners() -> None:
    sql = resources.files("dpm_runtime.sql")
    text = "".join(sql.joinpath(f).read_text() for f in ("0004_stream_owners.sql", "0005_delivery_owner.sql"))
    seeded = set(re.findall(r"\('([a-z]+)', '(dpm_[a-z_]+)'\)", text))
    assert seeded == {(c, r.role) for r in dbroles.ROLES.values() for c in r.categories}


def test_role_and_variable_names() -> None:
    assert [dbroles.role_of(s) for s in ("api", "agent-gateway", "relay")] == [
        "dpm_api",
        "dpm_agent_gateway",
        "dpm_relay",
    ]
    assert dbroles.password_variable("agent-gateway") == "DPM_DB_AGENT_GATEWAY_PASSWORD"
    assert len({r.role for r in dbroles.ROLES.values()}) == len(dbroles.ROLES)
    assert dbroles.LEGACY_ROLE not in {r.role for r in dbroles.ROLES.values()}
