"""Issue 12 items 2, 4, 12: a local account on a `dpm up` host gets nothing. The embedded PostgreSQL
and nats-server (started by the stack's own code) refuse a client without the password; NATS users
may use only their own subjects; var/ is unreadable to others; the postgres process has its own
group; a cluster left with ``trust`` by an older dpm is secured; a forged event on the bus is never
handled. The local client is ``runuser -u nobody`` running the system's psql and python3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import psycopg
import pytest

from dpm_imagefmt.store import DirStore
from dpm_runtime.bus import ensure_events_stream
from dpm_runtime.localstack.postgres import SERVICE_USER, SUPERUSER, PostgresCluster, find_bindir
from dpm_runtime.localstack.procs import free_port
from dpm_runtime.localstack.stack import PRIVATE_ENV, RELAY, SERVICES, Stack, StackSettings
from dpm_runtime.testing import eventually
from dpm_runtime.testing.services import running
from dpm_schemas import Metadata, RecordedEvent, subjects
from dpm_schemas.codec import encode_envelope
from dpm_schemas.events import EnrolmentTokenIssued

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser"),
]

NOBODY_PY = "/usr/bin/python3"  # the system's: the project's venv lives under /root, closed to nobody


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "nobody", "--", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The embedded stack's var/, PostgreSQL and nats-server (no services), on free ports."""
    parent = Path(tempfile.mkdtemp(prefix="dpm-test-local-"))
    parent.chmod(0o755)  # nobody may walk up to var/: what stops it must be var/'s own modes
    settings = StackSettings(
        var_dir=parent / "var", postgres_port=free_port(), nats_port=free_port(), nats_monitor_port=free_port()
    )
    s = Stack(settings, say=lambda _line: None)
    umask = os.umask(0o022)
    try:
        s.start_infrastructure()
        yield s
    finally:
        os.umask(umask)
        s.stop()
        shutil.rmtree(parent, ignore_errors=True)


def test_postgres_refuses_a_local_account_without_the_password(stack: Stack) -> None:
    pg = stack.postgres
    assert pg is not None
    for user in (SUPERUSER, SERVICE_USER):
        tcp = as_nobody("psql", f"postgresql://{user}@127.0.0.1:{pg.port}/dpm", "-w", "-c", "SELECT 1")
        assert tcp.returncode != 0 and "password" in tcp.stderr, tcp.stdout + tcp.stderr
        sock = as_nobody(
            "psql", "-h", str(pg.sockets), "-p", str(pg.port), "-U", user, "-w", "-d", "dpm", "-c", "SELECT 1"
        )
        assert sock.returncode != 0, sock.stdout
    with psycopg.connect(pg.url(user=SERVICE_USER)) as conn:  # the password it was given works
        assert conn.execute("SELECT current_user").fetchone() == (SERVICE_USER,)


def test_the_postgres_process_has_its_own_group(stack: Stack) -> None:
    assert stack.postgres is not None and stack.postgres.proc is not None
    status = Path(f"/proc/{stack.postgres.proc.pid}/status").read_text().splitlines()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in status}
    assert "0" not in fields["Gid"] and "0" not in fields["Groups"]
    assert "0" not in fields["Uid"]


