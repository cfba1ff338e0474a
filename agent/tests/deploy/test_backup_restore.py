"""Backup then restore with real disks and real filesystems, against a real chunk store on disk."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from agent.tests.deploy.disks import (
    blank,
    ext_files,
    extract,
    fat_files,
    loop,
    mkext4,
    mkntfs,
    mkvfat,
    need_ntfs,
    need_tools,
    ntfs_files,
    sfdisk,
    sha256,
    tree,
)
from dpm_agent.deploy.backup import backup
from dpm_agent.deploy.device import open_device
from dpm_agent.deploy.layout import read_layout
from dpm_agent.deploy.restore import preflight, restore
from dpm_imagefmt.manifest import Manifest
from dpm_imagefmt.store import DirStore
from dpm_schemas import DpmError

pytestmark = need_tools
MiB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> DirStore:
    return DirStore(tmp_path / "store").open()


def _filled(tmp_path: Path, label: str, sector_size: int = 512, size: int = 48 * MiB) -> Path:
    """A disk with an ESP (FAT), a root (ext4), and random bytes in the gap before the first
    partition (boot code a used-sector backup must keep)."""
    disk = blank(tmp_path / f"{label}-{sector_size}.img", size)
    script = f"label: {label}\nsize=12MiB, type={'uefi' if label == 'gpt' else 'ef'}\nsize=24MiB, type=L\n"
    if sector_size == 512:
        sfdisk(str(disk), script)
    else:
        with loop(disk, sector_size) as dev:
            sfdisk(dev, script)
    layout = read_layout(open_device(str(disk), sector_size))
    esp, root = layout.partitions
    content = tree(tmp_path / f"content-{label}-{sector_size}")
    mkvfat(disk, esp.start * sector_size, esp.size * sector_size, content, sector_size)
    mkext4(disk, root.start * sector_size, root.size * sector_size, content)
    with open(disk, "r+b") as f:
        f.seek(sector_size * 40 if label == "gpt" else 512 * 3)
        f.write(random.Random(7).randbytes(4096))
    return disk


def _roundtrip(src: Path, dst: Path, store: DirStore, mode: str, sector_size: int, partition: int | None = None):
    dev = open_device(str(src), sector_size)
    manifest, stats = backup(dev, read_layout(dev), store, mode=mode, partition=partition)
    manifest = Manifest.decode(manifest.encode())  # what the imager keeps is what a restore gets
    target = preflight(manifest, read_layout(open_device(str(dst), sector_size)), partition=partition)
    restore(str(dst), target, manifest, store)
    return manifest, stats


@pytest.mark.parametrize(("label", "sector_size"), [("dos", 512), ("gpt", 512), ("gpt", 4096), ("dos", 4096)])
def test_full_sector_round_trip_is_byte_identical(tmp_path: Path, store: DirStore, label: str, sector_size: int):
    src = _filled(tmp_path, label, sector_size)
    size = src.stat().st_size
    same = blank(tmp_path / "same.img", size)
    _roundtrip(src, same, store, "full", sector_size)
    assert sha256(same) == sha256(src)
    larger = blank(tmp_path / "larger.img", size + 16 * MiB)
    with open(larger, "r+b") as f:  # a used disk, not a blank one: zeros must be written as zeros
        f.write(b"\xa5" * (size + 16 * MiB))
    _roundtrip(src, larger, store, "full", sector_size)
    assert sha256(larger, size) == sha256(src)
    assert larger.stat().st_blocks * 512 < size  # its zero runs became holes: the file is sparse again


@pytest.mark.parametrize(("label", "sector_size"), [("gpt", 512), ("dos", 512), ("gpt", 4096)])
def test_used_sector_round_trip_gives_a_clean_filesystem_with_identical_files(
    tmp_path: Path, store: DirStore, label: str, sector_size: int
):
    src = _filled(tmp_path, label, sector_size)
    dst = blank(tmp_path / "dst.img", src.stat().st_size)
    with open(dst, "r+b") as f:  # garbage where the source had free blocks: they are not restored
        f.write(random.Random(3).randbytes(src.stat().st_size))
    manifest, _ = _roundtrip(src, dst, store, "used", sector_size)
    assert manifest.captured_bytes < src.stat().st_size * 0.6  # free blocks were skipped
    esp, root = read_layout(open_device(str(src), sector_size)).partitions
    ss = sector_size
    subprocess.run(["e2fsck", "-fn", f"{dst}?offset={root.start * ss}"], check=True, capture_output=True)
    part = extract(dst, esp.start * ss, esp.size * ss, tmp_path / "esp.bin")
    subprocess.run(["fsck.vfat", "-n", str(part)], check=True, capture_output=True)
    assert ext_files(dst, root.start * ss, tmp_path / "x1") == ext_files(src, root.start * ss, tmp_path / "x2")
    assert fat_files(dst, esp.start * ss, tmp_path / "f1") == fat_files(src, esp.start * ss, tmp_path / "f2")
    assert len(ext_files(src, root.start * ss, tmp_path / "x3")) == 4


@need_ntfs
def test_used_sector_ntfs_takes_the_cluster_bitmap_and_restores_identical_files(tmp_path: Path, store: DirStore):
    disk = blank(tmp_path / "win.img", 64 * MiB)
    sfdisk(str(disk), "label: dos\nsize=48MiB, type=7\n")
    content = tree(tmp_path / "content")
    mkntfs(disk, MiB, 48 * MiB, content)
    with open(disk, "r+b") as f:  # old data in the free clusters: a used-sector backup leaves it out
        f.seek(30 * MiB)
        f.write(random.Random(6).randbytes(8 * MiB))
    dev = open_device(str(disk))
    layout = read_layout(dev)
    assert layout.partitions[0].filesystem == "ntfs"
    manifest, _ = backup(dev, layout, store, mode="used")
    assert manifest.captured_bytes < 24 * MiB  # of a 64 MiB disk with a 48 MiB NTFS holding ~1 MiB of files
    dst = blank(tmp_path / "dst.img", 64 * MiB)
    with open(dst, "r+b") as f:
        f.write(random.Random(4).randbytes(64 * MiB))
    restore(str(dst), preflight(manifest, read_layout(open_device(str(dst)))), manifest, store)
    names = [f.name for f in sorted(content.rglob("*")) if f.is_file()]
    assert ntfs_files(dst, MiB, 48 * MiB, names, tmp_path / "a.bin") == ntfs_files(
        disk, MiB, 48 * MiB, names, tmp_path / "b.bin"
    )


def test_partition_backup_restores_onto_another_disks_partition(tmp_path: Path, store: DirStore) -> None:
    src = _filled(tmp_path, "gpt")
    dst = blank(tmp_path / "other.img", 64 * MiB)
    sfdisk(str(dst), "label: gpt\nsize=4MiB, type=L\nsize=12MiB, type=uefi\nsize=30MiB, type=L\n")
    layout = read_layout(open_device(str(dst)))
    untouched = layout.partitions[1]
    before = sha256(extract(dst, untouched.start * 512, untouched.size * 512, tmp_path / "p2-before.bin"))
    dev = open_device(str(src))
    manifest, _ = backup(dev, read_layout(dev), store, mode="used", partition=2)  # the source's ext4 root
    restore(str(dst), preflight(manifest, layout, partition=3), manifest, store)  # onto a larger Linux slot
    root = layout.partitions[2]
    subprocess.run(["e2fsck", "-fn", f"{dst}?offset={root.start * 512}"], check=True, capture_output=True)
    src_root = read_layout(dev).partitions[1]
    assert ext_files(dst, root.start * 512, tmp_path / "a") == ext_files(src, src_root.start * 512, tmp_path / "b")
    after = sha256(extract(dst, untouched.start * 512, untouched.size * 512, tmp_path / "p2-after.bin"))
    assert after == before


def test_preflight_refuses_before_any_write(tmp_path: Path, store: DirStore) -> None:
    src = _filled(tmp_path, "gpt")
    dev = open_device(str(src))
    disk_image, _ = backup(dev, read_layout(dev), store, mode="used")
    part_image, _ = backup(dev, read_layout(dev), store, mode="full", partition=2)

    def refused(target: Path, manifest: Manifest, partition: int | None = None, sector_size: int = 512) -> str:
        before = sha256(target)
        with pytest.raises(DpmError) as err:
            layout = read_layout(open_device(str(target), sector_size))
            restore(str(target), preflight(manifest, layout, partition=partition), manifest, store)
        assert sha256(target) == before, "a refused restore wrote to the target"
        return err.value.code

    small = blank(tmp_path / "small.img", 32 * MiB)
    assert refused(small, disk_image) == "DPM-E152"  # target too small
    mbr = blank(tmp_path / "mbr.img", 64 * MiB)
    sfdisk(str(mbr), "label: dos\nsize=30MiB, type=83\n")
    assert refused(mbr, part_image, partition=1) == "DPM-E156"  # GPT image onto an MBR disk
    gpt = blank(tmp_path / "gpt.img", 64 * MiB)
    sfdisk(str(gpt), "label: gpt\nsize=10MiB, type=L\nsize=30MiB, type=uefi\n")
    assert refused(gpt, part_image, partition=1) == "DPM-E153"  # 10 MiB < 24 MiB
    assert refused(gpt, part_image, partition=2) == "DPM-E154"  # ESP type, not Linux
    assert refused(gpt, part_image, partition=7) == "DPM-E151"  # no partition 7
    assert refused(gpt, disk_image, sector_size=4096) == "DPM-E155"  # 512-byte image, 4096-byte disk
    with pytest.raises(DpmError) as err:
        open_device(str(tmp_path / "absent.img"))
    assert err.value.code == "DPM-E150"


def test_corrupt_chunk_is_named_and_nothing_past_it_is_trusted(tmp_path: Path, store: DirStore) -> None:
    src = blank(tmp_path / "r.img", 8 * MiB)
    src.write_bytes(random.Random(1).randbytes(8 * MiB))
    dev = open_device(str(src))
    manifest, _ = backup(dev, read_layout(dev), store)
    victim = manifest.extents[3].chunk
    assert victim is not None
    path = store.path(victim)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit in the stored blob
    path.write_bytes(bytes(blob))
    with pytest.raises(Exception) as bad:
        store.verify(victim)
    assert victim in str(bad.value)
    dst = blank(tmp_path / "d.img", 8 * MiB)
    with pytest.raises(DpmError) as err:
        restore(str(dst), preflight(manifest, read_layout(open_device(str(dst)))), manifest, store, image="lab/r")
    assert err.value.code == "DPM-E157" and victim in err.value.message


def test_dedup_across_disks_and_an_unchanged_second_backup(tmp_path: Path, store: DirStore) -> None:
    rnd = random.Random(5)
    a = rnd.randbytes(96 * MiB)
    b = bytearray(a)
    for start in (10 * MiB, 60 * MiB):  # 10 % of B differs from A, in two places
        b[start : start + 48 * MiB // 10] = rnd.randbytes(48 * MiB // 10)
    disk_a, disk_b = tmp_path / "a.img", tmp_path / "b.img"
    disk_a.write_bytes(a)
    disk_b.write_bytes(bytes(b))

    def stored() -> int:
        return sum(f.stat().st_size for f in store.chunks.rglob("*") if f.is_file())

    dev_a = open_device(str(disk_a))
    backup(dev_a, read_layout(dev_a), store)
    one = stored()
    dev_b = open_device(str(disk_b))
    _, stats_b = backup(dev_b, read_layout(dev_b), store)
    ratio = stored() / one
    assert ratio < 1.2, f"two 90 %-alike disks take {ratio:.2f}x of one"
    assert stats_b.reused_chunks > stats_b.sent_chunks
    _, again = backup(dev_a, read_layout(dev_a), store)
    assert again.sent_chunks == 0 and again.sent_bytes == 0


def test_a_failed_backup_stores_no_manifest_and_the_old_one_still_restores(tmp_path: Path, store: DirStore):
    src = tmp_path / "s.img"
    src.write_bytes(random.Random(2).randbytes(8 * MiB))
    dev = open_device(str(src))
    old, _ = backup(dev, read_layout(dev), store)
    with open(src, "r+b") as f:
        f.write(random.Random(9).randbytes(4 * MiB))

    class Failing:
        def __init__(self) -> None:
            self.puts = 0

        def missing(self, ids):
            return store.missing(ids)

        def put(self, chunk: str, blob: bytes) -> None:
            self.puts += 1
            if self.puts > 2:
                raise ConnectionError("server went away")
            store.put(chunk, blob)

        def get(self, chunk: str) -> bytes:
            return store.get(chunk)

        def put_many(self, items: list[tuple[str, bytes]]) -> None:
            for cid, blob in items:
                self.put(cid, blob)

        def get_many(self, chunks: list[str]) -> list[bytes]:
            return store.get_many(chunks)

    with pytest.raises(ConnectionError):
        backup(dev, read_layout(dev), Failing())
    dst = blank(tmp_path / "d.img", 8 * MiB)
    restore(str(dst), preflight(old, read_layout(open_device(str(dst)))), old, store)
    assert sha256(dst) == old_sha(tmp_path, old, store)


def old_sha(tmp_path: Path, manifest: Manifest, store: DirStore) -> str:
    out = blank(tmp_path / "again.img", manifest.size)
    restore(str(out), preflight(manifest, read_layout(open_device(str(out)))), manifest, store)
    return sha256(out)


def test_a_gpt_restored_onto_a_larger_disk_can_have_its_backup_moved_to_the_end(tmp_path: Path, store: DirStore):
    src = _filled(tmp_path, "gpt")
    dev = open_device(str(src))
    manifest, _ = backup(dev, read_layout(dev), store, mode="full")
    dst = blank(tmp_path / "big.img", 80 * MiB)
    restore(str(dst), preflight(manifest, read_layout(open_device(str(dst)))), manifest, store, grow_table=True)
    verdict = subprocess.run(["sgdisk", "-v", str(dst)], capture_output=True, text=True)
    assert "No problems found" in verdict.stdout, verdict.stdout
    grown, original = read_layout(open_device(str(dst))), read_layout(dev)
    assert grown.last_lba == 80 * MiB // 512 - 34 and grown.partitions == original.partitions
    for p in original.partitions:  # the partitions' bytes are the image's
        a = extract(src, p.start * 512, p.size * 512, tmp_path / "a.bin")
        b = extract(dst, p.start * 512, p.size * 512, tmp_path / "b.bin")
        assert sha256(a) == sha256(b)
    plain = blank(tmp_path / "plain.img", 80 * MiB)
    restore(str(plain), preflight(manifest, read_layout(open_device(str(plain)))), manifest, store)
    warned = subprocess.run(["sgdisk", "-v", str(plain)], capture_output=True, text=True).stdout
    assert "No problems found" not in warned  # without it the backup header sits where the source ended
