"""`dpm images ...`: the image catalogue, verification, and backups and restores run from here
against a device or disk-image file (the deploy client, with a transfer the api grants)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from dpm_agent.deploy.jobs import disk_check, run_backup, run_restore
from dpm_agent.deploy.remote import TransferGrant
from dpm_cli.client import EXIT_API_ERROR, CliError, request
from dpm_cli.output import JsonOpt, table
from dpm_schemas.errors import DpmError

app = typer.Typer(
    help="Disk images: list, show, verify, delete, unlock, gc; back up and restore devices.", no_args_is_help=True
)

PartOpt = Annotated[int | None, typer.Option(help="Partition number (as the disk check shows it).")]
HiddenOpt = Annotated[bool, typer.Option("--ignore-hidden", help="Do not count hidden partitions.")]
SectorOpt = Annotated[int | None, typer.Option(help="Logical sector size of an image file (512 or 4096).")]


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@app.command("list")
def images_list(as_json: JsonOpt = False) -> None:
    rows = request("GET", "/images")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        r["size"], r["stored"] = _size(r["captured_bytes"]), _size(r["stored_bytes"])
        r["verified"] = "" if r["verified_ok"] is None else ("ok" if r["verified_ok"] else "CORRUPT")
    print(table(rows, ["name", "source", "mode", "label", "size", "stored", "chunk_count", "captured_at", "verified"]))


@app.command("show")
def images_show(name: str) -> None:
    print(json.dumps(request("GET", f"/images/{name}"), indent=2))


@app.command("rm")
def images_rm(name: str) -> None:
    """Delete an image; chunks no other image uses are collected right after."""
    request("DELETE", f"/images/{name}")
    print(f"deleted image {name}")


@app.command("gc")
def images_gc(
    wait: Annotated[float, typer.Option(help="Seconds to wait for the imager's figures.")] = 60,
) -> None:
    """Collect the image store now: chunks no image or running backup names (an aborted backup's at
    once, others after the grace period), replaced manifests, stale temporary files."""
    answer = request("POST", f"/images/gc?wait={wait}")
    if (done := answer["collected"]) is None:  # 202: asked, not confirmed in time (DPM-E196)
        err = answer["pending"]
        raise CliError(f"{err['code']} {err['message']}\n  remedy: {err['remedy']}", EXIT_API_ERROR)
    print(f"collected {done['chunks']} chunks ({_size(done['bytes'])}), {done['manifests']} manifests, "
          f"{done['temporary']} temporary files")  # fmt: skip


@app.command("unlock")
def images_unlock(name: str) -> None:
    """Free a name a backup holds (DPM-E160), e.g. one whose client died: that backup is aborted,
    its token refused and its chunks collected; the image as last committed stays."""
    released = request("POST", f"/images/{name}/unlock")["released"]
    if released:
        print(f"unlocked image {name}: backup {', '.join(released)} aborted")
    else:
        print(f"image {name} was not locked by any backup")


@app.command("verify")
def images_verify(name: str, as_json: JsonOpt = False) -> None:
    """Re-read every chunk of the image on the server (decompress, re-hash); exit 1 if any is bad."""
    result = request("POST", f"/images/{name}/verify")
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["ok"]:
        print(f"{name}: {result['chunks']} chunks verified, all intact")
    else:
        print(f"{name}: {len(result['corrupt'])} of {result['chunks']} chunks corrupt or missing:")
        for cid in result["corrupt"]:
            print(f"  {cid}")
    if not result["ok"]:
        raise typer.Exit(EXIT_API_ERROR)


@app.command("layout")
def images_layout(devices: list[str], sector_size: SectorOpt = None) -> None:
    """The disk configuration check of local devices or image files."""
    try:
        print(json.dumps([d.to_dict() for d in disk_check(devices, sector_size)], indent=2))
    except DpmError as exc:
        raise _cli(exc) from None


@app.command("backup")
def images_backup(
    device: str,
    name: Annotated[str, typer.Option("--name", help="Image name; {machine} {mac} {uuid} need --machine.")],
    machine: Annotated[str | None, typer.Option(help="Machine whose name/MAC/UUID fill the template.")] = None,
    partition: PartOpt = None,
    ignore_hidden: HiddenOpt = False,
    full: Annotated[bool, typer.Option("--full", help="Every sector (default: used sectors only).")] = False,
    sector_size: SectorOpt = None,
) -> None:
    """Back up a device or disk-image file into the image store (only chunks it lacks are sent)."""
    grant = _grant(name, "backup", machine)
    try:
        result = run_backup(
            device, grant, partition=partition, ignore_hidden=ignore_hidden, mode="full" if full else "used",
            sector_size=sector_size, report=_progress("backup"),
        )  # fmt: skip
    except DpmError as exc:
        raise _cli(exc) from None
    stats = result["stats"]
    print(
        f"image {result['image']}: {_size(result['captured_bytes'])} captured, {stats['sent_chunks']} new chunks "
        f"({_size(stats['sent_bytes'])} sent), {stats['reused_chunks']} already stored, in {stats['seconds']:.1f} s"
    )


@app.command("restore")
def images_restore(
    name: str,
    device: str,
    partition: PartOpt = None,
    ignore_hidden: HiddenOpt = False,
    sector_size: SectorOpt = None,
    grow_gpt: Annotated[
        bool, typer.Option("--grow-gpt", help="On a larger disk, move the GPT backup to its end.")
    ] = False,
) -> None:
    """Restore an image onto a device or disk-image file, after every pre-flight check passes."""
    grant = _grant(name, "restore", None)
    try:
        result = run_restore(
            device, grant, partition=partition, ignore_hidden=ignore_hidden, sector_size=sector_size,
            report=_progress("restore"), grow_table=grow_gpt,
        )  # fmt: skip
    except DpmError as exc:
        raise _cli(exc) from None
    print(f"restored {result['image']} onto {device}: {_size(result['written_bytes'])} in {result['seconds']:.1f} s")


def _grant(name: str, direction: str, machine: str | None) -> TransferGrant:
    doc: dict[str, Any] = request(
        "POST", "/images/transfers", json={"image": name, "direction": direction, "machine": machine}
    )
    return TransferGrant.from_json(doc)


def _progress(what: str) -> Any:
    last = [0.0]
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 1 and done < total:
            return
        last[0] = now
        rate = done / max(now - started, 1e-6)
        print(f"\r{what}: {done * 100 // max(total, 1):3d}%  {_size(done)} of {_size(total)}  {_size(int(rate))}/s",
              end="" if done < total else "\n", file=sys.stderr, flush=True)  # fmt: skip

    return show


def _cli(exc: DpmError) -> CliError:
    return CliError(f"{exc.code} {exc.message}\n  remedy: {exc.remedy}", EXIT_API_ERROR)
