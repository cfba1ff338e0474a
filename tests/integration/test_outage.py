"""PostgreSQL going away and a service stopping, seen by an HTTP caller of the api (issue 21).

While PostgreSQL is down a database-backed route answers within a few seconds with a catalogued 503
(DPM-E039) and ``Retry-After`` instead of hanging 30 s for a plain 500, and answers normally again once
PostgreSQL is back. A request in flight when the api is told to stop gets its normal answer: the
HTTP server stops accepting and drains before the pool and NATS close.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_api.settings import ApiSettings
from dpm_pxe.bootstrap import bootstrap as pxe_bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.dbroles import role_of
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.service import serve
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

from .conftest import TOKEN

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def private_pg() -> Iterator[PostgresCluster]:
    """A cluster of this test's own: stopping it must not touch the session cluster other tests use."""
    root = Path(tempfile.mkdtemp(prefix="dpm-test-outage-"))
    root.chmod(0o755)  # the postgres system user must reach it when tests run as root
    cluster = PostgresCluster(root=root / "pg", port=free_port(), fast_unsafe=True)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def api_on(cluster: PostgresCluster, nats_url: str) -> ApiSettings:
    return ApiSettings(
        database_url=SecretStr(cluster.url(user=role_of("api"))),
        database_admin_url=SecretStr(cluster.url()),
        nats_url=nats_url,
        api_port=free_port(),
        api_token=SecretStr(TOKEN),
    )


async def test_a_postgres_outage_answers_503_with_a_code_and_retry_after_fast_then_recovers(
    private_pg, nats_server, auth
) -> None:
    async with running(api_bootstrap(api_on(private_pg, nats_server.url)), headers=auth) as api:
        assert (await api.http.get("/machines")).status_code == 200
        private_pg.stop()
        for _ in range(2):  # the pool's connections broken, then the pool empty: both answer fast
            started = time.monotonic()
            answer = await api.http.get("/machines")
            took = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert took < 5, f"answered after {took:.1f} s"
            error = answer.json()["error"]
            assert error["code"] == "DPM-E039" and error["remedy"]
            assert "127.0.0.1" not in error["message"]  # the driver's text (hosts, users) stays in the log
            assert int(answer.headers["Retry-After"]) >= 1
        private_pg.start()
        back = await eventually(
            lambda: api.http.get("/machines"), until=lambda r: r.status_code == 200, timeout=30, what="recovered"
        )
        assert back.json() == []


async def test_a_request_in_flight_when_the_api_stops_gets_its_normal_answer(private_pg, nats_server, auth) -> None:
    settings = api_on(private_pg, nats_server.url)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(api_bootstrap(settings), tracer_provider=TracerProvider(), stop=stop))
    url = f"http://127.0.0.1:{settings.api_port}"
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:

        async def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/readyz")).status_code == 200
            return False

        await eventually(ready, timeout=30, what="api ready")
        assert (await http.get("/machines")).status_code == 200
        # the lock holds the request in its authentication, before it takes its second connection
        # (for the read model): a stopping api must not close the pool under it
        with psycopg.connect(private_pg.url()) as locker:
            locker.execute("LOCK TABLE api.revoked_bootstrap_tokens IN ACCESS EXCLUSIVE MODE")
            in_flight = asyncio.create_task(http.get("/machines"))
            await eventually(lambda: _waiting_on_lock(private_pg), timeout=10, what="request waiting on the lock")
            stop.set()
            # the api is stopping now, with the request in hand: it accepts no new connection
            await eventually(lambda: _refused(url), timeout=10, what="new connections refused")
            assert not in_flight.done()
            locker.rollback()
        answer = await in_flight
        assert answer.status_code == 200, answer.text
        assert answer.json() == []
    await asyncio.wait_for(task, 30)


async def test_a_postgres_outage_gives_ipxe_a_script_that_asks_again_not_the_local_disk(
    private_pg, nats_server, tmp_path
) -> None:
    """iPXE retries no HTTP error: a 503 would boot the disk and lose the machine's pending work."""
    settings = PxeSettings(
        database_url=SecretStr(private_pg.url(user=role_of("pxe"))), database_admin_url=SecretStr(private_pg.url()),
        nats_url=nats_server.url, pxe_port=free_port(), relay_enabled=False, pxe_root=tmp_path / "boot",
        pxe_tftp_enabled=False, pxe_dhcp_enabled=False,
    )  # fmt: skip
    uuid = "6f1c3a52-0000-4000-8000-0000000000c1"
    async with running(pxe_bootstrap(settings)) as pxe:
        path = "/boot/52-54-00-c1-00-01.ipxe"
        normal = await pxe.http.get(path, params={"arch": "bios-x86", "uuid": uuid})
        assert normal.status_code == 200 and "sanboot" in normal.text  # unknown: its disk (and discovery)
        private_pg.stop()
        started = time.monotonic()
        later = await pxe.http.get(path, params={"arch": "bios-x86", "uuid": uuid})
        assert time.monotonic() - started < 5
        assert later.status_code == 200, later.text
        assert "sanboot" not in later.text and "sleep 5" in later.text
        assert f"chain --replace --autofree ./52:54:00:c1:00:01.ipxe?arch=bios-x86&uuid={uuid}" in later.text
        private_pg.start()
        back = await eventually(lambda: pxe.http.get(path), until=lambda r: "sanboot" in r.text, timeout=30,
                                what="pxe answers normally again")  # fmt: skip
        assert back.status_code == 200


async def _refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as fresh:
            await fresh.get("/healthz")
    except httpx.ConnectError:
        return True
    return False


async def _waiting_on_lock(cluster: PostgresCluster) -> bool:
    with psycopg.connect(cluster.url()) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
    return bool(row and row[0])
