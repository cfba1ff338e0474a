"""Build dpm's deploy environment -- a kernel and an initramfs with Python 3.11 and the deploy
client -- from Debian packages and the repository, without root, chroot or debootstrap.

    python3 deploy/deploy-os/build.py --out var/boot/deploy [--cache var/cache/deploy-os]

Debian's generic kernel with the drivers of common server hardware (NICs and storage controllers,
below; the cloud kernel has virtio and little else), loaded at boot by the hardware present (the
devices' modalias against the drivers' aliases, written here); busybox for /init and DHCP, Debian's
python3.11, e2fsprogs and ntfs-3g (dumpe2fs and ntfscat: the used blocks of ext and NTFS
filesystems), and the deploy client with its wheels. The standard library is precompiled with
unchecked-hash .pyc (a boot never recompiles it), and the cpio is written here (fixed owners and
times: the same inputs give the same archive). Writes vmlinuz, initrd.img and build.json (the
package versions) to --out; a second run with the same versions reuses the cache and is quick.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KERNEL_META = "linux-image-amd64"
USERLAND = [
    "busybox-static",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libgcc-s1",
    "libssl3",
    "libffi8",
    "zlib1g",
    "libexpat1",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
    "libsqlite3-0",
    "media-types",
    "e2fsprogs",
    "libext2fs2",
    "libcom-err2",
    "libblkid1",
    "libss2",
    "ntfs-3g",  # ntfscat: the NTFS cluster bitmap for used-sector backups
    "libntfs-3g89",
]
# Drivers carried (with what they depend on); /init loads those whose aliases match a device.
NICS = ["e1000", "e1000e", "igb", "ixgbe", "i40e", "ice", "bnxt_en", "mlx5_core", "tg3", "r8169", "8139too", "8139cp",
        "vmxnet3", "virtio_net"]  # fmt: skip
STORAGE = ["ahci", "nvme", "megaraid_sas", "mpt3sas", "hpsa", "smartpqi", "virtio_blk", "virtio_scsi", "sd_mod"]
MODULES = ["virtio_pci", "virtio-rng", *NICS, *STORAGE]
OPTIONS = {"scsi_mod": "scan=sync"}  # a SCSI host's disks exist once its driver is loaded
PRUNE = [
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/python3.11/test", "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/tkinter", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/unittest/test",
]  # fmt: skip
PY_PACKAGES = [REPO / "schemas", REPO / "libs" / "imagefmt", REPO / "agent"]


def log(msg: str) -> None:
    print(f"[deploy-os] {msg}", flush=True)


def sh(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def kernel_package() -> str:
    out = sh("apt-cache", "depends", KERNEL_META)
    found = re.search(r"Depends: (linux-image-\S+)", out)
    if not found:
        raise SystemExit(f"cannot resolve {KERNEL_META}: {out}")
    return found.group(1)


def download(packages: list[str], debs: Path) -> list[Path]:
    debs.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
    if wanted:
        try:
            sh("apt-get", "download", *wanted, cwd=debs)
        except subprocess.CalledProcessError:  # stale package lists: refresh once
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            sh("apt-get", "download", *wanted, cwd=debs)
    return [next(iter(sorted(debs.glob(f"{p}_*.deb")))) for p in packages]


def extract(deb: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    sh("dpkg-deb", "-x", deb, root)


def install_python(root: Path) -> None:
    site = root / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    base = [uv, "pip", "install"] if uv else [sys.executable, "-m", "pip", "install"]
    # --link-mode copy: uv would hard-link files from its cache, and stripping them below would then
    # rewrite the very libraries every virtualenv on this machine shares with that cache.
    extra = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28", "--quiet", "--link-mode", "copy"]
    extra = extra if uv else []
    # Our packages as copies (a workspace would install them editable, pointing back at the repo),
    # then their third-party dependencies at the versions the repository pins.
    sh(*base, *extra, "--no-deps", "--target", site, *PY_PACKAGES)
    deps, pins = [], tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["constraint-dependencies"]
    for pkg in PY_PACKAGES:
        deps += [d for d in tomllib.loads((pkg / "pyproject.toml").read_text())["project"]["dependencies"]
                 if not d.startswith("dpm-")]  # fmt: skip
    constraints = root.parent / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    sh(*base, *extra, "--target", site, "-c", constraints, *sorted(set(deps)))
    for junk in [*site.glob("*/tests"), *site.glob("zstandard/_cffi*.so"), *site.glob("*/py.typed")]:
        if junk.is_dir():
            shutil.rmtree(junk, ignore_errors=True)
        else:
            junk.unlink()
    if shutil.which("strip"):  # wheels ship symbols; the deploy environment has no debugger
        for so in site.rglob("*.so"):
            subprocess.run(["strip", "--strip-unneeded", str(so)], check=False, capture_output=True)


def compile_stdlib(root: Path) -> None:
    """Precompile with the target interpreter itself, unchecked-hash, forced (research: deploy-os.md §2)."""
    loader = root / "lib64/ld-linux-x86-64.so.2"
    libs = f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu"
    env = {"PYTHONHOME": str(root / "usr"), "PATH": os.environ.get("PATH", "")}
    targets = [root / "usr/lib/python3.11", root / "usr/lib/python3/dist-packages"]
    sh(loader, "--library-path", libs, root / "usr/bin/python3.11", "-I", "-B", "-m", "compileall", "-q", "-f",
       "-j0", "--invalidation-mode", "unchecked-hash", "-s", root, "-p", "/", *targets, env=env)  # fmt: skip


def modules(kroot: Path, root: Path) -> list[str]:
    """Copy the drivers we carry (and what they depend on, from each module's .modinfo), write the
    tables /init loads them by (``modules.dep``, ``modules.alias``, ``modules.options``), and return
    their load order; the kernel package has no modules.dep (depmod runs at install time)."""
    release = next((kroot / "lib/modules").iterdir()).name
    found = {_modname(p): p for p in (kroot / "lib/modules" / release).rglob("*.ko*")}
    order: list[str] = []
    deps_of: dict[str, list[str]] = {}
    aliases: list[str] = []

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        path = found.get(key)
        if path is None or key in order:
            return
        data = _ko_bytes(path)
        deps = re.search(rb"depends=([^\0]*)\0", data)
        named = deps.group(1).decode().split(",") if deps and deps.group(1) else []
        deps_of[key] = [d.replace("-", "_") for d in named]
        for dep in deps_of[key]:
            visit(dep)
        (root / "lib/modules").mkdir(parents=True, exist_ok=True)
        (root / "lib/modules" / f"{key}.ko").write_bytes(data)
        order.append(key)
        aliases.extend(f"{alias_regex(a.decode())} {key}" for a in re.findall(rb"(?:^|\0)alias=([^\0]+)", data))

    for name in MODULES:
        visit(name)
    missing = [m for m in MODULES if m.replace("-", "_") not in order]
    if missing:
        raise SystemExit(f"{KERNEL_META} lacks the drivers {missing}")
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "modules.dep").write_text("".join(f"{m} {' '.join(d for d in deps_of[m] if d in order)}\n" for m in order))
    (etc / "modules.alias").write_text("\n".join(aliases) + "\n")
    (etc / "modules.options").write_text("".join(f"{m} {o}\n" for m, o in OPTIONS.items()))
    return order


def alias_regex(pattern: str) -> str:
    """A module alias (a shell glob over a device's modalias) as an anchored awk regular expression."""
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "." if ch == "?" else "\\" + ch if ch in ".^$+(){}|\\/" else ch)
    return "^" + "".join(out) + "$"


def _modname(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def _ko_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=64 << 20)
    return data


def populate(root: Path, order: list[str]) -> None:
    bb = root / "bin/busybox"
    for applet in sh(bb, "--list-full").split():
        link = root / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(bb, link.parent))
    py = root / "usr/bin/python3"
    if not py.exists():
        py.symlink_to("python3.11")
    shutil.copy(HERE / "init", root / "init")
    (root / "init").chmod(0o755)
    (root / "usr/share/udhcpc").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "udhcpc.script", root / "usr/share/udhcpc/default.script")
    (root / "usr/share/udhcpc/default.script").chmod(0o755)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "modules.order").write_text("\n".join(order) + "\n")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    for d in ("dev", "proc", "sys", "tmp", "root", "run"):
        (root / d).mkdir(exist_ok=True)


