"""``dpm-deploy``: the deploy client by hand -- read a disk's layout, or back it up / restore it
with a transfer grant (JSON from ``POST /images/transfers``, as ``dpm images backup`` obtains it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dpm_agent.deploy.jobs import disk_check, run_backup, run_restore
from dpm_agent.deploy.remote import TransferGrant
from dpm_agent.deploy.run import BootParams, run
from dpm_schemas.errors import DpmError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dpm-deploy", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    go = sub.add_parser("run", help="the network-boot job: step from the api per the kernel command line")
    go.add_argument("--cmdline", default="/proc/cmdline", help="file with dpm.execution= dpm.server= dpm.token=")
    go.add_argument(
        "--end-file", type=Path, help="where to write what /init does after the step (reboot, power-off, stay)"
    )
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
    args = ap.parse_args(argv)
    if args.cmd == "run":
        with open(args.cmdline) as f:
            return run(BootParams.parse(f.read()), end_file=args.end_file)
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


if __name__ == "__main__":
    sys.exit(main())
