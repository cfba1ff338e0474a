"""Fetch one package content file into the agent's cache: resumable, hashed while it streams, and
refused before it starts when the cache's disk cannot hold it.

The cache holds ``<sha256>`` (complete and verified) and ``<sha256>.part`` (a download under way).
A partial file survives a network failure, so the next attempt -- in this call or the next
scenario's -- resumes with a ``Range`` request; it is deleted only when its content proves wrong.
Files are 0600 in a 0700 directory: a package may carry secrets, and other users need none of it.
Why 3x the size free: the file, what its installer unpacks beside it, and room for the machine to
keep working -- an install that fills the disk breaks more than the package.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dpm_schemas import E

SPACE_FACTOR = 3
CHUNK = 1 << 16
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
REFUSED = {401: "not authorised", 403: "forbidden", 404: "not found", 410: "gone"}

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retry_for``: seconds a download keeps trying after its last progress (a dropped connection,
    a 5xx or 429 answer); progress resets it, so a large file over a flaky link still arrives."""

    retry_for: float = 120.0
    first_delay: float = 0.5
    max_delay: float = 15.0
    timeout: float = 30.0  # connect and per-read

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.first_delay * 2.0**attempt) * random.uniform(0.75, 1.0)


class _Transient(Exception):
    """One attempt failed in a way worth another try; ``progressed``: the partial file grew."""

    def __init__(self, reason: str, progressed: bool = False) -> None:
        super().__init__(reason)
        self.progressed = progressed


async def download(
    url: str,
    *,
    token: str,
    sha256: str,
    size: int,
    cache_dir: Path,
    policy: RetryPolicy = RetryPolicy(),
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> Path:
    """The verified file ``cache_dir/<sha256>``, fetched unless already there. Raises DPM-E230 (no
    space), E231 (wrong hash or size; partial deleted), E232 (refused), E233 (gave up; partial kept),
    E237 (a hash or size the agent cannot use)."""
    sha256 = check_ref(sha256, size)
    cache = prepare_cache(cache_dir)
    final = cache / sha256
    if final.is_file():
        if digest_of(final) == (sha256, size):
            return final
        final.unlink()
    check_space(cache, size)
    part = cache / f"{sha256}.part"
    # identity: a Range counts bytes of the file itself, so no compression on the way
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    async with httpx.AsyncClient(headers=headers, timeout=policy.timeout, transport=transport) as client:
        hasher = await _with_retries(lambda: _attempt(client, url, part, size), url, policy, sleep, clock)
    verify(part, url, hasher.hexdigest(), sha256, size)
    os.replace(part, final)
    return final


def check_ref(sha256: str, size: int) -> str:
    """The hash in canonical lower case; it names a file, so nothing but 64 hex digits passes."""
    if not SHA256_HEX.match(sha256.lower()):
        raise E.PACKAGE_CONTENT_REF_INVALID(field="sha256", value=sha256, reason="not 64 hex digits")
    if size < 0:
        raise E.PACKAGE_CONTENT_REF_INVALID(field="size", value=size, reason="negative")
    return sha256.lower()


def prepare_cache(cache_dir: Path) -> Path:
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(cache_dir, 0o700)  # an existing directory too: the cache is the agent's alone
    return cache_dir


def check_space(cache: Path, size: int) -> None:
    """DPM-E230 unless the cache's file system has 3x ``size`` free (for unprivileged writers)."""
    free = shutil.disk_usage(cache).free
    needed = SPACE_FACTOR * size
    if free < needed:
        raise E.PACKAGE_DISK_SPACE(path=str(cache), free=free, size=size, needed=needed)


def digest_of(path: Path) -> tuple[str, int]:
    hasher = _hash_prefix(path, path.stat().st_size)
    return hasher.hexdigest(), path.stat().st_size


def verify(part: Path, url: str, actual: str, sha256: str, size: int) -> None:
    """DPM-E231, deleting the partial file, when its size or hash is not the package's."""
    have = _size(part)
    if have != size:
        part.unlink(missing_ok=True)
        raise E.PACKAGE_HASH_MISMATCH(url=url, algorithm="size", actual=f"{have} bytes", expected=f"{size} bytes")
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise E.PACKAGE_HASH_MISMATCH(url=url, algorithm="sha256", actual=actual, expected=sha256)


async def _with_retries(
    once: Callable[[], Awaitable[Any]], url: str, policy: RetryPolicy, sleep: Sleep, clock: Clock
) -> Any:
    """``once()`` until it succeeds; DPM-E233 when ``retry_for`` seconds pass without progress."""
    start = last_progress = clock()
    attempt = 0
    while True:
        try:
            return await once()
        except _Transient as exc:
            reason = str(exc)
            if exc.progressed:
                last_progress, attempt = clock(), 0
        delay = policy.delay(attempt)
        if clock() + delay > last_progress + policy.retry_for:
            raise E.PACKAGE_DOWNLOAD_FAILED(url=url, reason=reason, seconds=round(clock() - start))
        await sleep(delay)
        attempt += 1


async def _attempt(client: httpx.AsyncClient, url: str, part: Path, size: int) -> Any:
    """One GET, resuming ``part`` when it has bytes; the running hash of the whole file."""
    have = _resume_point(part, size)
    hasher = _hash_prefix(part, have)
    if have == size and have > 0:
        return hasher  # complete already (a previous call stopped before the rename)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with client.stream("GET", url, headers=headers) as response:
            resume = await _accept(response, url, part, have)
            if not resume:
                hasher = hashlib.sha256()
            await _save(response, part, hasher, have if resume else None, size)
    except httpx.TransportError as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}", _grew(part, have)) from exc
    got = _size(part)
    if got < size:
        raise _Transient(f"the server ended the file at {got} of {size} bytes", got > have)
    return hasher


