"""A real Debian repository for the source sync: .debs built with dpkg-deb, Packages written by
dpkg-scanpackages, a Release with its SHA256 list, signed with a throwaway key; served by a local
HTTP server, optionally behind a local proxy that wants Basic proxy authentication. The fixtures
are made known to pytest by conftest.py; the test imports the types and helpers from here."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import lzma
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dpm_schemas import DpmError
from dpm_updater.adapters.content import ContentStore
from dpm_updater.sources.config import SourceConfig
from dpm_updater.sources.sync import SourceSync

TOOLS = ("dpkg-deb", "dpkg-scanpackages", "gpg", "gpgv")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
INDEX = "main/binary-amd64/Packages"


def build_deb(work: Path, name: str, version: str, payload: bytes) -> Path:
    work = Path(tempfile.mkdtemp(dir=work))  # one per build: the same name and version may be built twice
    root = work / f"{name}_{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN").chmod(0o755)  # dpkg-deb wants 0755..0775, whatever umask an earlier test left (0077)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: dpm <t@example.invalid>\n"
        f"Description: {name} for the sync test\n"
    )
    (root / "usr" / "share" / name).mkdir(parents=True)
    (root / "usr" / "share" / name / "data").write_bytes(payload)
    out = work / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(root), str(out)], check=True,
                   capture_output=True)  # fmt: skip
    return out


@dataclass
class Repo:
    root: Path  # what the server serves
    gnupg: Path
    key: Path  # armoured public key

    @property
    def dists(self) -> Path:
        return self.root / "dists" / "stable"

    def publish(self, debs: list[Path], *, sign: bool = True) -> None:
        """Pool, Packages (plain, .gz, .xz) and Release; InRelease and Release.gpg when ``sign``."""
        pool = self.root / "pool" / "main"
        shutil.rmtree(pool, ignore_errors=True)
        pool.mkdir(parents=True)
        for deb in debs:
            shutil.copy(deb, pool / deb.name)
        packages = subprocess.run(["dpkg-scanpackages", "pool", "/dev/null"], cwd=self.root, check=True,
                                  capture_output=True).stdout  # fmt: skip
        index = self.dists / INDEX
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_bytes(packages)
        index.with_name("Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
        index.with_name("Packages.xz").write_bytes(lzma.compress(packages))
        self.write_release(sign=sign)

    def write_release(self, *, sign: bool = True) -> None:
        lines = [f" {sha256(p)} {p.stat().st_size} {p.relative_to(self.dists)}" for p in self.index_files()]
        release = self.dists / "Release"
        release.write_text(
            "Suite: stable\nCodename: dpm\nDate: Thu, 03 Dec 2026 00:00:00 UTC\nComponents: main\n"
            "Architectures: amd64\nSHA256:\n" + "\n".join(lines) + "\n"
        )
        for signed in ("InRelease", "Release.gpg"):
            (self.dists / signed).unlink(missing_ok=True)
        if sign:
            self.gpg("--clearsign", "-o", str(self.dists / "InRelease"), str(release))
            self.gpg("--detach-sign", "-o", str(self.dists / "Release.gpg"), str(release))

    def index_files(self) -> list[Path]:
        return sorted((self.dists / "main").rglob("Packages*"))

    def gpg(self, *args: str) -> None:
        subprocess.run(["gpg", "--homedir", str(self.gnupg), "--batch", "--yes", *args], check=True,
                       capture_output=True)  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def keys() -> Iterator[tuple[Path, Path]]:
    """A throwaway signing key (its GNUPGHOME and armoured public key), removed after the session."""
    home = Path(tempfile.mkdtemp(prefix="dpm-gpg-"))
    os.chmod(home, 0o700)
    run = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
    subprocess.run([*run, "--quick-gen-key", "dpm test <t@example.invalid>", "ed25519", "sign", "never"],
                   check=True, capture_output=True)  # fmt: skip
    key = home / "key.asc"
    key.write_bytes(subprocess.run([*run, "--armor", "--export"], check=True, capture_output=True).stdout)
    yield home, key
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("debs")
    return {
        "hello": build_deb(work, "hello", "1.0", b"hello\n"),
        "tool": build_deb(work, "tool", "2.1", b"tool\n"),
        "tool-rebuilt": build_deb(work, "tool", "2.1", b"tool, rebuilt\n"),  # same key, other content
        "big": build_deb(work, "big", "1.0", os.urandom(256 * 1024)),  # fills a 64 KiB tmpfs
    }


@pytest.fixture
def repo(tmp_path: Path, keys: tuple[Path, Path], debs: dict[str, Path]) -> Repo:
    r = Repo(tmp_path / "www", *keys)
    r.publish([debs["hello"], debs["tool"]])
    return r


@dataclass
class Served:
    url: str
    port: int
    requests: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # path -> forced status
    stall: set[str] = field(default_factory=set)  # paths answered only when the test ends
    released: threading.Event = field(default_factory=threading.Event)


def serve(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (certificate, key)."""
    work = tmp_path_factory.mktemp("tls")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    return cert, key


@pytest.fixture
def web(repo: Repo) -> Iterator[Served]:
    yield from _web(repo, None)


@pytest.fixture
def tls_web(repo: Repo, certificate: tuple[Path, Path]) -> Iterator[Served]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    yield from _web(repo, context)


def _web(repo: Repo, tls: ssl.SSLContext | None) -> Iterator[Served]:
    """The repository over HTTP(S) on 127.0.0.1; ``status`` forces an answer for a path, ``stall``
    holds it until the test ends."""
    served = Served("", 0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            served.requests.append(path)
            file = repo.root / path.lstrip("/")
            if path in served.stall:
                served.released.wait(30)
            forced = served.status.get(path)
            if forced or not file.is_file() or ".." in path:
                self.send_error(forced or 404)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server, thread = serve(Handler, tls)
    served.port = server.server_address[1]
    served.url = f"{'https' if tls else 'http'}://127.0.0.1:{served.port}"
    yield served
    served.released.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy() -> Iterator[Served]:
    """A forward HTTP proxy that wants ``Proxy-Authorization: Basic dpm:s3cret``."""
    served = Served("", 0)
    expected = "Basic " + base64.b64encode(b"dpm:s3cret").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            if self.headers.get("Proxy-Authorization") != expected:
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="dpm"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            target = urlsplit(self.path)
            upstream = http.client.HTTPConnection(target.netloc, timeout=10)
            upstream.request("GET", target.path or "/")
            answer = upstream.getresponse()
            body = answer.read()
            upstream.close()
            self.send_response(answer.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server, thread = serve(Handler)
    served.port = server.server_address[1]
    served.url = f"http://127.0.0.1:{served.port}"
    yield served
    server.shutdown()
    server.server_close()
    thread.join(5)


def code_of(sync: SourceSync, cfg: SourceConfig) -> str:
    """The code a sync that must fail fails with."""
    with pytest.raises(DpmError) as err:
        sync.run(cfg, None, fetch_packages=True)
    return err.value.code


@pytest.fixture
def sync(tmp_path: Path) -> SourceSync:
    return SourceSync(ContentStore(tmp_path / "store"))


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small file system (we run as root in CI); skipped only where mounting is not permitted."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)
