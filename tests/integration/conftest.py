"""Fixtures that build real services (in-process) against the per-test PostgreSQL and nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from dpm_agent_gateway.bootstrap import bootstrap as gateway_bootstrap
from dpm_agent_gateway.settings import AgentGatewaySettings
from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_api.settings import ApiSettings
from dpm_imager.bootstrap import bootstrap as imager_bootstrap
from dpm_imager.settings import ImagerSettings
from dpm_lab.sim import LabConfig
from dpm_pxe.bootstrap import bootstrap as pxe_bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import eventually
from dpm_scheduler.bootstrap import bootstrap as scheduler_bootstrap
from dpm_scheduler.settings import SchedulerSettings
from dpm_schemas.events import ExecutionCompleted, ExecutionFailed, ExecutionStarted
from dpm_updater.bootstrap import bootstrap as updater_bootstrap
from dpm_updater.settings import UpdaterSettings

TOKEN = "test-token-0123456789"
PXE_TOKEN = "pxe-service-0123456789"  # what the api presents to pxe for explain, recent boots, leases


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
            **common(database, nats_server),
            api_port=free_port(),
            api_token=SecretStr(TOKEN),
            **{"api_pxe_token": SecretStr(PXE_TOKEN), **overrides},
        )
        return api_bootstrap(settings)

    return make


@pytest.fixture
def scheduler_service(database, nats_server):
    def make(**overrides):
        settings = SchedulerSettings(**common(database, nats_server), scheduler_port=free_port(), **overrides)
        return scheduler_bootstrap(settings)

    return make


@pytest.fixture
def updater_service(database, nats_server, tmp_path):
    def make(**overrides):
        defaults = {"updater_port": free_port(), "relay_enabled": False, "updater_root": tmp_path / "packages"}
        return updater_bootstrap(UpdaterSettings(**common(database, nats_server), **{**defaults, **overrides}))

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


def deploy_files(root: Path) -> Path:
    """Stand-ins for the deploy kernel and initramfs (`make deploy-os` builds the real ones), unless there."""
    (root / "deploy").mkdir(parents=True, exist_ok=True)
    for name, fill in (("vmlinuz", b"k"), ("initrd.img", b"i")):
        if not (root / "deploy" / name).exists():
            (root / "deploy" / name).write_bytes(fill * 4096)
    return root


@pytest.fixture
def pxe_service(database, nats_server, tmp_path):
    """pxe with stand-in deploy files in its root; ``deploy_env=False``: a root without them."""

    def make(*, deploy_env: bool = True, **overrides):
        defaults = {
            "pxe_port": free_port(),
            "relay_enabled": False,
            "pxe_root": tmp_path / "boot",
            "pxe_tftp_enabled": False,
            "pxe_dhcp_enabled": False,
            "pxe_service_token": SecretStr(PXE_TOKEN),
        }
        settings = PxeSettings(**common(database, nats_server), **{**defaults, **overrides})
        if deploy_env:
            deploy_files(settings.pxe_root)
        return pxe_bootstrap(settings)

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


@pytest.fixture
def lab_stack(api_service, pxe_service, scheduler_service, tmp_path):
    """api, pxe (DHCP/TFTP on loopback ports) and scheduler (WOL to the lab) wired for the lab
    simulator, with stand-in boot files (``deploy_env=False``: no deploy kernel and initramfs);
    returns (api, pxe, scheduler, LabConfig)."""

    def make(
        *,
        concurrency: int = 3,
        step_seconds: float = 0.3,
        wol_repeats: int = 1,
        deploy_env: bool = True,
        **api_overrides,
    ):
        dhcp, pxe_port, tftp, wol = free_port(udp=True), free_port(udp=True), free_port(udp=True), free_port()
        api = api_service(**api_overrides)
        pxe = pxe_service(
            deploy_env=deploy_env,
            pxe_dhcp_enabled=True,
            pxe_dhcp_host="127.0.0.1",
            pxe_dhcp_port=dhcp,
            pxe_dhcp_pxe_port=pxe_port,
            pxe_tftp_enabled=True,
            pxe_tftp_host="127.0.0.1",
            pxe_tftp_port=tftp,
            pxe_server_ip="127.0.0.1",
            pxe_api_url=f"http://127.0.0.1:{api.port}",
        )
        api.app.state.pxe_url = f"http://127.0.0.1:{pxe.port}"
        root = tmp_path / "boot"
        root.mkdir(parents=True, exist_ok=True)
        (root / "undionly.kpxe").write_bytes(b"\x90" * 70_000)  # stands in for Debian's; the lab only counts bytes
        scheduler = scheduler_service(
            scheduler_wol_port=wol,
            scheduler_power_on_timeout=60,
            scheduler_power_on_interval=0,
            scheduler_concurrency=concurrency,
            scheduler_tick=0.1,
            scheduler_wol_repeats=wol_repeats,
        )
        config = LabConfig(dhcp=("127.0.0.1", dhcp), tftp=("127.0.0.1", tftp), wol_port=wol, step_seconds=step_seconds)
        return api, pxe, scheduler, config

    return make


async def lab_setup(http, machines) -> None:
    """Proxy DHCP mode, a loopback group (WOL to 127.255.255.255) and the machines registered in it."""
    assert (await http.put("/boot/settings", json={"mode": "proxy", "server_ip": "127.0.0.1"})).is_success
    assert (await http.put("/groups/loop", json={"subnet": "127.0.0.0/8"})).is_success
    for m in machines:
        body = {"name": m.name, "macs": [m.mac], "smbios_uuid": str(m.smbios_uuid), "group": "loop"}
        assert (await http.post("/machines", json=body)).status_code == 201


async def run_until_done(http, scenario: str, body: dict, n: int, timeout: float = 120) -> list[dict]:
    """Run ``scenario`` and wait until its ``n`` executions are final; their rows."""
    run = (await http.post(f"/scenarios/{scenario}/runs", json=body)).json()

    async def rows() -> list[dict]:
        return (await http.get("/executions", params={"run_id": run["run_id"]})).json()

    return await eventually(
        rows,
        until=lambda r: len(r) == n and all(x["state"] in ("completed", "failed") for x in r),
        timeout=timeout,
        interval=0.25,
        what=f"every execution of {scenario} done",
    )


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
