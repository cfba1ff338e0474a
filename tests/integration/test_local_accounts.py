"""Issue 12 items 2, 4, 12: a local account on a `dpm up` host gets nothing. The embedded PostgreSQL
and nats-server (started by the stack's own code) refuse a client without the password; NATS users
may use only their own subjects; var/ is unreadable to others; the postgres process has its own
group; a cluster left with ``trust`` by an older dpm is secured; a forged event on the bus is never
handled. The local client is ``runuser -u nobody`` running the system's psql and python3."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import psycopg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dpm_imagefmt.store import DirStore
from dpm_runtime.bus import await_events_stream, connect_nats, ensure_events_stream, events_stream_config, inbox_prefix
from dpm_runtime.dbroles import ROLES, role_of
from dpm_runtime.localstack.nats import NatsServer, durables, permissions
from dpm_runtime.localstack.postgres import SUPERUSER, PostgresCluster, find_bindir
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
    for user in (SUPERUSER, *(r.role for r in ROLES.values())):
        tcp = as_nobody("psql", f"postgresql://{user}@127.0.0.1:{pg.port}/dpm", "-w", "-c", "SELECT 1")
        assert tcp.returncode != 0 and "password" in tcp.stderr, tcp.stdout + tcp.stderr
        sock = as_nobody(
            "psql", "-h", str(pg.sockets), "-p", str(pg.port), "-U", user, "-w", "-d", "dpm", "-c", "SELECT 1"
        )
        assert sock.returncode != 0, sock.stdout
    for role in (r.role for r in ROLES.values()):  # the password each was given works
        with psycopg.connect(pg.url(user=role)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)


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
    return await nats.connect(
        stack.nats.url,
        user=user,
        password=password,
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix=inbox_prefix(user),  # as connect_nats does: the only inbox the user may read
    )


@pytest.mark.parametrize(
    ("user", "subject"),
    [
        ("pxe", subjects.event_subject(subjects.ENROLMENT, "EnrolmentTokenIssued")),
        ("api", subjects.event_subject(subjects.MACHINE, "MachineRegistered")),
        ("pxe", subjects.agent_command(uuid.uuid4(), "reboot")),
        ("agent-gateway", subjects.agent_command(uuid.uuid4(), "reboot")),
        ("scheduler", subjects.agent_command(uuid.uuid4(), "put_file")),  # it reboots, never writes files
        ("scheduler", subjects.agent_command(uuid.uuid4(), "list_dir")),
        ("api", subjects.agent_command(uuid.uuid4(), "install")),  # install orders come from the updater alone
        ("scheduler", subjects.agent_command(uuid.uuid4(), "install")),
        ("updater", subjects.agent_command(uuid.uuid4(), "put_file")),  # it installs, never writes files
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

        heard = await gateway.subscribe(subjects.agent_command(machine, "*"), cb=answer)
        await gateway.flush()  # the server has the subscription before the request: else "no responders"
        reply = await api.request(subjects.agent_command(machine, "reboot"), b"reboot", timeout=5)
        assert reply.data == b"done"
        await heard.unsubscribe()
        js = relay.jetstream()
        await ensure_events_stream(js)  # what the relay does at start-up, allowed to it alone
        ack = await js.publish(subjects.event_subject(subjects.TEST, "Probe"), b"x", headers={"Nats-Msg-Id": "t1"})
        assert ack.stream == subjects.EVENTS_STREAM
        denied = await api.subscribe(subjects.agent_command("*", "*"))  # the api may send commands, never read them
        await api.flush()
        await eventually(lambda: asyncio.sleep(0, errors), until=bool, what="a subscribe violation")
        assert "permissions violation" in errors[0].lower()
        await denied.unsubscribe()
    finally:
        for nc in (relay, api, gateway):
            await nc.close()


async def refused(errors: list[str], what: str) -> str:
    """The permissions violation nats-server reported for ``what`` (a subject)."""

    def found() -> list[str]:
        return [e for e in errors if "permissions violation" in e.lower() and what.lower() in e.lower()]

    return (await eventually(lambda: asyncio.sleep(0, found()), until=bool, what=f"{what} refused"))[0]


async def test_a_service_reads_only_its_own_inbox_and_requests_still_get_replies(stack: Stack) -> None:
    """JetStream fetches and request replies go to inboxes: pxe must not read the api's (put_file replies)."""
    errors: list[str] = []
    pxe, api, gateway = [await connect_as(stack, u, errors) for u in ("pxe", "api", "agent-gateway")]
    try:
        overheard: list[bytes] = []

        async def overhear(msg) -> None:
            overheard.append(msg.data)

        for subject in ("_INBOX.>", f"{inbox_prefix('api')}.>", "_INBOX.*.>"):
            await pxe.subscribe(subject, cb=overhear)
            await pxe.flush()
            await refused(errors, f'"{subject}"')

        async def answer(msg) -> None:
            await msg.respond(b"file contents")

        machine = uuid.uuid4()
        await gateway.subscribe(subjects.agent_command(machine, "*"), cb=answer)
        await gateway.flush()  # the server has the subscription before the request: else "no responders"
        reply = await api.request(subjects.agent_command(machine, "put_file"), b"put_file", timeout=5)
        assert reply.data == b"file contents" and reply.subject.startswith(f"{inbox_prefix('api')}.")
        await pxe.flush()
        assert overheard == []
    finally:
        for nc in (pxe, api, gateway):
            await nc.close()