def record(root: Path, kroot: Path) -> None:
    """What the deploy client reports at its first step: the kernel and the unpacked initramfs size."""
    release = next((kroot / "lib/modules").iterdir()).name
    size = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    (root / "etc/dpm-deploy.json").write_text(json.dumps({"kernel": release, "unpacked_bytes": size}) + "\n")


def prune(root: Path) -> None:
    for rel in PRUNE:
        shutil.rmtree(root / rel, ignore_errors=True)


def cpio(root: Path, out: Path) -> None:
    """A ``newc`` archive of ``root`` with owner 0 and a fixed mtime, plus /dev/console and
    /dev/null as device nodes (no mknod, no root needed)."""
    ino = 0

    def entry(f, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal ino
        ino += 1
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        f.write(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        f.write(b"\0" * (-(110 + len(encoded)) % 4))
        f.write(data)
        f.write(b"\0" * (-len(data) % 4))

    with open(out, "wb") as f:
        for path in sorted(root.rglob("*")):
            name = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entry(f, name, stat.S_IFLNK | 0o777, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                entry(f, name, stat.S_IFDIR | 0o755)
            elif stat.S_ISREG(st.st_mode):
                entry(f, name, stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644), path.read_bytes())
        entry(f, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        entry(f, "dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))
        entry(f, "TRAILER!!!", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "var/boot/deploy")
    ap.add_argument("--cache", type=Path, default=REPO / "var/cache/deploy-os")
    ap.add_argument("--level", type=int, default=3, help="zstd level of the initramfs")
    args = ap.parse_args()
    started = time.monotonic()
    kernel = kernel_package()
    debs = download([kernel, *USERLAND], args.cache / "debs")
    versions = {d.name.split("_")[0]: d.name.split("_")[1] for d in debs}
    sources = hashlib.sha256()
    for pkg in PY_PACKAGES:
        for f in sorted(pkg.rglob("*.py")) + sorted(pkg.rglob("pyproject.toml")):
            if "tests" not in f.parts:
                sources.update(f.read_bytes())
    for f in (HERE / "init", HERE / "udhcpc.script", Path(__file__)):
        sources.update(f.read_bytes())
    key = {"packages": versions, "sources": sources.hexdigest(), "level": args.level}
    done = args.out / "build.json"
    if done.exists() and json.loads(done.read_text()).get("key") == key:
        log(f"up to date in {args.out}")
        return
    work = args.cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    root, kroot = work / "rootfs", work / "kernel"
    for deb in debs[1:]:
        extract(deb, root)
    extract(debs[0], kroot)
    log(f"extracted {len(debs)} packages ({time.monotonic() - started:.1f} s)")
    prune(root)
    install_python(root)
    log(f"deploy client installed ({time.monotonic() - started:.1f} s)")
    order = modules(kroot, root)
    populate(root, order)
    try:
        compile_stdlib(root)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"precompiling skipped ({exc}); the first boot compiles instead")
    record(root, kroot)
    raw = work / "initrd.cpio"
    cpio(root, raw)
    args.out.mkdir(parents=True, exist_ok=True)
    initrd = args.out / "initrd.img"
    sh("zstd", "-q", "-f", f"-{args.level}", "-T0", raw, "-o", initrd)
    vmlinuz = next((kroot / "boot").glob("vmlinuz-*"))
    shutil.copy(vmlinuz, args.out / "vmlinuz")
    done.write_text(json.dumps({"key": key, "kernel": vmlinuz.name, "modules": order}, indent=2))
    log(f"{args.out}: vmlinuz {vmlinuz.stat().st_size >> 20} MiB, initrd {initrd.stat().st_size >> 20} MiB "
        f"({raw.stat().st_size >> 20} MiB raw), {time.monotonic() - started:.1f} s")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
