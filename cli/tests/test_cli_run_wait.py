"""`dpm run --wait` rides out a lost API connection: the stream dropped mid-body, a 503 while the
api restarts -- it connects again with backoff, says so on stderr, shows nothing twice of what the
new connection repeats, and still ends at the run's end; an outage longer than its reconnect
timeout ends it with exit code 3 (unreachable). A small SSE server stands in for the api."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dpm_cli.client import CliError, reconnecting_events
from dpm_cli.scenarios import follow
from dpm_runtime.localstack.procs import free_port


def _event(state: str) -> bytes:
    row = {"execution_id": "e1", "machine": "lab0000", "state": state, "percent": None, "code": None}
    return f"event: execution\ndata: {json.dumps(row)}\n\n".encode()


class _Api(BaseHTTPRequestHandler):
    connections: list[str] = []

    def do_GET(self) -> None:
        self.connections.append(self.path)
        n = len(self.connections)
        if n == 2:  # the api restarting: unavailable for a moment
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if n == 1:  # chunked, then the connection drops without the last chunk
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for body in (_event("queued"), _event("running")):
                self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(_event("running") + _event("completed") + b"event: end\ndata: {}\n\n")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Api)
    _Api.connections = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DPM_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DPM_API_TOKEN", "t")
    try:
        yield _Api.connections
    finally:
        server.shutdown()
        server.server_close()


def test_a_dropped_stream_and_a_503_are_reconnected_and_nothing_is_shown_twice(
    api: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    follow("r1", 1, reconnect_for=30)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["[0/1] lab0000: queued", "[0/1] lab0000: running", "[1/1] lab0000: completed"]
    notes = err.splitlines()
    assert len(notes) == 2 and all("reconnecting in" in line for line in notes), err
    assert "(attempt 1)" in notes[0] and "HTTP 503" in notes[1] and "(attempt 2)" in notes[1]
    assert len(api) == 3 and all(path.startswith("/executions/stream?run_id=r1") for path in api)


def test_an_outage_longer_than_the_reconnect_timeout_ends_with_exit_code_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPM_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    notes: list[str] = []
    with pytest.raises(CliError) as lost:
        list(reconnecting_events("/executions/stream", {}, reconnect_for=1.0, say=notes.append, sleep=lambda _s: None))
    assert lost.value.exit_code == 3 and "DPM-E022" in str(lost.value) and "no connection for 1 s" in str(lost.value)
    assert notes and "reconnecting in 0.5 s (attempt 1)" in notes[0]
