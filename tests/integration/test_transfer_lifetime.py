"""Issue 12 item 5 for image transfers: a transfer token is renewed by use (an idle expiry, so a
backup longer than DPM_API_TRANSFER_TTL lives on while it moves data and dies once it stops), and a
transfer opened for an execution is closed (TransferAborted, DPM-E167) once that execution ends."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dpm_agent.deploy.remote import TransferGrant
from dpm_runtime.eventlog import ANY_VERSION
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, NewEvent, subjects
from dpm_schemas.events import (
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionSuspended,
    TransferAborted,
    TransferOpened,
    TransferRenewed,
)
from dpm_schemas.events.imaging import TransferDirection, image_id
from dpm_schemas.ids import stream_id

pytestmark = pytest.mark.integration


async def _missing(i, transfer_id, token: str):
    return await i.http.post(
        f"/v1/transfers/{transfer_id}/missing", json={"ids": []}, headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_used_token_outlives_its_ttl_and_an_idle_one_expires(api_service, imager_service, auth) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}", api_transfer_ttl=2.0)
    async with running(api, headers=auth) as a, running(imager) as i:
        answer = await a.http.post("/images/transfers", json={"image": "lab/long", "direction": "backup"})
        grant = TransferGrant.from_json(answer.json())
        end = time.monotonic() + 3.5  # well past the 2 s TTL: a fixed expiry would have refused by now
        while time.monotonic() < end:
            r = await _missing(i, grant.transfer_id, grant.token)
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.2)  # the client's pace, not a wait for the system
        # the api's name lock follows the renewals: the running backup still holds the name
        again = await a.http.post("/images/transfers", json={"image": "lab/long", "direction": "backup"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "DPM-E160", again.text
        events = await a.runtime.eventlog.read_stream(stream_id(subjects.IMAGE, image_id("lab/long")))
        assert sum(isinstance(r.event, TransferRenewed) for r in events) >= 2

        async def lapsed() -> bool:  # probing with the token would renew it: watch the imager's deadline
            async with i.runtime.pool.connection() as conn:
                sql = "SELECT expires_at < now() FROM imager.transfers WHERE transfer_id = %s"
                row = await (await conn.execute(sql, (grant.transfer_id,))).fetchone()
            return bool(row and row[0])

        await eventually(lapsed, timeout=10, interval=0.1, what="the idle token's deadline passes")
        r = await _missing(i, grant.transfer_id, grant.token)
        assert r.status_code == 401 and r.json()["error"]["code"] == "DPM-E168", r.text


async def _open(a, name: str, direction: TransferDirection, execution_id: uuid.UUID | None) -> tuple[uuid.UUID, str]:
    """A TransferOpened as the api's deploy route writes it (the deploy login is not under test here)."""
    token, transfer_id, iid = uuid.uuid4().hex, uuid.uuid4(), image_id(name)
    opened = TransferOpened(
        transfer_id=transfer_id,
        image_id=iid,
        image=name,
        direction=direction,
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        execution_id=execution_id,
        machine_id=uuid.uuid4() if execution_id else None,
        renew_seconds=3600,
    )
    await a.runtime.eventlog.append(stream_id(subjects.CATALOG, iid), ANY_VERSION, [NewEvent(opened, Metadata.new())])
    return transfer_id, token


ENDS = {
    "completed": lambda x, m: ExecutionCompleted(execution_id=x, machine_id=m),
    "failed": lambda x, m: ExecutionFailed(execution_id=x, machine_id=m, code="DPM-E116", reason="boom"),
    "suspended": lambda x, m: ExecutionSuspended(execution_id=x, machine_id=m, confirmed=True),
}


@pytest.mark.parametrize("end", sorted(ENDS))
async def test_transfers_of_an_execution_close_when_it_ends(api_service, imager_service, auth, end) -> None:
    imager = imager_service()
    api = api_service(api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(imager) as i:
        execution = uuid.uuid4()
        backup = await _open(a, "lab/run-backup", TransferDirection.BACKUP, execution)
        restore = await _open(a, "lab/run-restore", TransferDirection.RESTORE, execution)
        other = await _open(a, "lab/bystander", TransferDirection.BACKUP, uuid.uuid4())
        assert (await _missing(i, *backup)).status_code == 200

        event = ENDS[end](execution, uuid.uuid4())
        await a.runtime.eventlog.append(
            stream_id(subjects.EXECUTION, execution), ANY_VERSION, [NewEvent(event, Metadata.new())]
        )

        async def closed():
            r = await _missing(i, *backup)
            return r if r.status_code != 200 else None

        r = await eventually(closed, timeout=15, what="the backup's transfer closes with its execution")
        assert r.status_code == 410 and r.json()["error"]["code"] == "DPM-E167", r.text
        assert end in r.json()["error"]["message"]
        headers = {"Authorization": f"Bearer {restore[1]}"}
        manifest = await eventually(
            lambda: i.http.get(f"/v1/transfers/{restore[0]}/manifest", headers=headers),
            until=lambda r: r.status_code == 410,
            what="the restore's transfer closes too",
        )
        assert manifest.json()["error"]["code"] == "DPM-E167"
        for name, (tid, _) in (("lab/run-backup", backup), ("lab/run-restore", restore)):
            events = await a.runtime.eventlog.read_stream(stream_id(subjects.IMAGE, image_id(name)))
            assert [r.event.transfer_id for r in events if isinstance(r.event, TransferAborted)] == [tid]
        assert (await _missing(i, *other)).status_code == 200  # another execution's transfer goes on
