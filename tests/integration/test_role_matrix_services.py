"""Every HTTP route of the other services (pxe, imager, agent-gateway, scheduler, updater), generated
from each real service's route table once it serves: a route must refuse an anonymous caller
(401/403) unless it is in that service's explicit allowlist -- health, the generated API docs, and
the boot-network routes that answer anonymous clients by design. A new route is therefore refused
anonymous callers or named here; it cannot be left open by omission. Routes that check a token of
their own (the imager's per-transfer data plane) are listed too, and still must refuse anonymous.
The api has its own, role-by-role matrix (test_role_matrix)."""

from __future__ import annotations

import httpx
import pytest

from dpm_runtime.localstack.procs import free_port
from dpm_runtime.localstack.stack import SERVICES as STACK
from dpm_runtime.testing.services import running
from dpm_updater.bootstrap import bootstrap as updater_bootstrap
from dpm_updater.settings import UpdaterSettings

from .conftest import TOKEN, common
from .test_role_matrix import concrete, status, table

pytestmark = pytest.mark.integration

EVERY_SERVICE = {
    ("GET", "/healthz"): "liveness",
    ("GET", "/readyz"): "readiness",
    ("GET", "/statusz"): "counters only, no error text (test_auth_security)",
    ("GET", "/openapi.json"): "the generated API description: routes, no data",
    ("GET", "/docs"): "API docs page",
    ("GET", "/docs/oauth2-redirect"): "API docs page",
    ("GET", "/redoc"): "API docs page",
}
# Boot-network routes: anonymous clients (firmware, iPXE, a new agent) get these by design.
OPEN = {
    "pxe": {
        ("GET", "/boot/media.ipxe"): "the script embedded in boot media",
        ("GET", "/boot/{mac}.ipxe"): "what a booting MAC runs; a deploy token only for a waiting execution",
        ("GET", "/files/{path}"): "boot files from the root, no traversal (test_boot_security)",
    },
    "gateway": {
        ("POST", "/v1/enrol"): "the enrolment token is in the body (test_enrolment)",
        ("WEBSOCKET", "/v1/agent"): "the agent token is in the handshake (test_agent_identity)",
    },
}
# Routes that check a token of their own: listed, and still refusing an anonymous caller below.
OWN_TOKEN = {
    "imager": {
        (method, f"/v1/transfers/{{transfer_id}}{tail}")
        for method, tail in (
            ("POST", "/start"),
            ("POST", "/missing"),
            ("PUT", "/chunks/{chunk}"),
            ("POST", "/chunks"),
            ("POST", "/commit"),
            ("POST", "/abort"),
            ("POST", "/renew"),
            ("GET", "/manifest"),
            ("GET", "/chunks/{chunk}"),
            ("POST", "/chunks/fetch"),
            ("POST", "/verify"),
        )
    },
    "updater": {("HEAD", "/v1/uploads/{upload_id}"), ("PATCH", "/v1/uploads/{upload_id}")},  # upload tokens
}
# Bodies valid enough to reach the token check (a body refused first would prove nothing).
BODIES = {
    "/v1/transfers/{transfer_id}/start": {"planned_bytes": 0},
    "/v1/transfers/{transfer_id}/missing": {"ids": []},
    "/v1/transfers/{transfer_id}/chunks/fetch": {"ids": []},
}


@pytest.fixture
def updater_service(database, nats_server, tmp_path):
    def make(**overrides):
        defaults = {"updater_port": free_port(), "updater_root": tmp_path / "packages"}
        return updater_bootstrap(UpdaterSettings(**common(database, nats_server), **{**defaults, **overrides}))

    return make


SERVICES = ("pxe", "imager", "gateway", "scheduler", "updater")
# Every service but the api, by the names `dpm up` starts them under: a new service joins the matrix.
STACK_NAMES = {"gateway": "agent-gateway"}


@pytest.mark.parametrize("name", SERVICES)
async def test_every_route_refuses_anonymous_callers_unless_allowlisted(
    name: str, pxe_service, imager_service, gateway_service, scheduler_service, updater_service
) -> None:
    makers = {
        "pxe": pxe_service,
        "imager": imager_service,
        "gateway": gateway_service,
        "scheduler": scheduler_service,
        "updater": updater_service,
    }
    service = makers[name]()
    allowed = EVERY_SERVICE.keys() | OPEN.get(name, {}).keys()
    own_token = OWN_TOKEN.get(name, set())
    api_token = {"Authorization": f"Bearer {TOKEN}"}  # an admin's token for the api is nothing here
    async with running(service) as svc, httpx.AsyncClient(base_url=svc.url, timeout=30) as anonymous:
        routes = list(table(service.app))
        seen = {(m, p) for m, p, _ in routes}
        unlisted_open = allowed - seen
        assert not unlisted_open, f"allowlisted routes {name} no longer has: {unlisted_open}"
        assert own_token <= seen, f"token routes {name} no longer has: {own_token - seen}"
        wrong = []
        for method, template, dependant in routes:
            if (method, template) in allowed:
                continue
            if method in ("WEBSOCKET", "ANY"):  # cannot be probed as HTTP: it must be allowlisted
                wrong.append((method, template, "not allowlisted"))
                continue
            path = concrete(template, dependant)
            for who, headers in (("anonymous", {}), ("api token", api_token)):
                got = await status(anonymous, method, path, headers, BODIES.get(template, {}))
                if got not in (401, 403):
                    wrong.append((method, template, who, got))
        assert not wrong, f"{name}: routes answering an anonymous caller: {wrong}"
        assert ("GET", "/healthz") in seen  # the table really was walked, the runtime's routes included


def test_the_api_has_no_route_its_role_matrix_cannot_see(api_service) -> None:
    """test_role_matrix probes HTTP methods only: a WebSocket or mounted route would pass it unseen."""
    assert {(m, p) for m, p, _ in table(api_service().app) if m in ("WEBSOCKET", "ANY")} == set()


def test_the_allowlists_name_only_known_services() -> None:
    assert set(OPEN) | set(OWN_TOKEN) <= set(SERVICES)


def test_the_matrix_covers_every_service_dpm_up_starts() -> None:
    started = {name for name, _module in STACK} - {"api"}  # the api has its role-by-role matrix
    assert {STACK_NAMES.get(name, name) for name in SERVICES} == started
