"""The deploy client and the agent against a real local HTTP server that answers 503 with Retry-After
(the api while PostgreSQL is away): a step report or an image call is sent again after the server's
Retry-After, within the call's budget and the step's timeout; a refusal (4xx) is never repeated."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dpm_agent.client import enrol, retry_after
from dpm_agent.config import AgentConfig
from dpm_agent.deploy.run import Api, BootParams, run, started
from dpm_agent.deploy.transport import HttpClient
from dpm_schemas.agent_protocol import Facts
from dpm_schemas.errors import DpmError, E

UNAVAILABLE = json.dumps(
    {"error": E.DATABASE_UNAVAILABLE(service="api", reason="no connection within 3 s", retry_after=2).to_dict()}
).encode()


class Scripted(ThreadingHTTPServer):
    """Answers each request with the next (status, headers, body) of ``script``, the last one for
    every request after; records what it was sent."""

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.seen: list[tuple[str, str, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Scripted
    protocol_version = "HTTP/1.1"  # keep-alive, as the api's uvicorn

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))
        status, headers, data = self.server.script[min(len(self.server.seen), len(self.server.script)) - 1]
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[Scripted] = []

    def start(*script: tuple[int, dict[str, str], bytes]) -> Scripted:
        server = Scripted(list(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client(url: str, slept: list[float] | None = None, **kw: object) -> HttpClient:
    sleep = slept.append if slept is not None else time.sleep
    return HttpClient(url, "tok", timeout=5, down=lambda exc: exc, sleep=sleep, **kw)  # type: ignore[arg-type]


def test_a_503_is_retried_after_its_retry_after_until_the_answer(serve) -> None:
    server = serve((503, {"Retry-After": "2"}, UNAVAILABLE), (503, {"Retry-After": "2"}, UNAVAILABLE), (202, {}, b"{}"))
    slept: list[float] = []
    assert client(server.url, slept).json("POST", "/steps", {"status": "progress"}) == {}
    assert len(server.seen) == 3
    assert [b for _, _, b in server.seen] == [b'{"status": "progress"}'] * 3  # the same report each time
    assert len(slept) == 2 and all(2.0 <= s <= 2.5 for s in slept)  # the server's word, jittered upwards


def test_a_5xx_without_retry_after_is_retried_with_backoff(serve) -> None:
    server = serve((502, {}, b"bad gateway"), (500, {}, b"oops"), (200, {}, b'{"ok": true}'))
    slept: list[float] = []
    assert client(server.url, slept).json("GET", "/step") == {"ok": True}
    assert len(slept) == 2 and slept[0] < slept[1] <= 10


def test_past_its_budget_the_call_raises_the_servers_own_error(serve) -> None:
    server = serve((503, {}, UNAVAILABLE))
    started = time.monotonic()
    with pytest.raises(DpmError) as raised:
        client(server.url, retry_for=1.5).call("POST", "/steps", b"{}")
    assert raised.value.code == "DPM-E039"
    assert 2 <= len(server.seen) <= 4 and time.monotonic() - started < 3


def test_a_retry_after_beyond_the_budget_is_not_waited_for(serve) -> None:
    server = serve((503, {"Retry-After": "60"}, UNAVAILABLE))
    slept: list[float] = []
    with pytest.raises(DpmError):
        client(server.url, slept, retry_for=10).call("POST", "/steps", b"{}")
    assert slept == [] and len(server.seen) == 1


def test_a_refusal_is_final_at_once(serve) -> None:
    refusal = json.dumps({"error": E.UNAUTHENTICATED().to_dict()}).encode()
    server = serve((401, {}, refusal))
    slept: list[float] = []
    with pytest.raises(DpmError) as raised:
        client(server.url, slept).call("POST", "/steps", b"{}")
    assert raised.value.code == E.UNAUTHENTICATED.code and slept == [] and len(server.seen) == 1


def test_a_dropped_connection_is_retried_then_reported_down(serve) -> None:
    server = serve((200, {}, b"{}"))
    url = server.url
    server.shutdown()
    server.server_close()  # nothing listens there now: every attempt is refused
    with pytest.raises(ConnectionRefusedError):
        client(url, retry_for=1.0).call("GET", "/step")


def test_the_deploy_api_retries_within_the_steps_timeout(serve) -> None:
    step = {"execution_id": "e", "machine_id": "m", "step": 0, "kind": "disk-check", "params": {},
            "timeout_seconds": 30}  # fmt: skip
    server = serve((503, {"Retry-After": "1"}, UNAVAILABLE), (202, {}, b"{}"))
    api = Api(BootParams("e", server.url, "tok"))
    api.report("progress", 10)  # the 503 first, then accepted: the report is not lost
    assert [p for _, p, _ in server.seen] == ["/deploy/v1/steps", "/deploy/v1/steps"]
    api.within(step["timeout_seconds"])  # what run() does with GET /step's answer
    assert api._http.retry_for == 30


def test_the_steps_end_action_is_left_for_init_even_when_the_step_fails(serve, tmp_path: Path) -> None:
    step = {"execution_id": "e", "machine_id": "m", "step": 0, "kind": "firmware", "params": {},
            "timeout_seconds": 30, "end": "stay"}  # fmt: skip
    server = serve((200, {}, json.dumps(step).encode()), (202, {}, b"{}"), (202, {}, b"{}"))
    end = tmp_path / "dpm-end"
    assert run(BootParams("e", server.url, "tok"), end_file=end) == 1  # no such step here: reported failed
    assert end.read_text() == "stay\n"  # /init keeps a debug shell instead of powering off
    assert [p for _, p, _ in server.seen] == ["/deploy/v1/step?execution_id=e", "/deploy/v1/steps", "/deploy/v1/steps"]


def test_the_agent_waits_the_gateways_retry_after_on_a_503_enrolment(serve, tmp_path: Path) -> None:
    server = serve((503, {"Retry-After": "7"}, UNAVAILABLE))
    config = AgentConfig(server=server.url, enrolment_token="enrol-me-0123456789", state_dir=tmp_path)
    with pytest.raises(urllib.error.HTTPError) as raised:
        enrol(config, _facts())
    assert isinstance(raised.value, OSError)  # Agent.run retries it as a lost connection
    assert retry_after(raised.value) == 7.0
    assert retry_after(ConnectionRefusedError()) == 0.0


def _facts() -> Facts:
    return Facts(hostname="lab-1", macs=("52:54:00:00:00:01",), ips=("127.0.0.1",))


def test_the_first_report_says_how_the_deploy_environment_came_up(tmp_path: Path, monkeypatch) -> None:
    uptime, build = tmp_path / "uptime", tmp_path / "dpm-deploy.json"
    uptime.write_text("12.34 20.00\n")
    build.write_text(json.dumps({"kernel": "6.1.0-57-amd64", "unpacked_bytes": 80 << 20}))
    monkeypatch.setenv("DPM_DRIVERS", "virtio_pci e1000e nvme")
    assert started("restore", uptime, build) == (
        "restore started; deploy environment up in 12.3 s; kernel 6.1.0-57-amd64, initramfs 80 MiB unpacked; "
        "drivers virtio_pci e1000e nvme"
    )
    monkeypatch.delenv("DPM_DRIVERS")
    assert started("backup", tmp_path / "none", tmp_path / "none") == "backup started"  # outside a deploy environment
