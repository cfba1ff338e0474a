"""Login throttling state in PostgreSQL (``api.login_attempts``), not in memory: every api replica
sees the same counters, so a lockout holds whichever replica the next guess reaches, and a restart
does not reset it. Rows are per key and short-lived; old ones are pruned as attempts come in. Failed
logins are not events: a flood of guesses must not grow the log.

Three keys per attempt: the (user name, source address) pair is locked out for long; the source
address alone is throttled (many names from one place); the user name alone only slows down (a
higher limit, a short lock) -- locking a *name* for long would let anyone keep ``admin`` out
forever from anywhere, while the real admin at another address must still get in."""

from __future__ import annotations

from datetime import datetime

from dpm_api.domain.throttle import Counter, Policy, count, retry_after
from dpm_runtime.eventlog import Conn
from dpm_schemas import E

DDL = [
    "CREATE TABLE IF NOT EXISTS api.login_attempts (key text PRIMARY KEY, attempts integer NOT NULL,"
    " since timestamptz NOT NULL, locked_until timestamptz)",
    "CREATE INDEX IF NOT EXISTS login_attempts_since ON api.login_attempts (since)",
]


def user_key(username: str) -> str:
    return f"user:{username}"


def pair_key(username: str, address: str) -> str:
    return f"pair:{address} {username}"  # an address has no space: the name is what follows the first


def source_key(address: str) -> str:
    return f"addr:{address}"


async def attempt(conn: Conn, keys: dict[str, Policy], now: datetime) -> None:
    """Count one login attempt against every key (in one transaction, rows locked in key order), or
    refuse it with DPM-E410 when one of them is locked -- then nothing is counted."""
    counters: dict[str, Counter] = {}
    async with conn.transaction():
        for key in sorted(keys):
            await conn.execute(
                "INSERT INTO api.login_attempts (key, attempts, since) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING",
                (key, now),
            )
            cur = await conn.execute(
                "SELECT attempts, since, locked_until FROM api.login_attempts WHERE key = %s FOR UPDATE", (key,)
            )
            row = await cur.fetchone()
            assert row is not None
            counters[key] = Counter(row[0], row[1], row[2])
        waits = [w for key in keys if (w := retry_after(counters[key], now)) is not None]
        if waits:
            raise E.LOGIN_THROTTLED(retry_after=max(1, round(max(waits))))
        for key, policy in keys.items():
            new = count(counters[key], now, policy)
            await conn.execute(
                "UPDATE api.login_attempts SET attempts = %s, since = %s, locked_until = %s WHERE key = %s",
                (new.attempts, new.since, new.locked_until, key),
            )
        oldest = now - max(p.window + p.lockout for p in keys.values())
        await conn.execute(
            "DELETE FROM api.login_attempts WHERE key IN (SELECT key FROM api.login_attempts WHERE since < %s"
            " AND (locked_until IS NULL OR locked_until < %s) LIMIT 100)",
            (oldest, now),
        )


async def succeeded(conn: Conn, username: str, address: str) -> None:
    """The right password: this address's count for the name and the name's own start afresh (the
    source's does not, nor do other addresses' counts for the name: an attacker stays locked out)."""
    await conn.execute(
        "DELETE FROM api.login_attempts WHERE key = ANY(%s)", ([user_key(username), pair_key(username, address)],)
    )


async def password_changed(conn: Conn, username: str) -> None:
    """A new password (the user's own or an admin's reset): every count for the name starts afresh,
    from every address -- guesses at the old password say nothing about the new one."""
    await conn.execute(
        "DELETE FROM api.login_attempts WHERE key = %s OR (key LIKE 'pair:%%' AND"
        " substr(key, strpos(key, ' ') + 1) = %s)",
        (user_key(username), username),
    )
