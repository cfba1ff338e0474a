"""The deploy environment's job: read ``dpm.execution``, ``dpm.server`` and ``dpm.token`` from the
kernel command line pxe wrote, ask the api for the step, do it (disk check, backup, restore) and
report progress and the outcome -- every failure as a step report with its code, never silence.

Disks are numbered as the disk configuration check lists them (``/sys/block`` without loop, ram,
optical and zram devices, in name order); ``dpm.device=/path`` (repeatable) names them instead,
for the lab and for tests against disk-image files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpm_agent.deploy.jobs import disk_check, run_backup, run_restore
from dpm_agent.deploy.remote import TransferGrant
from dpm_agent.deploy.transport import HttpClient
from dpm_schemas.errors import DpmError, E

log = logging.getLogger(__name__)
SKIP_DISKS = re.compile(r"^(loop|ram|zram|sr|fd|dm-|md|nbd)")
PROGRESS_EVERY = 5.0


@dataclass(frozen=True)
class BootParams:
    execution: str
    server: str
    token: str
    devices: tuple[str, ...] = ()

    @classmethod
    def parse(cls, cmdline: str) -> BootParams:
        found = re.findall(r"(?:^|\s)dpm\.(\w+)=(\S+)", cmdline)
        values = dict(found)
        missing = [k for k in ("execution", "server", "token") if k not in values]
        if missing:
            raise E.DEPLOY_FAILED(
                machine="this machine", step="boot", reason=f"no dpm.{missing[0]}= on the command line"
            )
        devices = tuple(v for k, v in found if k == "device")
        return cls(values["execution"], values["server"], values["token"], devices)


def local_disks(sys_block: Path = Path("/sys/block")) -> list[str]:
    names = sorted(p.name for p in sys_block.iterdir() if not SKIP_DISKS.match(p.name)) if sys_block.exists() else []
    return [f"/dev/{n}" for n in names]


class Api:
    """The api's /deploy/v1 over plain http.client, authenticated by the deploy token."""

    def __init__(self, params: BootParams, timeout: float = 30) -> None:
        self.params = params
        self._http = HttpClient(params.server.rstrip("/") + "/deploy/v1", params.token, timeout=timeout,
                                down=lambda exc: exc)  # fmt: skip

    def within(self, seconds: float) -> None:
        """Retry no call longer than ``seconds`` (the step's deadline: past it the api refuses the
        token anyway, and a refusal is never retried)."""
        self._http.retry_for = min(self._http.retry_for, seconds)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON in and out; the api's own error (code and all) becomes the step's."""
        return self._http.json(method, path, body)

    def report(self, status: str, percent: int | None = None, code: str | None = None, message: str = "") -> None:
        body = {"execution_id": self.params.execution, "status": status, "percent": percent, "code": code,
                "message": message[:1000]}  # fmt: skip
        log.info("step report: %s%s%s %s", status, f" {percent}%" if percent is not None else "",
                 f" {code}" if code else "", message[:1000])  # fmt: skip
        self.call("POST", "/steps", body)


class Reporter:
    """Progress every few seconds: it keeps the scheduler's no-response watchdog quiet."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.api.report("progress", min(99, done * 100 // max(total, 1)))


def started(kind: str, uptime: Path = Path("/proc/uptime"), build: Path = Path("/etc/dpm-deploy.json")) -> str:
    """The first report: the step, how long the deploy environment took to come up, and its kernel
    and initramfs (what build.py recorded), so slow boots and missing drivers show in the history."""
    parts = [f"{kind} started"]
    if uptime.exists():
        parts.append(f"deploy environment up in {float(uptime.read_text().split()[0]):.1f} s")
    if build.exists():
        facts = json.loads(build.read_text())
        parts.append(f"kernel {facts.get('kernel')}, initramfs {facts.get('unpacked_bytes', 0) >> 20} MiB unpacked")
    if drivers := os.environ.get("DPM_DRIVERS", "").split():
        parts.append("drivers " + " ".join(drivers))
    return "; ".join(parts)


def prepare(api: Api, step: dict[str, Any], end_file: Path | None) -> None:
    """Before the step: retry no call past its timeout, and leave what /init does after it (its
    ``end``: reboot, power-off or stay), so a step that fails still gets the debug shell asked for."""
    if isinstance(step.get("timeout_seconds"), int):
        api.within(step["timeout_seconds"])
    if end_file is not None:
        end_file.write_text(str(step.get("end", "power-off")) + "\n")


def run(params: BootParams, api: Api | None = None, end_file: Path | None = None) -> int:
    """Do the execution's step (0 when it completed), leaving its end action in ``end_file``."""
    api = api or Api(params)
    step: dict[str, Any] = api.call("GET", f"/step?execution_id={params.execution}")
    prepare(api, step, end_file)
    kind, p = step["kind"], step["params"]
    devices = list(params.devices) or local_disks()
    try:
        api.report("progress", 0, message=started(kind))
        if kind == "disk-check":
            layouts = disk_check(devices)
            api.call("POST", "/disks", {"execution_id": params.execution, "disks": [d.to_dict() for d in layouts]})
            summary = ", ".join(f"{d.device} {d.label or 'blank'} {len(d.partitions)} partition(s)" for d in layouts)
            api.report("completed", 100, message=summary or "no disks")
            return 0
        if kind not in ("backup", "restore"):
            raise E.DEPLOY_FAILED(machine=step["machine_id"], step=kind, reason="this deploy client has no such step")
        device = _disk(devices, int(p.get("disk", "1")))
        grant = TransferGrant.from_json(api.call("POST", "/transfers", {"execution_id": params.execution}))
        common: dict[str, Any] = {
            "partition": int(p["partition"]) if p.get("partition") else None,
            "ignore_hidden": p.get("ignore_hidden") == "true",
            "report": Reporter(api),
        }
        if kind == "backup":
            out = run_backup(device, grant, mode=p.get("mode", "used"), meta={"machine": step["machine_id"]}, **common)
            message = f"{grant.image}: {out['captured_bytes']} bytes captured, {out['stats']['sent_bytes']} sent"
        else:
            out = run_restore(device, grant, grow_table=p.get("grow_gpt") == "true", **common)
            message = f"{grant.image}: {out['written_bytes']} bytes written to {device}"
        api.report("completed", 100, message=message)
        return 0
    except DpmError as exc:
        api.report("failed", code=exc.code, message=exc.message)
    except Exception as exc:  # a bug or a dead disk: still a report the operator can read
        log.exception("deploy step failed")
        err = E.DEPLOY_FAILED(machine=step["machine_id"], step=kind, reason=repr(exc))
        api.report("failed", code=err.code, message=err.message)
    return 1


def _disk(devices: list[str], number: int) -> str:
    if not 1 <= number <= len(devices):
        raise E.DISK_NOT_FOUND(disk=number, reason=f"this machine has {len(devices)} disk(s): {', '.join(devices)}")
    return devices[number - 1]