NATS_PROBE = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb")
f.readline()  # INFO
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\\r\\nPING\\r\\n')
print(f.readline().decode().strip())
"""


def test_nats_refuses_a_client_without_credentials(stack: Stack) -> None:
    assert stack.nats is not None
    probe = as_nobody(NOBODY_PY, "-c", NATS_PROBE, str(stack.nats.port))
    assert probe.returncode == 0, probe.stderr
    assert "Authorization Violation" in probe.stdout, probe.stdout


def test_nats_monitor_binds_loopback_only(stack: Stack) -> None:
    assert stack.nats is not None
    assert stack.nats.config()["http"] == f"127.0.0.1:{stack.settings.nats_monitor_port}"


async def connect_as(stack: Stack, user: str, errors: list[str]) -> nats.aio.client.Client:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    assert stack.nats is not None
    password = (stack.secrets / f"nats-{user}").read_text().strip()
    return await nats.connect(stack.nats.url, user=user, password=password, error_cb=on_error, allow_reconnect=False)


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("pxe", subjects.event_subject(subjects.ENROLMENT, "EnrolmentTokenIssued")),
        ("api", subjects.event_subject(subjects.MACHINE, "MachineRegistered")),
        ("pxe", subjects.agent_command(uuid.uuid4())),
        ("agent-gateway", subjects.agent_command(uuid.uuid4())),
    ],
)
async def test_a_service_user_cannot_publish_outside_its_permissions(stack: Stack, user: str, subject: str) -> None:
    errors: list[str] = []
    nc = await connect_as(stack, user, errors)
    try:
        await nc.publish(subject, b"forged")
        await nc.flush()
        await eventually(lambda: asyncio.sleep(0, errors), until=bool, what="a permissions violation")
        assert "permissions violation" in errors[0].lower() and subject.lower() in errors[0].lower()
    finally:
        await nc.close()


async def test_only_the_relay_publishes_events_and_only_the_gateway_hears_agent_commands(stack: Stack) -> None:
    errors: list[str] = []
    relay, api, gateway = [await connect_as(stack, u, errors) for u in ("relay", "api", "agent-gateway")]
    try:
        machine = uuid.uuid4()

        async def answer(msg) -> None:
            await msg.respond(b"done")

        heard = await gateway.subscribe(subjects.agent_command(machine), cb=answer)
        reply = await api.request(subjects.agent_command(machine), b"reboot", timeout=5)
        assert reply.data == b"done"
        await heard.unsubscribe()
        js = relay.jetstream()
        await ensure_events_stream(js)  # what a service does at start-up, allowed to each
        ack = await js.publish(subjects.event_subject(subjects.TEST, "Probe"), b"x", headers={"Nats-Msg-Id": "t1"})
        assert ack.stream == subjects.EVENTS_STREAM
        denied = await api.subscribe(subjects.agent_command(">"))  # the api may send commands, never read them
        await api.flush()
        await eventually(lambda: asyncio.sleep(0, errors), until=bool, what="a subscribe violation")
        assert "permissions violation" in errors[0].lower()
        await denied.unsubscribe()
    finally:
        for nc in (relay, api, gateway):
            await nc.close()


def test_var_images_logs_tokens_and_secrets_are_unreadable_to_others(stack: Stack) -> None:
    var = stack.var
    stack.token()
    umask = os.umask(0o022)  # as a careless caller would have it: the modes must not depend on it
    try:
        DirStore(var / "images").open().put_manifest("ab" * 32, b"a backed-up disk")
        stack._spawn("probe", "this", {"PATH": os.environ["PATH"]})  # writes its log like a service
        assert stack.services.pop("probe").wait(30) == 0
    finally:
        os.umask(umask)
    targets = [
        var / "api-token",
        var / "log" / "probe.log",
        var / "images" / "manifests" / ("ab" * 32),
        var / "secrets" / "nats-api",
        var / "postgres" / "secrets" / SUPERUSER,
        var / "postgres" / "postgres.log",
        var / "nats" / "nats.conf",
    ]
    for path in targets:
        assert path.exists(), path
        read = as_nobody(NOBODY_PY, "-c", f"open({str(path)!r}).read()")
        assert read.returncode != 0 and "PermissionError" in read.stderr, (path, read.stderr)
        assert path.stat().st_mode & 0o077 == 0, path
    listing = as_nobody(NOBODY_PY, "-c", f"import os; os.listdir({str(var)!r})")
    assert "PermissionError" in listing.stderr  # var/ itself is only traversable


def test_a_cluster_left_with_trust_is_secured_on_the_next_start() -> None:
    parent = Path(tempfile.mkdtemp(prefix="dpm-test-trust-"))
    parent.chmod(0o755)
    root = parent / "postgres"
    (root / "data").mkdir(parents=True)
    shutil.chown(root, "postgres", "postgres")
    shutil.chown(root / "data", "postgres", "postgres")
    initdb = [str(find_bindir() / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER, "--auth=trust"]
    subprocess.run(initdb, check=True, capture_output=True, user="postgres")  # what an older dpm did
    cluster = PostgresCluster(root=root, port=free_port(), fast_unsafe=True)
    try:
        assert cluster.init() is False
        cluster.start()
        open_door = as_nobody(
            "psql", f"postgresql://{SUPERUSER}@127.0.0.1:{cluster.port}/postgres", "-w", "-c", "SELECT 1"
        )
        assert open_door.returncode != 0 and "password" in open_door.stderr
        with psycopg.connect(cluster.url("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)


def forged_enrolment(token: str, position: int) -> RecordedEvent:
    event = EnrolmentTokenIssued(
        token_id=uuid.uuid4(),
        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        uses=1,
    )
    return RecordedEvent(
        uuid.uuid4(), event.wire_name, 1, f"enrolment-{event.token_id}", 1, position, datetime.now(UTC),
        Metadata.new(actor="mallory"), event,
    )  # fmt: skip


async def test_a_forged_enrolment_token_on_the_bus_never_enrols_an_agent(
    api_service, gateway_service, auth, nc, eventlog
) -> None:
    facts = {"macs": ["52:54:0d:66:00:01"], "hostname": "impostor"}
    async with running(api_service(), headers=auth) as api, running(gateway_service()) as gw:
        head = max(1, await eventlog.head())
        for position in (head, head + 1000):  # an existing position with another event id, and a free one
            forged = forged_enrolment(f"dpme_forged{position}", position)
            await nc.jetstream().publish(
                subjects.event_subject(subjects.ENROLMENT, forged.type),
                encode_envelope(forged),
                headers={subjects.HEADER_MSG_ID: str(forged.event_id)},
            )
        tokens = gw.runtime.consumers[subjects.durable_name("agent-gateway", "tokens")]
        await eventually(lambda: asyncio.sleep(0, tokens.stats.forged), until=lambda n: n == 2, what="both refused")
        for position in (head, head + 1000):
            body = {"enrolment_token": f"dpme_forged{position}", "facts": facts}
            refused = await gw.http.post("/v1/enrol", json=body)
            assert refused.status_code == 403, refused.text
        real = (await api.http.post("/agents/enrolment-tokens", json={})).json()  # the log's path still works
        enrolled = await eventually(
            lambda: gw.http.post("/v1/enrol", json={"enrolment_token": real["token"], "facts": facts}),
            until=lambda r: r.status_code == 200,
            what="a logged token enrols",
        )
        assert enrolled.json()["machine_id"]


def test_each_child_of_the_stack_gets_only_its_own_credentials(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("DPM_API_TOKEN", "from-the-caller")
    base = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}  # what Stack.start hands every child
    for name, _ in (RELAY, *SERVICES):
        env = stack._child_env(base, name, f"pw-{name}")
        assert (env["DPM_NATS_USER"], env["DPM_NATS_PASSWORD"], env["DPM_RELAY_ENABLED"]) == (
            name,
            f"pw-{name}",
            "false",
        )
        assert "DPM_DATABASE_ADMIN_URL" not in env  # the stack migrates before it starts anything
        assert ("DPM_API_TOKEN" in env) == (name == "api")
    assert stack._child_env(base, "api", "pw")["DPM_API_TOKEN"] == "from-the-caller"