async def _accept(response: httpx.Response, url: str, part: Path, have: int) -> bool:
    """Whether the answer continues ``part`` (206) or replaces it (200); raises for the rest."""
    status = response.status_code
    if status == 206 and have and response.headers.get("content-range", "").startswith(f"bytes {have}-"):
        return True
    if status == 200:
        return False
    if status in (206, 416):  # a range we did not ask for, or the file shrank: start over
        _discard(part)
        raise _Transient(f"HTTP {status} to a resume from byte {have}; starting over")
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status} {response.reason_phrase}")
    await response.aread()
    reason = REFUSED.get(status, response.reason_phrase or "unexpected answer")
    raise E.PACKAGE_DOWNLOAD_REFUSED(url=url, status=status, reason=reason)


async def _save(response: httpx.Response, part: Path, hasher: Any, start: int | None, size: int) -> None:
    """Stream the body into ``part`` (0600; appended from ``start``, or from scratch when None),
    hashing as it goes; never more than ``size`` bytes."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if start is None else os.O_APPEND)
    fd = os.open(part, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        written = start or 0
        async for chunk in response.aiter_raw():  # as it arrives: a cut loses nothing received
            f.write(chunk)
            hasher.update(chunk)
            written += len(chunk)
            if written > size:
                break  # too long: verify() refuses it; no need to fill the disk first


def _hash_prefix(path: Path, length: int) -> Any:
    hasher = hashlib.sha256()
    if length:
        with path.open("rb") as f:
            while length and (block := f.read(min(CHUNK, length))):
                hasher.update(block)
                length -= len(block)
    return hasher


def _grew(part: Path, have: int) -> bool:
    return _size(part) > have


def _size(part: Path) -> int:
    return part.stat().st_size if part.exists() else 0


def _resume_point(part: Path, size: int) -> int:
    """How many bytes of ``part`` to keep: all of them, unless it is longer than the file can be."""
    have = _size(part)
    if have > size:
        _discard(part)
        return 0
    return have


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
