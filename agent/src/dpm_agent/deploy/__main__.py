"""``dpm-deploy``: the deploy client by hand -- read a disk's layout, or back it up / restore it
with a transfer grant (JSON from ``POST /images/transfers``, as ``dpm images backup`` obtains it);
``run`` and ``logs`` are what /init of the deploy environment calls."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dpm_agent.deploy.jobs import disk_check, run_backup, run_restore
from dpm_agent.deploy.logs import send_logs
from dpm_agent.deploy.remote import TransferGrant
from dpm_agent.deploy.run import BootParams, run
from dpm_schemas.errors import DpmError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dpm-deploy", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    go = sub.add_parser("run", help="the network-boot job: step from the api per the kernel command line")
    go.add_argument("--cmdline", default="/proc/cmdline", help="file with dpm.execution= dpm.server= dpm.token=")
    go.add_argument(
        "--end-file", type=Path, help="where to write what /init does after the step (reboot, power-off, stay)"
    )
    go.add_argument("--log-file", type=Path, help="keep the client's log (INFO and up) in this file too")
    up = sub.add_parser("logs", help="upload the deploy environment's logs after the step (the deploy token's)")
    up.add_argument("--cmdline", default="/proc/cmdline", help="file with dpm.execution= dpm.server= dpm.token=")
    up.add_argument("--file", type=Path, required=True, help="the console copy /init kept")
    up.add_argument("--client-log", type=Path, help="the client's own log (run --log-file)")
    lay = sub.add_parser("layout", help="the disk configuration check of devices or image files (sfdisk-like JSON)")
    lay.add_argument("devices", nargs="+")
    lay.add_argument("--sector-size", type=int)
    for name in ("backup", "restore"):
        p = sub.add_parser(name)
        p.add_argument("device")
        p.add_argument("--grant", required=True, help="transfer grant JSON, or @file")
        p.add_argument("--partition", type=int)
        p.add_argument("--ignore-hidden", action="store_true")
        p.add_argument("--sector-size", type=int)
        if name == "backup":
            p.add_argument("--mode", choices=("full", "used"), default="used")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd in ("run", "logs"):
        return _boot_job(args)
    try:
        if args.cmd == "layout":
            out: object = [d.to_dict() for d in disk_check(args.devices, args.sector_size)]
        else:
            text = open(args.grant[1:]).read() if args.grant.startswith("@") else args.grant  # noqa: SIM115
            grant = TransferGrant.from_json(json.loads(text))
            common = {"partition": args.partition, "ignore_hidden": args.ignore_hidden, "sector_size": args.sector_size}
            if args.cmd == "backup":
                out = run_backup(args.device, grant, mode=args.mode, **common)
            else:
                out = run_restore(args.device, grant, **common)
    except DpmError as exc:
        print(f"{exc.code} {exc.message}\n  remedy: {exc.remedy}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2, default=str))
    return 0


def _boot_job(args: argparse.Namespace) -> int:
    """What /init runs: the step (``run``), then the upload of the logs (``logs``)."""
    with open(args.cmdline) as f:
        params = BootParams.parse(f.read())
    if args.cmd == "logs":
        kept, said = send_logs(params, args.file, args.client_log)
        print(said, flush=True)
        return 0 if kept else 1
    if args.log_file is not None:
        _log_to(args.log_file)
    return run(params, end_file=args.end_file)


def _log_to(path: Path) -> None:
    """The client's log on stderr (the console, which /init copies) and in ``path`` (its own part of
    the deploy logs)."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr), logging.FileHandler(path)]
    for h in handlers:
        h.setFormatter(fmt)
    logging.basicConfig(level=logging.INFO, handlers=handlers)


if __name__ == "__main__":
    sys.exit(main())
