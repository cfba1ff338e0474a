"""Control characters in a URL, and NUL in a JSON body, are refused at the edge with DPM-E005 before a
route can hand them to SQL (PostgreSQL refuses NUL in text: the request used to answer 500)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from dpm_runtime.http import BodyLimit, install_error_handler, max_body
from dpm_runtime.textguard import TextGuard, bad_escape


def app() -> FastAPI:
    api = FastAPI()
    seen: list[object] = []
    api.state.seen = seen

    @api.get("/things/{name}")
    async def thing(name: str, q: str = "") -> dict[str, str]:
        seen.append((name, q))
        return {"name": name, "q": q}

    @api.post("/things")
    async def post(request: Request) -> dict[str, object]:
        seen.append(await request.json())
        return {"ok": True}

    @api.post("/big")
    @max_body(100_000)
    async def big(request: Request) -> dict[str, int]:
        return {"got": len(await request.body())}

    @api.post("/parsed")
    @max_body(200_000)
    async def parsed(request: Request) -> dict[str, int]:
        return {"got": len(await request.json())}  # a route that parses for itself: RecursionError

    @api.get("/live")
    async def live(request: Request) -> dict[str, bool]:
        await request.body()
        return {"disconnected": await request.is_disconnected()}  # an SSE stream asks this all along

    install_error_handler(api)
    api.add_middleware(TextGuard)
    api.add_middleware(BodyLimit, limit=1000)
    return api


@pytest.mark.parametrize(
    "url",
    ["/things/a%00b", "/things/esc%1b", "/things/x?q=a%00", "/things/x?q%07=1", "/things/del%7f", "/things/x?q=%C2%85"],
)
async def test_control_characters_in_the_url_get_422_with_a_code(url: str) -> None:
    served = app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        r = await http.get(url)
        assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E005", r.text
        assert served.state.seen == []
        assert (await http.get("/things/Größe?q=日本")).json() == {"name": "Größe", "q": "日本"}


async def test_an_escaped_nul_in_a_json_body_is_refused_and_others_pass() -> None:
    served = app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        r = await http.post("/things", content=b'{"name": "x\\u0000y"}', headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E005", r.text
        assert r.json()["error"]["message"].startswith("body.name:"), r.text
        nested = await http.post("/things", content=b'{"a": [1, {"b": "\\ud800"}]}')
        assert nested.json()["error"]["message"].startswith("body.a.1.b:"), nested.text
        assert served.state.seen == []
        literal = await http.post("/things", json={"name": "a \\u0000 written out", "n": "line\nbreak"})
        assert literal.json() == {"ok": True}, literal.text  # an escaped backslash, then text: harmless
        assert served.state.seen == [{"name": "a \\u0000 written out", "n": "line\nbreak"}]


async def chunks(n: int, size: int = 1000) -> AsyncIterator[bytes]:
    yield b'{"blob": "'
    for _ in range(n):
        yield b"x" * size
    yield b'"}'


async def test_the_route_limit_still_applies_to_json_read_through_the_guard() -> None:
    served = app()
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        assert (await http.post("/big", content=chunks(50), headers=headers)).json() == {"got": 50_012}
        over = await http.post("/things", content=chunks(5), headers=headers)
        assert over.status_code == 413 and over.json()["error"]["code"] == "DPM-E409", over.text


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b"\\u0000", "NUL"),
        (b"\\\\u0000", None),  # an escaped backslash, then text
        (b"\\\\\\u0000", "NUL"),
        (b'"a\\u00001"', "NUL"),
        (b"u0000", None),
        (b'"\\ud83d\\ude00"', None),  # a pair: an emoji
        (b'"\\ud800"', "surrogate"),
        (b'"\\udc00"', "surrogate"),
        (b'"\\ud800x\\udc00"', "surrogate"),
        (b'"\\ud800\\n"', "surrogate"),
        (b'"\\\\ud800"', None),
        (b'{"a": "line\\nbreak \\"q\\""}', None),
    ],
)
def test_bad_escapes_are_found_and_escaped_backslashes_respected(body: bytes, found: str | None) -> None:
    answer = bad_escape(body)
    assert (answer is None) if found is None else (answer is not None and found in answer), (body, answer)


@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "text/json; charset=utf-8", None])
async def test_every_body_parsed_as_json_is_checked(content_type: str | None) -> None:
    served = app()
    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        for body in (b'{"name": "x\\u0000y"}', b'{"name": "\\ud800"}'):
            r = await http.post("/things", content=body, headers=headers)
            assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E005", r.text
        assert served.state.seen == []


async def test_a_body_nested_deeper_than_the_parser_goes_is_a_422() -> None:
    served = app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        deep = b"[" * 50_000 + b"]" * 50_000
        r = await http.post("/parsed", content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "DPM-E100", r.text


async def test_after_the_body_the_client_is_still_there() -> None:
    """Once the body is handed over, receive() is the client's again: a stream must not think it left."""
    served = app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as http:
        assert (await http.get("/live")).json() == {"disconnected": False}
