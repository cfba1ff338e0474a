"""An API fuzz run: schemathesis generates requests from the api's own OpenAPI document and sends them
to the real api (per-test PostgreSQL and nats-server) as an admin and as a viewer. No input may draw a
5xx, no answer may break the schema the document declares for it. Bounded in examples and in time,
derandomized so CI sees the same inputs every run; every failure is collected (one per operation,
kind and status) so a run reports them all, not only the first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup

from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Server-sent events never end: a fuzzed request would only wait for its timeout.
EXCLUDED = frozenset({"GET /executions/stream"})
BUDGET = 150.0  # seconds for the whole run; the examples below fit well inside it on 2 cores
CALL_TIMEOUT = 15.0  # an answer slower than this is a finding too (a wedged projection waits forever)


class Pass(NamedTuple):
    """One sweep over the operations. ``pinned``: path parameters name things that exist (random ids
    mostly meet a 404). ``nul``: a NUL joins every generated string (the control character that
    PostgreSQL refuses, and hypothesis meets only by chance in a dozen examples)."""

    role: str
    mode: GenerationMode
    examples: int
    pinned: bool = False
    nul: bool = False


PASSES = (
    Pass("admin", GenerationMode.POSITIVE, 12),
    Pass("admin", GenerationMode.NEGATIVE, 6),
    Pass("viewer", GenerationMode.POSITIVE, 4),
    Pass("admin", GenerationMode.POSITIVE, 3, nul=True),
    Pass("admin", GenerationMode.POSITIVE, 8, pinned=True),
    Pass("admin", GenerationMode.POSITIVE, 3, pinned=True, nul=True),
)
CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class Finding:
    """One thing that broke: who sent what to which operation, and what came back."""

    role: str
    operation: str
    kind: str
    status: int | None
    request: str
    response: str
    seen: int = 1

    def __str__(self) -> str:
        return (
            f"[{self.role}] {self.operation}: {self.kind} (status {self.status}, seen {self.seen}x)\n"
            f"    request:  {self.request}\n    response: {self.response}"
        )


@dataclass
class Run:
    """What a fuzz run found, keyed so one bug met a hundred times is one line."""

    base_url: str
    tokens: dict[str, str]
    stop_at: float
    known: dict[str, str]
    findings: dict[tuple[str, str, str, int | None], Finding] = field(default_factory=dict)
    sent: int = 0
    not_reached: list[str] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        key = (finding.role, finding.operation, finding.kind, finding.status)
        if key in self.findings:
            self.findings[key].seen += 1
        else:
            self.findings[key] = finding


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _json(value: Any) -> str:
    """JSON text (control characters escaped, so a NUL shows as \\u0000 and never reaches the terminal)."""
    return json.dumps(value, default=repr, ensure_ascii=False)


def _request_text(case: schemathesis.Case) -> str:
    """The request without its bearer token: method, path, query and body as generated."""
    parts = [f"{case.method.upper()} {_json(case.formatted_path)[1:-1]}"]
    if case.query:
        parts.append(f"query={_json(case.query)}")
    if not isinstance(case.body, NotSet):
        parts.append("body=" + _short(_json(case.body), 800))
    return " ".join(parts)


def _with_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value[: len(value) // 2] + "\x00" + value[len(value) // 2 :]
    if isinstance(value, list):
        return [_with_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _with_nul(v) for k, v in value.items()}
    return value


def _check(run: Run, role: str, case: schemathesis.Case, nul: bool) -> None:
    """Send one case, record what breaks; never raises, so hypothesis moves on (no shrinking)."""
    if nul:
        case.path_parameters, case.query = _with_nul(case.path_parameters), _with_nul(case.query)
        if not isinstance(case.body, NotSet | bytes):
            case.body = _with_nul(case.body)
    headers = {"Authorization": f"Bearer {run.tokens[role]}"}
    run.sent += 1
    try:
        response = case.call(base_url=run.base_url, headers=headers, timeout=CALL_TIMEOUT)
    except requests.RequestException as exc:
        run.add(Finding(role, case.operation.label, type(exc).__name__, None, _request_text(case), str(exc)))
        return
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        for failure in group.exceptions:
            body = _short(response.text or "")
            run.add(Finding(role, case.operation.label, failure.title, response.status_code, _request_text(case), body))


def _fuzz_operation(run: Run, sweep: Pass, strategy: Any) -> None:
    @settings(
        max_examples=sweep.examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(case=strategy)
    def each(case: schemathesis.Case) -> None:
        if time.monotonic() < run.stop_at:
            _check(run, sweep.role, case, sweep.nul)

    # Unsatisfiable: schemathesis could not build a (negative) case for it; nothing was sent, nothing to judge
    with contextlib.suppress(Unsatisfiable):
        each()


def _operations(schema: Any) -> Iterator[Any]:
    for result in schema.get_all_operations():
        operation = result.ok()  # an Err here (an unusable operation in the document) raises: a finding too
        if operation.label not in EXCLUDED:
            yield operation


def _pinned(operation: Any, known: dict[str, str]) -> dict[str, str] | None:
    """Path parameters naming things set up before the run, or None if the operation has one we lack."""
    names = [p.name for p in operation.path_parameters]
    if not names:
        return None
    prefix = operation.path.split("{")[0]
    values = {n: known.get(f"{prefix}{n}", known.get(n)) for n in names}
    return None if None in values.values() else {n: v for n, v in values.items() if v is not None}


def _destructive_last(operation: Any) -> bool:
    """Sort key: deleting or renaming a pinned thing would turn the operations after it into 404s."""
    return operation.method.lower() == "delete" or operation.path.endswith(("/rename", "/revoke"))


def fuzz(run: Run, document: dict[str, Any]) -> Run:
    """Every pass over every operation, in document order, until the time budget runs out."""
    schema = schemathesis.openapi.from_dict(document)
    operations = list(_operations(schema))
    for sweep in PASSES:
        for operation in sorted(operations, key=_destructive_last) if sweep.pinned else operations:
            path = _pinned(operation, run.known) if sweep.pinned else {}
            if path is None:
                continue
            if time.monotonic() >= run.stop_at:
                run.not_reached.append(f"{sweep} {operation.label}")
                continue
            _fuzz_operation(run, sweep, operation.as_strategy(generation_mode=sweep.mode, path_parameters=path or None))
    return run


async def _token(http: httpx.AsyncClient, username: str, role: str) -> tuple[str, str]:
    """A user of ``role`` and an API token of its own (a fuzzed logout cannot end a token); (token, id)."""
    password = f"{username}-secret-1"
    r = await http.post("/users", json={"username": username, "password": password, "role": role})
    assert r.status_code == 201, r.text
    r = await http.post("/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    session = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await http.post("/auth/tokens", json={"name": "fuzz"}, headers=session)
    assert r.status_code == 201, r.text
    return str(r.json()["token"]), str(r.json()["token_id"])


async def _things(http: httpx.AsyncClient) -> dict[str, str]:
    """A group, a machine in it, a scenario, a schedule and a spare user with a token, for the pinned
    pass (never the fuzzing users themselves: a run must not lock itself out)."""
    mac = "52:54:00:00:0f:01"
    assert (await http.put("/groups/fuzz-g", json={"subnet": "127.0.0.0/8"})).is_success
    r = await http.post("/machines", json={"name": "fuzz-m", "macs": [mac], "group": "fuzz-g"})
    assert r.status_code == 201, r.text
    machine_id = str(r.json()["machine_id"])
    spec = {"kind": "simulated", "params": {"seconds": "1"}}
    r = await http.post("/scenarios", json={"name": "fuzz-s", "spec": spec})
    assert r.is_success, r.text
    body = {"name": "fuzz-sch", "action": "run", "scenario": "fuzz-s", "machines": ["fuzz-m"], "cron": "0 1 * * *"}
    r = await http.post("/schedules", json=body)
    assert r.is_success, r.text
    _, token_id = await _token(http, "fuzz-spare", "viewer")
    return {
        "machine_id": machine_id,
        "machine": machine_id,
        "mac": mac,
        "/groups/name": "fuzz-g",
        "/admin/projections/name": "machines",
        "ref": "fuzz-s",
        "schedule_id": str(r.json()["schedule_id"]),
        "username": "fuzz-spare",
        "token_id": token_id,
    }


async def _projections_caught_up(http: httpx.AsyncClient, pool: Any, admin: str) -> list[str]:
    """The api's read models reach the log's head once the run stops and quarantined nothing: an input
    that a read model cannot apply should have been refused at the edge."""
    async with pool.connection() as conn:
        head = (await (await conn.execute("SELECT coalesce(max(position), 0) FROM events")).fetchone())[0]

    async def behind() -> list[str]:
        r = await http.get("/admin/projections", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
        return [
            f"{p['name']} at {p['position']} of {head}, {p.get('quarantined', 0)} quarantined"
            for p in r.json()
            if p["position"] < head or p.get("quarantined")
        ]

    with contextlib.suppress(AssertionError):
        await eventually(behind, until=lambda b: not b, timeout=20, interval=0.2, what="projections at the head")
    return await behind()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # schemathesis' own strategies
async def test_fuzzed_requests_never_draw_a_5xx_or_an_answer_off_the_schema(
    api_service, pxe_service, imager_service, auth
) -> None:
    # the real pxe and imager behind the api's boot and image routes; no scheduler runs, so power-on sends no WOL
    pxe, imager = pxe_service(), imager_service()
    api = api_service(api_pxe_url=f"http://127.0.0.1:{pxe.port}", api_imager_url=f"http://127.0.0.1:{imager.port}")
    async with running(api, headers=auth) as a, running(pxe), running(imager):
        tokens = {"admin": (await _token(a.http, "fuzz-admin", "admin"))[0]}
        tokens["viewer"] = (await _token(a.http, "fuzz-viewer", "viewer"))[0]
        known = await _things(a.http)
        document = (await a.http.get("/openapi.json")).json()
        run = Run(base_url=a.url, tokens=tokens, stop_at=time.monotonic() + BUDGET, known=known)
        await asyncio.to_thread(fuzz, run, document)
        for role, token in tokens.items():  # a run that locked itself out would have proved nothing
            r = await a.http.get("/auth/whoami", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, (role, r.text)
        wedged = await _projections_caught_up(a.http, a.runtime.pool, tokens["admin"])
    if run.not_reached:
        warnings.warn(f"fuzz budget spent before {len(run.not_reached)} passes: {run.not_reached}", stacklevel=1)
    assert run.sent > 100, run.sent
    if run.findings or wedged:
        found = "\n".join(str(f) for f in run.findings.values())
        pytest.fail(f"{len(run.findings)} findings in {run.sent} requests:\n{found}\nprojections: {wedged}", False)
