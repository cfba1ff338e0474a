"""``dpm up``: a private PostgreSQL and nats-server under ``./var``, every service as a process.

Data lives in ``var/postgres`` and ``var/nats``, so a second ``dpm up`` keeps it; services log JSON to
``var/log/<service>.log``. A child that exits unexpectedly (not ``hold``) restarts with backoff.
Ctrl-C (or SIGTERM) stops the services first (they drain), then nats-server, then PostgreSQL;
nothing is left running. The handlers of both are installed explicitly, so a ``dpm up`` started as
a background job of a script (where SIGINT starts ignored) stops on either too.

No other local account gets in: ``var/`` is 0711 (the postgres account traverses it to reach its
cluster, nothing is listable) and everything in it is 0700/0600, created so (umask 0077 for the
stack and its children); PostgreSQL and NATS require passwords kept in ``var/secrets``. Each process
gets only its own credentials: a NATS user (the relay, its own process, alone publishes events), its
own database role (``dpm_runtime.dbroles``), the API token for the api alone. The stack secures the
schemas and migrates itself (no service holds the owner URL). Credentials travel in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dpm_runtime.dbroles import prepare, role_of
from dpm_runtime.localstack.nats import RELAY_USER, NatsServer
from dpm_runtime.localstack.postgres import PostgresCluster
from dpm_runtime.localstack.procs import stop_process
from dpm_runtime.localstack.secrets import open_private_log, private_dir, secret, write_private
from dpm_runtime.localstack.supervise import supervise
from dpm_runtime.localstack.wiring import service_defaults, service_port
from dpm_schemas import ports
from dpm_schemas.errors import DpmError

# (name, module) in start order; the api first so the console answers early.
SERVICES = (
    ("api", "dpm_api"),
    ("scheduler", "dpm_scheduler"),
    ("pxe", "dpm_pxe"),
    ("imager", "dpm_imager"),
    ("updater", "dpm_updater"),
    ("agent-gateway", "dpm_agent_gateway"),
)
RELAY = (RELAY_USER, "dpm_runtime.relay")  # its own process and NATS user: the only publisher of events
# What no child inherits from the caller's environment: each gets only its own (``_child_env``).
PRIVATE_ENV = (
    "DPM_API_TOKEN",
    "DPM_DATABASE_URL",
    "DPM_DATABASE_ADMIN_URL",
    "DPM_NATS_USER",
    "DPM_NATS_PASSWORD",
    "DPM_PXE_SERVICE_TOKEN",
    "DPM_API_PXE_TOKEN",
    "DPM_PXE_DEPLOY_TOKEN_KEY",
)


class StackSettings(BaseSettings):
    """Settings of the embedded stack (env prefix ``DPM_STACK_``); service ports use their own settings."""

    model_config = SettingsConfigDict(env_prefix="DPM_STACK_", extra="ignore")

    var_dir: Path = Field(default=Path("var"), description="Where data, logs and the API token live.")
    host: str = "127.0.0.1"
    postgres_port: int = ports.POSTGRES
    nats_port: int = ports.NATS
    nats_monitor_port: int = ports.NATS_MONITOR
    ready_timeout: float = 60.0


IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


@dataclass
class Stack:
    settings: StackSettings
    say: Callable[[str], None] = print
    postgres: PostgresCluster | None = None
    nats: NatsServer | None = None
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    children: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # name -> (module, env)
    held: set[str] = field(default_factory=set)  # stopped on purpose (``hold``): not restarted meanwhile

    @property
    def var(self) -> Path:
        return self.settings.var_dir.resolve()

    @property
    def secrets(self) -> Path:
        return self.var / "secrets"

    def token(self) -> str:
        """The bootstrap API token in ``var/api-token`` (0600 from its creation; the CLI reads it)."""
        path = self.var / "api-token"
        with contextlib.suppress(FileExistsError):
            write_private(path, (secrets.token_urlsafe(32) + "\n").encode(), exclusive=True)
        path.chmod(0o600)
        return path.read_text().strip()

    def _prepare_var(self) -> None:
        os.umask(0o077)  # whatever the stack and its children create is theirs alone
        self.var.mkdir(parents=True, exist_ok=True)
        self.var.chmod(0o711)  # traversable: the postgres account reaches var/postgres/data when run as root
        private_dir(self.var / "log")
        private_dir(self.secrets)
        for entry in ("nats", "boot", "images"):  # narrow what an older version left 0755
            if (self.var / entry).is_dir():
                private_dir(self.var / entry)

    def start_infrastructure(self) -> dict[str, str]:
        """``var/``, PostgreSQL (migrated) and nats-server; returns the NATS password of each user."""
        s = self.settings
        self._prepare_var()
        self.postgres = PostgresCluster(root=self.var / "postgres", port=s.postgres_port, host=s.host)
        if self.postgres.init():
            self.say(f"created PostgreSQL cluster in {self.postgres.data}")
        self.postgres.start()
        users = {name: secret(self.secrets, f"nats-{name}") for name in (*(n for n, _ in SERVICES), RELAY_USER)}
        self.nats = NatsServer(
            root=self.var / "nats", port=s.nats_port, monitor_port=s.nats_monitor_port, host=s.host, users=users
        )
        self.nats.start()
        moved, applied = asyncio.run(prepare(self.postgres.url()))  # the services' schemas, then migrations
        if moved:
            self.say(f"schemas now owned by their service's role: {', '.join(moved)}")
        if applied:
            self.say(f"applied migrations: {', '.join(applied)}")
        return users

    def start(self, stopping: Callable[[], bool] = lambda: False) -> dict[str, str]:
        """Start everything and wait until every service is ready; returns the services' environment."""
        s = self.settings
        users = self.start_infrastructure()
        assert self.postgres is not None and self.nats is not None
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        env.update(DPM_NATS_URL=self.nats.url, DPM_STACK_VAR_DIR=str(self.var))
        env.setdefault("DPM_HTTP_HOST", s.host)  # 0.0.0.0 serves machines on other networks (a lab bridge)
        env.setdefault("DPM_PXE_ROOT", str(self.var / "boot"))
        self._seed_boot_files(Path(env["DPM_PXE_ROOT"]))
        for key, value in service_defaults(self.var, s.host, env).items():
            env.setdefault(key, value)
        for name, module in (RELAY, *SERVICES):
            if stopping():  # Ctrl-C during PostgreSQL's start: start no service
                return env
            self._spawn(name, module, self._child_env(env, name, users[name]))
        self._wait_ready(env, stopping)
        return env

    def _child_env(self, env: dict[str, str], name: str, nats_password: str) -> dict[str, str]:
        """The shared environment plus this child's own credentials, and nothing of the others'."""
        own = dict(env, DPM_NATS_USER=name, DPM_NATS_PASSWORD=nats_password, DPM_RELAY_ENABLED="false")
        assert self.postgres is not None
        own["DPM_DATABASE_URL"] = self.postgres.url(user=role_of(name))
        if name == "api":
            own["DPM_API_TOKEN"] = os.environ.get("DPM_API_TOKEN") or self.token()
        if name in ("api", "pxe"):  # the api's credential for pxe's explain, recent boots and leases
            pxe_token = os.environ.get("DPM_PXE_SERVICE_TOKEN") or secret(self.secrets, "pxe-service")
            own["DPM_API_PXE_TOKEN" if name == "api" else "DPM_PXE_SERVICE_TOKEN"] = pxe_token
        if name == "pxe":  # deploy tokens derive from it: a firmware retry after a pxe restart gets the same
            own["DPM_PXE_DEPLOY_TOKEN_KEY"] = os.environ.get("DPM_PXE_DEPLOY_TOKEN_KEY") or secret(
                self.secrets, "pxe-deploy-key"
            )
        return own

    def _spawn(self, name: str, module: str, env: dict[str, str]) -> None:
        self.children[name] = (module, env)
        log = open_private_log(self.var / "log" / f"{name}.log")
        try:
            self.services[name] = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            os.close(log)

    def _seed_boot_files(self, root: Path) -> None:
        """Debian's iPXE binaries (apt-get install ipxe) into the boot root, unless already there."""
        root.mkdir(parents=True, exist_ok=True)
        for name in IPXE_BINARIES:
            source, target = IPXE_DIR / name, root / name
            if source.exists() and not target.exists():
                shutil.copyfile(source, target)
                self.say(f"boot file {target} from {source}")

    def _wait_ready(self, env: dict[str, str], stopping: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        pending = {name: service_port(name, env) for name, _ in SERVICES}
        with httpx.Client(timeout=2) as http:
            while pending and not stopping():
                for name, proc in self.services.items():  # the relay too, though it answers no HTTP
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.var}/log/{name}.log")
                for name, port in list(pending.items()):
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"http://{self.settings.host}:{port}/readyz").status_code == 200:
                            del pending[name]
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready within {self.settings.ready_timeout:.0f} s: {', '.join(pending)}")
                time.sleep(0.1)

    def watch(self, stop: Callable[[], bool]) -> None:
        """Block until ``stop()``, restarting whatever child exits meanwhile (with backoff)."""
        supervise(self._exited, self._restart, stop, self.say)

    def _servers(self) -> dict[str, NatsServer | PostgresCluster]:
        return {name: server for name, server in (("postgres", self.postgres), ("nats", self.nats)) if server}

    def hold(self, name: str) -> None:
        """Stop one child on purpose (PostgreSQL maintenance, an outage test) until ``release``."""
        self.held.add(name)  # first: the supervisor must not see it exit and queue a restart
        if server := self._servers().get(name):
            server.stop()
        elif (proc := self.services.get(name)) is not None:
            stop_process(proc, timeout=20)

    def release(self, name: str) -> None:
        try:
            self._restart(name, held_ok=True)
        finally:
            self.held.discard(name)

    def _exited(self) -> dict[str, int]:
        gone = {name: proc.returncode for name, proc in self.services.items() if proc.poll() is not None}
        for name, server in self._servers().items():
            if server.proc is None or server.proc.poll() is not None:
                gone[name] = server.proc.returncode if server.proc is not None else -1
        return {name: code for name, code in gone.items() if name not in self.held}

    def _restart(self, name: str, *, held_ok: bool = False) -> None:
        """Start ``name`` again as it was started: a server with its own arguments, a service with its env."""
        if name in self.held and not held_ok:
            return
        if server := self._servers().get(name):
            server.start()
            return
        module, env = self.children[name]
        self._spawn(name, module, env)

    def stop(self) -> None:
        """Services first (they drain), then nats-server, then PostgreSQL."""
        for proc in self.services.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.services.values():
            stop_process(proc, timeout=20)
        self.services.clear()
        if self.nats is not None:
            self.nats.stop()
        if self.postgres is not None:
            self.postgres.stop()


def up(settings: StackSettings | None = None, *, say: Callable[[str], None] = print) -> int:
    """Run the stack in the foreground until Ctrl-C / SIGTERM. Returns the process exit code."""
    stack = Stack(settings or StackSettings(), say=say)
    stopping = {"flag": False}

    def request_stop(_sig: int, _frame: object) -> None:
        stopping["flag"] = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        env = stack.start(lambda: stopping["flag"])
        if stopping["flag"]:
            return 0
        api = f"http://{stack.settings.host}:{service_port('api', env)}"
        say(f"dpm is up: API {api} (docs {api}/docs); token in {stack.var}/api-token; logs in {stack.var}/log/")
        say("press Ctrl-C to stop")
        stack.watch(lambda: stopping["flag"])
        say("stopping ...")
        return 0
    except DpmError as exc:
        say(f"dpm up failed: {exc.code} {exc.message}\n  remedy: {exc.remedy}")
        return 1
    except Exception as exc:
        say(f"dpm up failed: {exc}")
        return 1
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("stopped")
