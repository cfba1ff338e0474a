"""A private PostgreSQL cluster in a directory: initdb once, start on a port, stop fast.

Every connection authenticates with SCRAM: the superuser's and each service role's passwords
(``dpm_runtime.dbroles``: one login role per service and the relay) are generated once and kept
in ``<root>/secrets`` (0700, files 0600), and the socket directory is 0700, so no other local
account gets in. ``initdb`` and ``postgres`` refuse to run as root, so
as root they run as the ``postgres`` system user with its own group (never gid 0); the root
directory stays the invoker's (0711: traversable, not listable) with ``data/`` and ``run/``
handed to postgres. A cluster made by an older dpm with ``--auth=trust`` is secured on the next
start: passwords set in single-user mode (no server listening meanwhile) and pg_hba rewritten.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from dpm_runtime.dbroles import LEGACY_ROLE, ROLES, ensure_roles
from dpm_runtime.localstack.procs import stop_process, wait_until
from dpm_runtime.localstack.secrets import open_private_log, private_dir, secret, write_private
from dpm_schemas import E

SUPERUSER = "dpm"
SYSTEM_ACCOUNT = "postgres"
HBA = (
    "# Written by dpm at every start: every connection authenticates with SCRAM (DESIGN.md section 8).\n"
    "local all all scram-sha-256\n"
    "host all all all scram-sha-256\n"
)


def find_bindir() -> Path:
    for candidate in (os.environ.get("DPM_PG_BINDIR"), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise E.STACK_TOOL_MISSING(tool="PostgreSQL (initdb)", looked="DPM_PG_BINDIR, /usr/lib/postgresql/*/bin, PATH")


def _as_postgres() -> dict[str, Any]:
    """subprocess arguments that run a child as the postgres account and group (only as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(SYSTEM_ACCOUNT)
        grp.getgrnam(SYSTEM_ACCOUNT)
    except KeyError:
        raise E.STACK_TOOL_MISSING(
            tool="the postgres system user and group", looked="/etc/passwd, /etc/group"
        ) from None
    return {"user": SYSTEM_ACCOUNT, "group": SYSTEM_ACCOUNT, "extra_groups": []}


def _run_checked(args: list[str]) -> None:
    """Run a PostgreSQL tool as the postgres account; its own words when it fails."""
    result = subprocess.run(args, capture_output=True, **_as_postgres())
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace").strip()[-800:]
        hint = " (every parent directory must be traversable by the postgres user)" if _as_postgres() else ""
        raise RuntimeError(f"{Path(args[0]).name} failed with {result.returncode}{hint}: {output}")


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
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def password(self, user: str = SUPERUSER) -> str:
        """The login password of ``user`` (generated on first use, kept 0600)."""
        return secret(self.secrets, user)

    def url(self, database: str = "dpm", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}:{self.password(user)}@{self.host}:{self.port}/{database}"

    def _chown(self, path: Path) -> None:
        if _as_postgres():
            shutil.chown(path, SYSTEM_ACCOUNT, SYSTEM_ACCOUNT)

    def _layout(self) -> None:
        """The directory modes and owners (also narrowing what an older version left wider)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        if os.geteuid() == 0 and self.root.stat().st_uid != 0:  # older versions handed the root to postgres
            os.chown(self.root, 0, 0)
        self.root.chmod(0o711)
        private_dir(self.secrets)
        for d in (self.data, self.sockets):
            private_dir(d)
            self._chown(d)

    def init(self) -> bool:
        """Create the cluster if absent (True), else secure an existing one; the passwords exist after."""
        self._layout()
        for r in ROLES.values():
            self.password(r.role)
        (self.secrets / LEGACY_ROLE).unlink(missing_ok=True)  # the single role of old: retired by dbroles.secure
        if (self.data / "PG_VERSION").exists():
            self._secure_existing()
            return False
        pwfile = self.root / ".initdb-password"  # read by initdb as postgres; gone when it returns
        write_private(pwfile, self.password().encode())
        self._chown(pwfile)
        try:
            _run_checked(
                [str(find_bindir() / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                 "--no-instructions"],
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()
        return True

    def _write_hba(self) -> None:
        write_private(self.data / "pg_hba.conf", HBA.encode())
        self._chown(self.data / "pg_hba.conf")

    def _secure_existing(self) -> None:
        """A cluster whose pg_hba is not ours (``trust`` from an older dpm), or whose superuser
        password file is gone, gets the password set in single-user mode, then our pg_hba."""
        forgotten = not (self.secrets / SUPERUSER).exists()  # deleted to rotate it, or lost: set a new one
        if (self.data / "pg_hba.conf").read_text() == HBA and not forgotten:
            return
        password = self.password()
        statement = f"ALTER ROLE {SUPERUSER} WITH PASSWORD '{password}'\n"
        result = subprocess.run(
            [str(find_bindir() / "postgres"), "--single", "-D", str(self.data), "postgres"],
            input=statement.encode(),
            capture_output=True,
            **_as_postgres(),
        )
        output = (result.stdout + result.stderr).decode(errors="replace").replace(password, "***")
        if result.returncode != 0 or "ERROR:" in output or "FATAL:" in output:
            raise E.POSTGRES_SECURE_FAILED(user=SUPERUSER, data=self.data, reason=output.strip()[-500:])
        self._write_hba()

    def start(self, timeout: float = 30.0) -> None:
        self._layout()
        settings = ["-c", f"listen_addresses={self.host}", "-c", "max_connections=300"]
        settings += ["-c", "unix_socket_permissions=0700", "-c", "password_encryption=scram-sha-256"]
        if self.fast_unsafe:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open_private_log(self.log_path)
        try:
            self.proc = subprocess.Popen(
                [str(find_bindir() / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.sockets), *settings],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_postgres(),
            )  # fmt: skip
        finally:
            os.close(log)
        wait_until(self._accepts, timeout=timeout, what="PostgreSQL", proc=self.proc, log_path=str(self.log_path))
        self._bootstrap()

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def _bootstrap(self) -> None:
        """The dpm database, the NOLOGIN group role the migrations grant to, and each service's login role."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'dpm'").fetchone():
                conn.execute("CREATE DATABASE dpm")
            ensure_roles(conn, {r.role: self.password(r.role) for r in ROLES.values()})

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return name

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGINT, timeout=30)  # SIGINT = fast shutdown
            self.proc = None
