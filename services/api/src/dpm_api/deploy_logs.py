"""Deploy logs: what a deploy environment printed (its console, the kernel's messages, the deploy
client's own log), uploaded by the client after its step as one gzip-compressed tar and kept here,
the latest per machine -- the next run's upload replaces it (ADR 0015).

Plain storage, not a projection: a bundle is bulky and never in the event log (only the fact is,
``DeployLogUploaded``), so a rebuild of the read models leaves ``api.deploy_logs`` as it is.

A bundle comes from a machine, so it is untrusted: only regular members of the known names are
read, their unpacked size is bounded (a small gzip may unpack to gigabytes), and text is served
with its control characters made visible (``safe_text``) -- a terminal escape sequence in a log must
not reach the operator's terminal or browser as one.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime

from dpm_runtime.eventlog import Conn
from dpm_schemas import E

LIMIT = 16 << 20  # bytes of one bundle as uploaded (gzip'd); the client keeps 4 MiB of each log's tail
UNPACKED_LIMIT = 64 << 20  # bytes of its members together once unpacked
PARTS = {"console": "console.log", "dmesg": "dmesg.log", "client": "client.log"}
DDL = [
    "CREATE TABLE IF NOT EXISTS api.deploy_logs (machine_id uuid PRIMARY KEY, execution_id uuid NOT NULL UNIQUE,"
    " uploaded_at timestamptz NOT NULL, size bigint NOT NULL, sha256 text NOT NULL, parts text[] NOT NULL,"
    " bundle bytea NOT NULL)",
]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TOKEN = re.compile(rb"(dpm\.token=)\S+")


def parse_bundle(data: bytes) -> dict[str, bytes]:
    """The parts of a bundle by their short name (console, dmesg, client); DPM-E444 for anything
    that is not a gzip'd tar of regular members named as in ``PARTS``, DPM-E442 past the bounds."""
    if len(data) > LIMIT:
        raise E.DEPLOY_LOG_TOO_LARGE(size=len(data), what="as uploaded", limit=LIMIT)
    names = {v: k for k, v in PARTS.items()}
    parts: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                short = names.get(member.name)
                if short is None or not member.isreg() or short in parts:
                    raise E.DEPLOY_LOG_INVALID(reason=f"unexpected member {member.name[:100]!r}")
                total += member.size
                if total > UNPACKED_LIMIT:
                    raise E.DEPLOY_LOG_TOO_LARGE(size=total, what="unpacked", limit=UNPACKED_LIMIT)
                f = tar.extractfile(member)
                parts[short] = f.read(member.size) if f else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise E.DEPLOY_LOG_INVALID(reason=f"not a gzip-compressed tar ({exc})"[:300]) from None
    if "console" not in parts:
        raise E.DEPLOY_LOG_INVALID(reason="it has no console.log")
    return parts


def safe_text(data: bytes) -> str:
    """A log as text to show: UTF-8 (invalid bytes replaced), control characters other than tab and
    newline in caret notation (ESC as ``^[``), and any deploy token on a kernel command line hidden."""
    text = _TOKEN.sub(rb"\1<hidden>", data).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return _CONTROL.sub(_caret, text)


def _caret(m: re.Match[str]) -> str:
    c = ord(m.group())
    return "^" + chr((c + 0x40) & 0x7F) if c < 0x80 else "\ufffd"


@dataclass(frozen=True)
class StoredLog:
    machine_id: uuid.UUID
    execution_id: uuid.UUID
    uploaded_at: datetime
    size: int
    sha256: str
    parts: list[str]
    bundle: bytes


async def store(conn: Conn, log: StoredLog) -> None:
    """Keep ``log`` as its machine's latest, replacing the previous run's."""
    await conn.execute(
        "DELETE FROM api.deploy_logs WHERE execution_id = %s AND machine_id <> %s", (log.execution_id, log.machine_id)
    )
    await conn.execute(
        "INSERT INTO api.deploy_logs (machine_id, execution_id, uploaded_at, size, sha256, parts, bundle)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET execution_id ="
        " excluded.execution_id, uploaded_at = excluded.uploaded_at, size = excluded.size, sha256 = excluded.sha256,"
        " parts = excluded.parts, bundle = excluded.bundle",
        (log.machine_id, log.execution_id, log.uploaded_at, log.size, log.sha256, log.parts, log.bundle),
    )


async def fetch(conn: Conn, execution_id: uuid.UUID) -> StoredLog:
    """This execution's log, else DPM-E443 saying why: no such execution, a later run of its machine
    replaced it, or none was uploaded."""
    cols = "machine_id, execution_id, uploaded_at, size, sha256, parts, bundle"
    row = await (
        await conn.execute(f"SELECT {cols} FROM api.deploy_logs WHERE execution_id = %s", (execution_id,))
    ).fetchone()
    if row is not None:
        return StoredLog(*row)
    found = await (
        await conn.execute(
            "SELECT l.execution_id FROM api.executions x LEFT JOIN api.deploy_logs l ON l.machine_id = x.machine_id"
            " WHERE x.execution_id = %s",
            (execution_id,),
        )
    ).fetchone()
    if found is None:
        reason = "there is no such execution"
    elif found[0] is not None:
        reason = f"a later run of its machine (execution {found[0]}) uploaded its own, which replaced it"
    else:
        reason = "its deploy environment uploaded none (it never got that far, or the step is no netboot step)"
    raise E.DEPLOY_LOG_NOT_FOUND(execution_id=execution_id, reason=reason)
