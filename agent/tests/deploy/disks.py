"""Real disk images for the deploy client's tests, built with the tools an administrator would use
(sfdisk, sgdisk, mkfs.ext4 -d, mkfs.vfat + mcopy) -- never with our own code."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

TOOLS = ("sfdisk", "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "debugfs", "e2fsck", "fsck.vfat", "dumpe2fs")
need_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason=f"needs {', '.join(TOOLS)} (Debian: fdisk gdisk e2fsprogs dosfstools mtools)",
)


def run(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, check=True).stdout


def blank(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def sfdisk(target: str, script: str) -> None:
    run("sfdisk", "-q", "--no-reread", "--no-tell-kernel", target, stdin=script)


def sfdisk_json(target: str) -> dict:
    return json.loads(run("sfdisk", "--json", target))["partitiontable"]


def sha256(path: Path | str, length: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = length if length is not None else 1 << 62
        while left > 0 and (block := f.read(min(1 << 22, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


@contextlib.contextmanager
def loop(path: Path, sector_size: int) -> Iterator[str]:
    """A loop device over ``path`` with ``sector_size`` logical sectors (the only way to get a real
    4096-byte-sector disk without hardware); skips the test where loop devices are unavailable."""
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip("needs root and loop devices for a 4096-byte-sector disk")
    try:
        dev = run("losetup", "--sector-size", str(sector_size), "-f", "--show", str(path)).strip()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"losetup failed: {exc.stderr.strip()}")
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def tree(root: Path, seed: int = 0) -> Path:
    """A small directory tree with text, binary and empty files, to copy into filesystems."""
    import random

    rnd = random.Random(seed)
    (root / "etc").mkdir(parents=True)
    (root / "data" / "deep").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("lab-machine\n")
    (root / "data" / "blob.bin").write_bytes(rnd.randbytes(700_000))
    (root / "data" / "deep" / "notes.txt").write_text("restore me\n" * 5000)
    (root / "data" / "empty").write_bytes(b"")
    return root


def mkext4(image: Path, offset: int, size: int, content: Path, block: int = 4096) -> None:
    opts = ["-q", "-F", "-b", str(block), "-E", f"offset={offset}", "-d", str(content)]
    run("mkfs.ext4", *opts, str(image), f"{size // 1024}k")


def mkvfat(image: Path, offset: int, size: int, content: Path, sector_size: int = 512) -> None:
    run("mkfs.vfat", "-S", str(sector_size), "--offset", str(offset // sector_size), str(image), str(size // 1024))
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for f in sorted(content.rglob("*")):
        rel = f.relative_to(content).as_posix()
        cmd = ["mmd"] if f.is_dir() else ["mcopy", str(f)]
        subprocess.run([*cmd, "-i", f"{image}@@{offset}", f"::/{rel}"], check=True, env=env, capture_output=True)


NTFS_TOOLS = ("mkntfs", "ntfscp", "ntfscat", "losetup")
need_ntfs = pytest.mark.skipif(
    any(shutil.which(t) is None for t in NTFS_TOOLS) or os.geteuid() != 0,
    reason="needs root (a loop device) and ntfs-3g's mkntfs, ntfscp, ntfscat",
)


def mkntfs(image: Path, offset: int, size: int, content: Path) -> None:
    """NTFS built in a file of its own (mkntfs, ntfscp: no mount), then placed at ``offset``."""
    part = image.with_name(image.name + ".ntfs")
    blank(part, size)
    run("mkntfs", "-F", "-Q", "-q", "-s", "512", "-p", str(offset // 512), "-H", "255", "-S", "63", str(part))
    for f in sorted(content.rglob("*")):
        if f.is_file():
            run("ntfscp", "-f", str(part), str(f), "/" + f.name)
    with open(image, "r+b") as dst:
        dst.seek(offset)
        dst.write(part.read_bytes())
    part.unlink()


def ntfs_files(image: Path, offset: int, size: int, names: list[str], out: Path) -> dict[str, str]:
    part = extract(image, offset, size, out)
    found = {}
    for name in names:
        data = subprocess.run(["ntfscat", str(part), "/" + name], capture_output=True, check=True).stdout
        found[name] = hashlib.sha256(data).hexdigest()
    return found


def extract(image: Path, offset: int, size: int, out: Path) -> Path:
    """The bytes of one partition as a file of their own (fsck.vfat takes no offset)."""
    with open(image, "rb") as src, open(out, "wb") as dst:
        src.seek(offset)
        left = size
        while left:
            block = src.read(min(1 << 22, left))
            dst.write(block)
            left -= len(block)
    return out


def ext_files(image: Path, offset: int, out: Path) -> dict[str, str]:
    """Every file of an ext filesystem, dumped by debugfs, as {path: sha256}."""
    out.mkdir()
    run("debugfs", "-R", f"rdump / {out}", f"{image}?offset={offset}")
    return _hashes(out)


def fat_files(image: Path, offset: int, out: Path) -> dict[str, str]:
    out.mkdir()
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    cmd = ["mcopy", "-s", "-i", f"{image}@@{offset}", "::/*", str(out)]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return _hashes(out)


def _hashes(root: Path) -> dict[str, str]:
    return {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file() and "lost+found" not in f.parts
    }
