"""Fixtures that build real services (in-process) against the per-test PostgreSQL and nats-server."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from dpm_agent_gateway.bootstrap import bootstrap as gateway_bootstrap
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_api.settings import ApiSettings
from dpm_imager.bootstrap import bootstrap as imager_bootstrap
from dpm_imager.settings import ImagerSettings
from dpm_pxe.bootstrap import bootstrap as pxe_bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.localstack.procs import free_port
from dpm_scheduler.bootstrap import bootstrap as scheduler_bootstrap
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas.events import ExecutionCompleted, ExecutionFailed, ExecutionStarted

TOKEN = "test-token-0123456789"


def common(database, nats_server) -> dict:
    return {
        "database_url": SecretStr(database.service_url),
        "database_admin_url": SecretStr(database.admin_url),
        "nats_url": nats_server.url,
    }


@pytest.fixture
def api_service(database, nats_server):
    def make(**overrides):
        settings = ApiSettings(
            **common(database, nats_server), api_port=free_port(), api_token=SecretStr(TOKEN), **overrides
        )
        return api_bootstrap(settings)

    return make


@pytest.fixture
def scheduler_service(database, nats_server):
    def make(**overrides):
        settings = SchedulerSettings(**common(database, nats_server), scheduler_port=free_port(), **overrides)
        return scheduler_bootstrap(settings)

    return make


ENROLMENT = "enrol-me-0123456789"


@pytest.fixture
def gateway_service(database, nats_server):
    def make(**overrides):
        settings = AgentGatewaySettings(
            **common(database, nats_server),
            agent_gateway_port=free_port(),
            relay_enabled=False,
            agent_gateway_enrolment_token=SecretStr(ENROLMENT),
            **overrides,
        )
        return gateway_bootstrap(settings)

    return make


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def pxe_service(database, nats_server, tmp_path):
    def make(**overrides):
        defaults = {
            "pxe_port": free_port(),
            "relay_enabled": False,
            "pxe_root": tmp_path / "boot",
            "pxe_tftp_enabled": False,
            "pxe_dhcp_enabled": False,
        }
        return pxe_bootstrap(PxeSettings(**common(database, nats_server), **{**defaults, **overrides}))

    return make


@pytest.fixture
def imager_service(database, nats_server, tmp_path):
    def make(**overrides):
        defaults = {
            "imager_port": free_port(),
            "relay_enabled": False,
            "imager_root": tmp_path / "store",
            "imager_reserve_bytes": 0,
            "imager_gc_grace": 0,
        }
        return imager_bootstrap(ImagerSettings(**common(database, nats_server), **{**defaults, **overrides}))

    return make


def peak_active(events) -> int:
    """Replaying the log: the most executions that were started and not yet ended at one time."""
    active = peak = 0
    for e in events:
        if isinstance(e, ExecutionStarted):
            active += 1
            peak = max(peak, active)
        elif isinstance(e, ExecutionCompleted | ExecutionFailed):
            active -= 1
    return peak
