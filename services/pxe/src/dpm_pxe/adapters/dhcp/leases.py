"""Full mode's holdings in PostgreSQL (``pxe.leases``) and the reservations from the machine records.

One row per address in use, keyed by the address, so two holders of one address cannot exist; a lease
is written (and committed) before its ACK is sent.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from psycopg_pool import AsyncConnectionPool

from dpm_pxe.domain.dhcp.full import Book, Decline, Effect, Free, Hold, Holding
from dpm_pxe.domain.dhcp.pools import Pool
from dpm_runtime.eventlog import Conn

DECLINED_FOR = 3600  # seconds an address reported in use (DHCPDECLINE) is left alone
FREE_CANDIDATES = 4  # free addresses read per pool and request (the router or a race may rule one out)


class LeaseStore:
    def __init__(self, pool: AsyncConnectionPool[Conn], schema: str = "pxe") -> None:
        self._pool = pool
        self._schema = schema
        # pool start -> offset the free-address search starts from, so it does not rescan the addresses
        # given out before (a hint only: the search wraps around and sees every holding)
        self._next: dict[IPv4Address, int] = {}

    async def book(self, mac: str, requested: IPv4Address | None, pools: tuple[Pool, ...]) -> Book:
        """Only what one decision needs (see ``domain.dhcp.full.Book``): a few indexed queries, not the whole table."""
        wanted = str(requested) if requested else None
        async with self._pool.connection() as conn:
            held = await (
                await conn.execute(
                    f"SELECT host(ip), mac, state FROM {self._schema}.leases"
                    " WHERE expires_at > now() AND (mac = %s OR ip = %s::inet)",
                    (mac, wanted),
                )
            ).fetchall()
            reserved = await (
                await conn.execute(
                    f"SELECT m, ip FROM {self._schema}.machine_directory, unnest(macs) AS m"
                    " WHERE ip IS NOT NULL AND NOT deleted AND position('.' in ip) > 0 AND (%s = ANY(macs) OR ip = %s)",
                    (mac, wanted),
                )
            ).fetchall()
            free = [ip for pool in pools for ip in await self._free(conn, pool)]
        return Book(
            holdings=tuple(Holding(IPv4Address(ip), m, state) for ip, m, state in held),
            reservations={m: IPv4Address(ip) for m, ip in reserved if m == mac or ip == wanted},
            free=tuple(free),
        )

    async def _free(self, conn: Conn, pool: Pool) -> list[IPv4Address]:
        """A few addresses of ``pool`` nobody holds or has reserved, from where the last search found room."""
        size = int(pool.end) - int(pool.start) + 1
        hint = self._next.get(pool.start, 0) % size  # next fit: where the last search found room
        rows = await (
            await conn.execute(
                "SELECT host(a) FROM (SELECT g FROM generate_series(%s::bigint, %s) AS g UNION ALL"
                " SELECT g FROM generate_series(0, %s::bigint - 1) AS g) AS o,"
                " LATERAL (SELECT %s::inet + o.g AS a) AS x"
                f" WHERE NOT EXISTS (SELECT 1 FROM {self._schema}.leases l WHERE l.ip = x.a"
                " AND l.expires_at > now())"
                f" AND NOT EXISTS (SELECT 1 FROM {self._schema}.machine_directory d WHERE d.ip = host(x.a)"
                " AND NOT d.deleted) LIMIT %s",
                (hint, size - 1, hint, str(pool.start), FREE_CANDIDATES),
            )
        ).fetchall()
        found = [IPv4Address(r[0]) for r in rows]
        if found:
            self._next[pool.start] = int(found[0]) - int(pool.start)
        return found

    async def persist(self, effect: Effect) -> None:
        """One transaction per effect. An offer is a hint, not a promise (RFC 2131 §4.3.1): it is not
        waited for on disk (synchronous_commit off); a lease, a release and a decline are."""
        async with self._pool.connection() as conn, conn.transaction():
            if isinstance(effect, Hold) and effect.state == "offered":
                await conn.execute("SET LOCAL synchronous_commit = off")
            if isinstance(effect, Hold):
                # the address moves to this client; any other address it held is given back
                await conn.execute(
                    f"DELETE FROM {self._schema}.leases WHERE mac = %s AND ip <> %s AND state <> 'declined'",
                    (effect.mac, str(effect.ip)),
                )
                await conn.execute(
                    f"INSERT INTO {self._schema}.leases (ip, mac, state, expires_at)"
                    " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
                    " ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, state = excluded.state,"
                    " expires_at = excluded.expires_at, updated_at = now()",
                    (str(effect.ip), effect.mac, effect.state, effect.seconds),
                )
            elif isinstance(effect, Free):
                if effect.ip is None:
                    await conn.execute(
                        f"DELETE FROM {self._schema}.leases WHERE mac = %s AND state <> 'declined'", (effect.mac,)
                    )
                else:
                    await conn.execute(
                        f"DELETE FROM {self._schema}.leases WHERE mac = %s AND ip = %s AND state <> 'declined'",
                        (effect.mac, str(effect.ip)),
                    )
            elif isinstance(effect, Decline):
                await conn.execute(
                    f"INSERT INTO {self._schema}.leases (ip, mac, state, expires_at)"
                    " VALUES (%s, %s, 'declined', now() + make_interval(secs => %s))"
                    " ON CONFLICT (ip) DO UPDATE SET state = 'declined', expires_at = excluded.expires_at",
                    (str(effect.ip), effect.mac, DECLINED_FOR),
                )

    async def leases(self) -> list[dict[str, object]]:
        """Current holdings for the operator (``GET /dhcp/leases``)."""
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT host(ip), mac, state, expires_at FROM {self._schema}.leases"
                    " WHERE expires_at > now() ORDER BY ip"
                )
            ).fetchall()
        return [{"ip": ip, "mac": mac, "state": state, "expires_at": exp.isoformat()} for ip, mac, state, exp in rows]
