"""Event log, relay and projection benchmarks against raw psycopg baselines; network boot (TFTP
against tftpd-hpa, DHCP answers per second) in ``bench/boot.py``; package delivery to many agents
against nginx in ``bench/packages.py``; live progress to many streams against per-client polling in
``bench/live.py``; the console's machine list with 10,000 machines (server and browser time) in
``bench/console.py``.

    uv run python -m bench [--rebuild-events 1000000] [--quick] [--only packages --package-mb 200 --clients 50]
                         [--only live --streams 500] [--only console --machines 10000]

Starts a private PostgreSQL cluster (durable settings: fsync on) and nats-server on free ports,
then prints events/s for each case, its baseline and the ratio, and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import nats
import psycopg
from opentelemetry.sdk.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool

from bench import boot as netboot
from bench import console, imaging, ipv6wait, live, packages
from dpm_api.projections import MachineList
from dpm_runtime.bus import ensure_events_stream
from dpm_runtime.dbroles import ensure_roles
from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_runtime.localstack.nats import NatsServer
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.migrations import migrate
from dpm_runtime.projection import ProjectionRunner, rebuild
from dpm_runtime.relay import Relay
from dpm_schemas import Metadata, NewEvent
from dpm_schemas.codec import _decode_cached, encode_payload
from dpm_schemas.events import MachineBooted, MachineRegistered, Probe

RAW_TABLE = """CREATE TABLE raw_events (position bigint PRIMARY KEY, stream_id text NOT NULL,
  stream_version bigint NOT NULL, event_id uuid NOT NULL UNIQUE, type text NOT NULL, schema_version int NOT NULL,
  data bytea NOT NULL, metadata jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (stream_id, stream_version))"""


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def row(
    name: str, value: float, baseline_name: str | None = None, baseline: float | None = None, unit: str = "events/s"
) -> dict:
    line = f"{name:<44} {value:>12,.{2 if value < 100 else 0}f} {unit}"
    out = {"case": name, "value": round(value, 1 if value >= 10 else 3), "unit": unit}
    if baseline:
        line += f"   vs {baseline_name}: {baseline:,.{2 if baseline < 100 else 0}f}  ->  {value / baseline:.2f}x"
        out.update(
            baseline=baseline_name,
            baseline_value=round(baseline, 1 if baseline >= 10 else 3),
            ratio=round(value / baseline, 3),
        )
    print(line, flush=True)
    return out


async def raw_single_inserts(url: str, n: int) -> float:
    """Baseline: one INSERT per autocommit transaction, the same columns as the event log."""
    payload, meta = encode_payload(Probe(writer=0, seq=0)), json.dumps(Metadata.new().to_dict())
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for i in range(1, n + 1):
            await conn.execute(
                "INSERT INTO raw_events (position, stream_id, stream_version, event_id, type, schema_version, data,"
                " metadata) VALUES (%s, %s, %s, %s, 'Probe', 1, %s, %s)",
                (i, f"s-{i % 100}", i, uuid.uuid4(), payload, meta),
            )
        return rate(n, time.perf_counter() - started)


async def raw_copy(url: str, n: int, start: int) -> float:
    """Baseline for batches: COPY, the fastest way rows get into PostgreSQL."""
    payload, meta = encode_payload(Probe(writer=0, seq=0)), json.dumps(Metadata.new().to_dict())
    async with await psycopg.AsyncConnection.connect(url) as conn:
        started = time.perf_counter()
        for b in range(0, n, 100):
            async with (
                conn.transaction(),
                conn.cursor().copy(
                    "COPY raw_events (position, stream_id, stream_version, event_id, type, schema_version, data,"
                    " metadata) FROM STDIN"
                ) as copy,
            ):
                for i in range(start + b, start + b + 100):
                    await copy.write_row((i, f"c-{i}", 1, uuid.uuid4(), "Probe", 1, payload, meta))
        return rate(n, time.perf_counter() - started)


async def dpm_appends(log: EventLog, n: int, batch: int) -> float:
    started = time.perf_counter()
    for i in range(n // batch):
        events = [NewEvent(Probe(writer=1, seq=i * batch + k), Metadata.new()) for k in range(batch)]
        await log.append(f"test-{i % 100}", ANY_VERSION, events)
    return rate(n, time.perf_counter() - started)


async def relay_throughput(log: EventLog, url: str, nats_url: str, n: int) -> float:
    await dpm_appends(log, n, 500)
    head = await log.head()
    nc = await nats.connect(nats_url)
    await ensure_events_stream(nc.jetstream())
    relay = Relay(conninfo=url, js=nc.jetstream(), tracer=TracerProvider().get_tracer("bench"), batch_size=1000)
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while relay.stats.checkpoint < head:
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await nc.close()
    return rate(relay.stats.published, seconds)


def boot(fleet: list[tuple[str, str]], i: int, distinct: bool) -> MachineBooted:
    """Boot number ``i``: realistic (stages cycle rom -> ipxe -> deploy, a machine's lease changes every
    ~100 boots) or worst case for the decode cache (every payload distinct: a unique client address)."""
    machine = i % len(fleet)
    if distinct:
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    else:
        ip = f"10.{machine // 250}.{machine % 250}.{(i // (len(fleet) * 100)) % 250 + 1}"
    stage = ("rom", "ipxe", "deploy")[(i // len(fleet)) % 3]
    return MachineBooted(mac=fleet[machine][(i // len(fleet)) % 2], arch="uefi-x64", client_ip=ip, stage=stage)


async def fill_fleet_history(url: str, n: int, machines: int = 2000, distinct: bool = False) -> None:
    """n events for the machine list: registrations, then boots from every machine's NICs."""
    log_pool: AsyncConnectionPool = AsyncConnectionPool(url, min_size=4, max_size=4, open=False)
    await log_pool.open()
    log = EventLog(log_pool)
    fleet = []
    for m in range(machines):
        mid = uuid.uuid4()
        macs = (f"52:54:01:{m // 256:02x}:{m % 256:02x}:00", f"52:54:01:{m // 256:02x}:{m % 256:02x}:01")
        fleet.append(macs)
        await log.append(
            f"machine-{mid}", 0, [NewEvent(MachineRegistered(machine_id=mid, name=f"m{m}", macs=macs), Metadata.new())]
        )
    remaining = n - machines

    async def writer(w: int) -> None:
        for b in range(w, remaining // 1000, 4):
            events = [NewEvent(boot(fleet, b * 1000 + k, distinct), Metadata.new()) for k in range(1000)]
            await log.append(f"boot-{b}", ANY_VERSION, events)

    await asyncio.gather(*(writer(w) for w in range(4)))
    await log_pool.close()


BENCH_USER = "dpm_bench"


def bench_url(cluster: PostgresCluster, database: str = "dpm") -> str:
    """A service-like role (dpm_service: no owner rights) that may append to every stream category, as the
    test kit's does: the benchmarks write streams of several services (migrated ``database``)."""
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        ensure_roles(conn, {BENCH_USER: cluster.password(BENCH_USER)})
    with psycopg.connect(cluster.url(database), autocommit=True) as conn:
        conn.execute("INSERT INTO dpm_stream_owners VALUES ('*', %s) ON CONFLICT DO NOTHING", (BENCH_USER,))
    return cluster.url(database, user=BENCH_USER)


async def rebuild_case(cluster: PostgresCluster, n: int, *, distinct: bool) -> dict:
    """Rebuild the machine list from n events; baseline: a raw ordered scan of the same log."""
    name = "rebuild_distinct" if distinct else "rebuild"
    cluster.create_database(name)
    await migrate(cluster.url(name))
    url = bench_url(cluster, name)
    started = time.perf_counter()
    await fill_fleet_history(url, n, distinct=distinct)
    print(f"(wrote {n:,} events in {time.perf_counter() - started:.0f} s)", flush=True)
    _decode_cached.cache_clear()
    pool: AsyncConnectionPool = AsyncConnectionPool(url, min_size=1, max_size=4, open=False)
    await pool.open()
    log = EventLog(pool)
    await ProjectionRunner(MachineList(), pool=pool, eventlog=log).setup()
    result = await rebuild(MachineList(), pool=pool, eventlog=log)
    await pool.close()
    async with await psycopg.AsyncConnection.connect(cluster.url(name)) as conn:
        started = time.perf_counter()
        async with conn.cursor(name="scan", binary=True) as cur:
            await cur.execute("SELECT position, type, data, metadata FROM events ORDER BY position")
            scanned = 0
            while rows := await cur.fetchmany(20_000):
                scanned += len(rows)
        scan = rate(scanned, time.perf_counter() - started)
    label = "every payload distinct" if distinct else "fleet-like history"
    return row(f"rebuild, {result.events:,} events, {label}", result.rate, "raw ordered scan of the log", scan)


async def main(args: argparse.Namespace) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix="dpm-bench-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root=root / "pg", port=free_port())
    nats_server = NatsServer(root=root / "nats", port=free_port())
    results: list[dict] = []
    try:
        cluster.init()
        cluster.start()
        nats_server.start()
        admin = cluster.url()
        await migrate(admin)
        url = bench_url(cluster)
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(RAW_TABLE)
        pool: AsyncConnectionPool = AsyncConnectionPool(
            url, min_size=2, max_size=8, open=False, kwargs={"autocommit": True}
        )
        await pool.open()
        log = EventLog(pool)
        n_single = 500 if args.quick else 3000
        print(f"PostgreSQL {cluster.data} (fsync on), nats {nats_server.url}\n", flush=True)
        if args.only in (None, "append"):
            raw1 = await raw_single_inserts(admin, n_single)
            results.append(
                row(
                    "append, 1 event per transaction",
                    await dpm_appends(log, n_single, 1),
                    "raw single-row INSERT",
                    raw1,
                )
            )
            copy = await raw_copy(admin, n_single * 20, 10_000_000)
            results.append(
                row(
                    "append, batches of 100",
                    await dpm_appends(log, n_single * 20, 100),
                    "raw COPY of 100-row batches",
                    copy,
                )
            )
            results.append(
                row(
                    "relay publish to JetStream",
                    await relay_throughput(log, url, nats_server.url, 5000 if args.quick else 50_000),
                )
            )
        await pool.close()

        if args.only in (None, "boot"):
            results += await netboot.tftp_cases(row, size_mb=20 if args.quick else 100, repeats=1 if args.quick else 2)
            results += await netboot.dhcp_cases(row, url, n=2000 if args.quick else 20_000)
            results += await ipv6wait.cases(row, url)

        if args.only in (None, "imaging"):
            results += imaging.imaging_cases(row, size_mb=256 if args.quick else 2048, repeats=1 if args.quick else 2)
            results += await imaging.http_cases(
                row, admin_url=admin, service_url=url, nats_url=nats_server.url, size_mb=256 if args.quick else 2048
            )
        if args.only in (None, "packages"):
            size_mb, clients = (20, 10) if args.quick else (200, 50)
            results += await packages.delivery_cases(
                row, admin_url=admin, service_url=url, nats_url=nats_server.url,
                size_mb=args.package_mb or size_mb, clients=args.clients or clients,
            )  # fmt: skip
        if args.only in (None, "live"):
            results += await live.stream_cases(
                row, admin_url=admin, service_url=url, nats_url=nats_server.url,
                streams=args.streams or (20 if args.quick else 500),
            )  # fmt: skip
        if args.only in (None, "console"):
            results += await console.list_cases(
                row, admin_url=admin, service_url=url, nats_url=nats_server.url,
                machines=args.machines or (1000 if args.quick else 10_000),
            )  # fmt: skip
        if args.only in (None, "rebuild"):
            n = 100_000 if args.quick else args.rebuild_events
            results.append(await rebuild_case(cluster, n, distinct=False))
            results.append(await rebuild_case(cluster, n, distinct=True))
    finally:
        nats_server.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rebuild-events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        choices=["append", "boot", "imaging", "packages", "live", "console", "rebuild"],
        help="run one group of cases",
    )
    parser.add_argument("--package-mb", type=int, help="package delivery: file size (default 200, 20 with --quick)")
    parser.add_argument("--clients", type=int, help="package delivery: agents at once (default 50, 10 with --quick)")
    parser.add_argument("--streams", type=int, help="live progress: clients watching one run (default 500, 20 quick)")
    parser.add_argument("--machines", type=int, help="console: machines registered (default 10000, 1000 quick)")
    asyncio.run(main(parser.parse_args()))
