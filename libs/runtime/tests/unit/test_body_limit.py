"""The request-body limit every service shares: counted on the bytes that really arrive, so a chunked
body cannot slip past it; a route may allow more; the answer is 413 with a catalogued code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, FastAPI, Request

from dpm_runtime.http import BodyLimit, install_error_handler, max_body

LIMIT = 1000


def app() -> FastAPI:
    api = FastAPI()
    seen: list[int] = []
    api.state.seen = seen

    @api.post("/small")
    async def small(request: Request) -> dict[str, int]:
        seen.append(len(await request.body()))
        return {"got": seen[-1]}

    @api.post("/big")
    @max_body(10 * LIMIT)
    async def big(request: Request) -> dict[str, int]:
        return {"got": len(await request.body())}

    included = APIRouter(prefix="/in")

    @included.post("/big")
    @max_body(10 * LIMIT)
    async def included_big(request: Request) -> dict[str, int]:
        return {"got": len(await request.body())}

    api.include_router(included)

    install_error_handler(api)
    api.add_middleware(BodyLimit, limit=LIMIT)
    return api


async def chunks(n: int, size: int = 100) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


async def test_chunked_and_declared_bodies_over_the_limit_get_413_with_a_code() -> None:
    served = app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        assert (await http.post("/small", content=b"x" * LIMIT)).json() == {"got": LIMIT}
        declared = await http.post("/small", content=b"x" * (LIMIT + 1))
        chunked = await http.post("/small", content=chunks(50))  # no Content-Length: Transfer-Encoding chunked
        for r in (declared, chunked):
            assert r.status_code == 413 and r.json()["error"]["code"] == "DPM-E409", r.text
            assert r.json()["error"]["details"]["limit"] == LIMIT
        assert served.state.seen == [LIMIT]  # the handler never saw an oversized body
        assert (await http.post("/big", content=chunks(50))).json() == {"got": 5000}  # the route allows more
        assert (await http.post("/big", content=chunks(101))).status_code == 413
        assert (await http.post("/in/big", content=chunks(50))).json() == {"got": 5000}  # through include_router
        assert (await http.post("/in/big", content=b"x" * 10_001)).status_code == 413
