"""A private PostgreSQL cluster in a directory: initdb once, start on a port, stop fast.

``initdb`` and ``postgres`` refuse to run as root, so as root the processes run as the ``postgres``
system user (created by Debian's package) and the directory is handed to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from dpm_runtime.localstack.procs import stop_process, wait_until
from dpm_schemas import E

SUPERUSER = "dpm"
SERVICE_USER = "dpm_app"


def find_bindir() -> Path:
    for candidate in (os.environ.get("DPM_PG_BINDIR"), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise E.STACK_TOOL_MISSING(tool="PostgreSQL (initdb)", looked="DPM_PG_BINDIR, /usr/lib/postgresql/*/bin, PATH")


@dataclass
class PostgresCluster:
    root: Path
    port: int
    host: str = "127.0.0.1"
    fast_unsafe: bool = False  # tests only: no fsync
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "run"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "dpm", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise E.STACK_TOOL_MISSING(tool="the postgres system user", looked="/etc/passwd") from None
        return "postgres"

    def _chown(self, path: Path) -> None:
        user = self._user()
        if user:
            shutil.chown(path, user, user)

    def init(self) -> bool:
        """Create the cluster if absent; True when it was created now."""
        if (self.data / "PG_VERSION").exists():
            return False
        bindir = find_bindir()
        for d in (self.root, self.data, self.sockets):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        self.root.chmod(0o755)
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            check=True,
            user=self._user(),
            capture_output=True,
        )
        return True

    def start(self, timeout: float = 30.0) -> None:
        bindir = find_bindir()
        self.sockets.mkdir(parents=True, exist_ok=True)
        self._chown(self.sockets)
        settings = ["-c", f"listen_addresses={self.host}", "-c", "max_connections=300"]
        if self.fast_unsafe:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")  # noqa: SIM115 -- owned by the child for its lifetime
        self._chown(self.log_path)
        self.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets), *settings],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._user(),
            start_new_session=True,
        )
        log.close()
        wait_until(self._accepts, timeout=timeout, what="PostgreSQL", proc=self.proc, log_path=str(self.log_path))
        self._bootstrap()

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def _bootstrap(self) -> None:
        """The dpm database, the NOLOGIN group role the migrations grant to, and the service login role."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'dpm'").fetchone():
                conn.execute("CREATE DATABASE dpm")
            ensure_roles(conn)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return name

    def stop(self) -> None:
        if self.proc is not None:
            import signal

            stop_process(self.proc, sig=signal.SIGINT, timeout=30)  # SIGINT = fast shutdown
            self.proc = None


def ensure_roles(conn: psycopg.Connection) -> None:
    conn.execute(
        "DO $$ BEGIN"
        " IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dpm_service') THEN CREATE ROLE dpm_service NOLOGIN;"
        " END IF;"
        f" IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVICE_USER}') THEN"
        f" CREATE ROLE {SERVICE_USER} LOGIN IN ROLE dpm_service; END IF; END $$"
    )
