"""An unreachable database, seen by a request: the checkout waits the request's short timeout (not
the pool's 30 s) and the answer is DPM-E039 with Retry-After; a statement's own failure stays a 500;
a checkout outside any request keeps the pool's own timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import errors
from psycopg_pool import PoolClosed, PoolTimeout

from dpm_runtime.http import Health, install_error_handler
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.unavailable import Pool, RequestCheckout, install_unavailable_handler, is_unavailable


def test_what_counts_as_unavailable() -> None:
    assert is_unavailable(PoolTimeout("couldn't get a connection after 3.00 sec"))
    assert is_unavailable(PoolClosed("the pool 'api' is already closed"))
    assert is_unavailable(psycopg.OperationalError("connection failed: refused"))  # no SQLSTATE: client side
    assert is_unavailable(errors.AdminShutdown("terminating connection due to administrator command"))
    assert not is_unavailable(errors.SerializationFailure("could not serialize access"))
    assert not is_unavailable(errors.UniqueViolation("duplicate key"))
    assert not is_unavailable(ValueError("not a database error"))


@pytest.fixture
async def nowhere() -> AsyncIterator[Pool]:
    """A pool aimed at a port nothing listens on: every checkout waits for a connection that never comes."""
    pool = Pool(f"postgresql://nobody@127.0.0.1:{free_port()}/none", open=False, min_size=1, timeout=30)
    await pool.open(wait=False)
    yield pool
    await pool.close()


def app_over(pool: Pool) -> FastAPI:
    app = FastAPI()
    app.state.health = Health("test")
    install_error_handler(app)
    install_unavailable_handler(app)
    app.add_middleware(RequestCheckout, timeout=0.5)

    @app.get("/rows")
    async def rows() -> dict[str, int]:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return {"rows": 1}

    @app.get("/conflict")
    async def conflict() -> None:
        raise errors.SerializationFailure("could not serialize access")

    return app


async def test_a_request_gets_a_fast_503_in_the_catalogue(nowhere: Pool) -> None:
    transport = httpx.ASGITransport(app=app_over(nowhere), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        started = time.monotonic()
        answer = await http.get("/rows")
        assert time.monotonic() - started < 3
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "2"
        error = answer.json()["error"]
        assert error["code"] == "DPM-E039" and "no connection within 0.5 s" in error["message"]
        assert "127.0.0.1" not in answer.text  # the driver's words stay in the log
        assert (await http.get("/conflict")).status_code == 500  # a statement's failure is not "unavailable"


async def test_outside_a_request_the_pools_own_timeout_applies(nowhere: Pool) -> None:
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        await nowhere.getconn(timeout=0.3)  # an explicit timeout is kept
    assert time.monotonic() - started < 2
    with pytest.raises(TimeoutError):  # no request context: the pool's 30 s, still waiting after 1 s
        async with asyncio.timeout(1.0):
            await nowhere.getconn()
