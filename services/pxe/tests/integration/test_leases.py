"""The lease store in PostgreSQL: what a decision reads (bounded), and what it persists."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address

import pytest

from dpm_pxe.adapters.dhcp.leases import LeaseStore
from dpm_pxe.adapters.state import DDL, SCHEMA
from dpm_pxe.domain.dhcp.full import Decline, Free, Hold, Holding
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_runtime.directory import directory_ddl
from dpm_schemas.events.boot import DhcpRange

pytestmark = pytest.mark.integration

POOLS = (Pool.from_range(DhcpRange(start="10.7.0.10", end="10.7.0.20", subnet="10.7.0.0/24")),)
A, B, C = "52:54:00:07:00:0a", "52:54:00:07:00:0b", "52:54:00:07:00:0c"


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


async def test_book_skips_held_declined_and_reserved_addresses_and_sees_only_what_matters(pool) -> None:
    async with pool.connection() as conn:
        for statement in [*directory_ddl(SCHEMA), *DDL]:
            await conn.execute(statement.encode())
        await conn.execute(  # a registered machine with a fixed address inside the range
            f"INSERT INTO {SCHEMA}.machine_directory (machine_id, name, macs, ip, position)"
            " VALUES (%s, 'pc', %s, %s, 1)",
            (uuid.uuid4(), [C], "10.7.0.12"),
        )
    store = LeaseStore(pool)
    await store.persist(Hold(ip("10.7.0.10"), A, "bound", 600))
    await store.persist(Decline(ip("10.7.0.11"), B))
    await store.persist(Hold(ip("10.7.0.14"), B, "offered", -1))  # already expired: free again

    book = await store.book(B, None, POOLS)
    assert book.free == (ip("10.7.0.13"), ip("10.7.0.14"), ip("10.7.0.15"), ip("10.7.0.16"))
    assert book.holdings == (Holding(ip("10.7.0.11"), B, "declined"),) and book.reservations == {}

    asked = await store.book(C, ip("10.7.0.10"), POOLS)  # C asks for A's address; C's reservation is known
    assert set(asked.holdings) == {Holding(ip("10.7.0.10"), A, "bound")}
    assert asked.reservations == {C: ip("10.7.0.12")}

    await store.persist(Hold(ip("10.7.0.13"), A, "bound", 600))  # A moves: its old address is given back
    await store.persist(Free(None, B))  # B releases all it holds, but a decline stays
    rows = {(r["ip"], r["mac"], r["state"]) for r in await store.leases()}
    assert rows == {("10.7.0.13", A, "bound"), ("10.7.0.11", B, "declined")}
