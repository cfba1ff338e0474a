"""The whole dpm stack for the QEMU tests, on a lab bridge: api, pxe (full-mode DHCP on the
bridge), imager and scheduler as in production, with the deploy environment built once per session
(the ``deploy_os`` fixture of conftest.py)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from dpm_api.bootstrap import bootstrap as api_bootstrap
from dpm_api.settings import ApiSettings
from dpm_imager.bootstrap import bootstrap as imager_bootstrap
from dpm_imager.settings import ImagerSettings
from dpm_pxe.bootstrap import bootstrap as pxe_bootstrap
from dpm_pxe.settings import PxeSettings
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.testing import netlab
from dpm_runtime.testing.services import running
from dpm_scheduler.bootstrap import bootstrap as scheduler_bootstrap
from dpm_scheduler.settings import SchedulerSettings

TOKEN = "qemu-restore-token-0123456789"


@dataclass
class Stack:
    lab: netlab.NetLab
    http: Any  # the api's client, with the bootstrap token


@asynccontextmanager
async def qemu_stack(database: Any, nats_server: Any, deploy_os: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    """Every service on a fresh lab bridge, pxe in full mode for the lab's subnet, group ``lab``."""
    root = tmp_path / "boot"
    (root / "deploy").mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copy(deploy_os / name, root / "deploy" / name)
    common = {
        "database_url": SecretStr(database.service_url),
        "database_admin_url": SecretStr(database.admin_url),
        "nats_url": nats_server.url,
        "http_host": "0.0.0.0",
    }
    with netlab.NetLab(hosts_wanted=0) as lab:
        host = str(lab.host_ip)
        imager = imager_bootstrap(
            ImagerSettings(**common, imager_port=free_port(), relay_enabled=False, imager_root=tmp_path / "store",
                           imager_reserve_bytes=0)
        )  # fmt: skip
        api = api_bootstrap(
            ApiSettings(**common, api_port=free_port(), api_token=SecretStr(TOKEN),
                        api_imager_url=f"http://{host}:{imager.port}")
        )  # fmt: skip
        pxe = pxe_bootstrap(
            PxeSettings(**common, pxe_port=free_port(), relay_enabled=False, pxe_root=root, pxe_server_ip=lab.host_ip,
                        pxe_tftp_host=host, pxe_dhcp_interface=lab.bridge, pxe_api_url=f"http://{host}:{api.port}")
        )  # fmt: skip
        api.app.state.pxe_url = f"http://127.0.0.1:{pxe.port}"
        scheduler = scheduler_bootstrap(
            SchedulerSettings(**common, scheduler_port=free_port(), relay_enabled=False, scheduler_tick=0.2,
                              scheduler_power_on_timeout=600, scheduler_wol_repeats=1)
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with running(api, headers=headers) as a, running(pxe), running(imager), running(scheduler):
            first = lab.host_ip + 100
            ranges = [{"start": str(first), "end": str(first + 20), "subnet": str(lab.subnet), "router": host}]
            assert (await a.http.put("/boot/settings", json={"mode": "full", "ranges": ranges})).status_code == 200
            assert (await a.http.put("/groups/lab", json={"subnet": str(lab.subnet)})).is_success
            yield Stack(lab, a.http)