@pytest.fixture
async def bare_nats(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, dict[str, str]]]:
    """A nats-server with the stack's users and permissions and no stream yet."""
    users = {user: secrets.token_hex(16) for user in permissions()}
    server = NatsServer(root=tmp_path / "nats", port=free_port(), users=users)
    server.start()
    yield server, users
    server.stop()


class Collect(logging.Handler):
    """Log lines into a list (connect_nats reports server errors, permission violations included, as logs)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_only_the_relay_creates_or_changes_the_events_stream(bare_nats) -> None:
    server, users = bare_nats
    errors: list[str] = []
    bus_log = logging.getLogger("dpm_runtime.bus")
    bus_log.addHandler(handler := Collect(errors))
    pxe, relay = [await connect_nats(server.url, name=u, user=u, password=users[u]) for u in ("pxe", "relay")]
    try:
        assert pxe.new_inbox().startswith(f"{inbox_prefix('pxe')}.")  # the one inbox pxe may read
        js = pxe.jetstream(timeout=1)
        waiting = asyncio.create_task(await_events_stream(js))  # what a service does at start-up
        await eventually(
            lambda: asyncio.sleep(0, errors), until=lambda lines: any("only the relay creates it" in x for x in lines)
        )
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_stream(config=events_stream_config())
        await refused(errors, f"$JS.API.STREAM.CREATE.{subjects.EVENTS_STREAM}")
        await ensure_events_stream(relay.jetstream())
        await asyncio.wait_for(waiting, 15)  # the service starts once the relay created the stream

        wider = dataclasses.replace(events_stream_config(), subjects=[subjects.all_events(), "dpm.cmd.agent.>"])
        for hostile in (wider, dataclasses.replace(events_stream_config(), max_msgs=1, max_age=1.0)):
            errors.clear()
            with pytest.raises(nats.errors.TimeoutError):
                await js.update_stream(config=hostile)
            await refused(errors, f"$JS.API.STREAM.UPDATE.{subjects.EVENTS_STREAM}")
        config = (await relay.jetstream().stream_info(subjects.EVENTS_STREAM)).config
        assert config.subjects == [subjects.all_events()] and config.max_msgs in (None, -1)
        assert config.max_age == events_stream_config().max_age
    finally:
        bus_log.removeHandler(handler)
        for nc in (pxe, relay):
            await nc.close()


async def test_a_service_cannot_declare_pull_or_ack_another_services_durable(stack: Stack) -> None:
    errors: list[str] = []
    # the imager: pxe, which this test used, has no durable consumer left (its read models are projections)
    relay, api, pxe = [await connect_as(stack, u, errors) for u in ("relay", "api", "imager")]
    stream = subjects.EVENTS_STREAM
    try:
        await ensure_events_stream(relay.jetstream())
        theirs, mine = durables("api")[0], durables("imager")[0]
        only = [subjects.event_subject(subjects.TEST, "Durables")]
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, filter_subjects=only)
        await api.jetstream().add_consumer(stream, config=dataclasses.replace(config, durable_name=theirs))
        await pxe.jetstream().add_consumer(stream, config=dataclasses.replace(config, durable_name=mine))
        await relay.jetstream().publish(only[0], b"x", headers={subjects.HEADER_MSG_ID: uuid.uuid4().hex})
        (msg,) = await (await api.jetstream().pull_subscribe_bind(theirs, stream=stream)).fetch(1, timeout=5)

        pjs = pxe.jetstream(timeout=1)
        for durable in (theirs, "imager-snoop"):  # another's durable, or one the imager's code never declares
            with pytest.raises(nats.errors.TimeoutError):
                await pjs.add_consumer(
                    stream, config=dataclasses.replace(config, durable_name=durable, filter_subjects=None)
                )
            await refused(errors, f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}")
        with pytest.raises(nats.errors.TimeoutError):
            await (await pjs.pull_subscribe_bind(theirs, stream=stream)).fetch(1, timeout=1)
        await refused(errors, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{theirs}")
        await pxe.publish(msg.reply, b"+ACK")  # ack (or term) the api's message for it
        await refused(errors, msg.reply)
        assert (await api.jetstream().consumer_info(stream, theirs)).num_ack_pending == 1

        (own,) = await (await pjs.pull_subscribe_bind(mine, stream=stream)).fetch(1, timeout=5)  # its own: fine
        await own.ack_sync()
        await msg.ack_sync()
        assert (await api.jetstream().consumer_info(stream, theirs)).num_ack_pending == 0
    finally:
        for nc in (relay, api, pxe):
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
        # the gateway's issued enrolment tokens are a projection of the log: nothing of it reads the bus
        tokens = gw.runtime.consumers[subjects.durable_name("agent-gateway", "tokens")]
        assert not [s for s in tokens.spec.filter_subjects if s.endswith(".EnrolmentTokenIssued")]
        assert await gw.runtime.projections["tokens"].wait_for(await eventlog.head())
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
        assert env["DPM_DATABASE_URL"].startswith(f"postgresql://{role_of(name)}:")  # its own role, no other
        assert ("DPM_API_TOKEN" in env) == (name == "api")
    assert stack._child_env(base, "api", "pw")["DPM_API_TOKEN"] == "from-the-caller"
