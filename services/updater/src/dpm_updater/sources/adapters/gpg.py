"""The repository's signature, checked with gpgv against the one configured key.

gpgv (not gpg) because it trusts exactly the keyring it is given and keeps no state: no trust
database, no home directory shared with anything else. What the sync parses is gpgv's own output of
the signed text (or, with a detached signature, the very bytes that were verified), so text outside
the signed block of an InRelease can never reach the parser. An armoured key is converted once per
check with ``gpg --dearmor`` into a keyring in a private temporary directory."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from dpm_schemas import E

TIMEOUT = 60.0
_ARMOUR = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"


def verify_clearsigned(data: bytes, key_file: Path, *, source: str, file: str = "InRelease") -> bytes:
    """The signed text of a clearsigned ``data`` (DPM-E262/E263/E264)."""
    with tempfile.TemporaryDirectory(prefix="dpm-gpgv-") as tmp:
        work = Path(tmp)
        signed, out = work / "InRelease", work / "verified"
        signed.write_bytes(data)
        _gpgv(work, key_file, ["--output", str(out), str(signed)], source=source, file=file)
        return out.read_bytes()


def verify_detached(data: bytes, signature: bytes, key_file: Path, *, source: str, file: str = "Release") -> bytes:
    """``data`` itself once ``signature`` (Release.gpg) verifies over it (DPM-E262/E263/E264)."""
    with tempfile.TemporaryDirectory(prefix="dpm-gpgv-") as tmp:
        work = Path(tmp)
        (work / "Release").write_bytes(data)
        (work / "Release.gpg").write_bytes(signature)
        _gpgv(work, key_file, [str(work / "Release.gpg"), str(work / "Release")], source=source, file=file)
        return data


def _gpgv(work: Path, key_file: Path, args: list[str], *, source: str, file: str) -> None:
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise E.SOURCE_VERIFY_UNAVAILABLE(source=source, reason="gpgv is not installed")
    keyring = _keyring(work, key_file, source=source)
    status = _run([gpgv, "--status-fd", "1", "--keyring", str(keyring), *args], source=source)
    _judge(status, source=source, file=file)


def _judge(status: str, *, source: str, file: str) -> None:
    """gpgv's verdict from its status lines: a GOODSIG and a VALIDSIG and nothing bad."""
    tokens = {line.split()[1] for line in status.splitlines() if line.startswith("[GNUPG:] ") and len(line.split()) > 1}
    if "NODATA" in tokens and "GOODSIG" not in tokens:
        raise E.SOURCE_SIGNATURE_MISSING(source=source, reason=f"{file} carries no OpenPGP signature")
    bad = tokens & {"BADSIG", "ERRSIG", "NO_PUBKEY", "EXPKEYSIG", "REVKEYSIG", "EXPSIG"}
    if bad or not {"GOODSIG", "VALIDSIG"} <= tokens:
        detail = ", ".join(sorted(bad)) or "no good signature"
        if "NO_PUBKEY" in tokens:
            detail = "signed by another key (NO_PUBKEY)"
        raise E.SOURCE_SIGNATURE_BAD(source=source, file=file, reason=detail)


def _keyring(work: Path, key_file: Path, *, source: str) -> Path:
    try:
        key = key_file.read_bytes()
    except OSError as exc:
        raise E.SOURCE_VERIFY_UNAVAILABLE(source=source, reason=f"cannot read the key {key_file}: {exc}") from None
    keyring = work / "keyring.gpg"
    if _ARMOUR not in key:
        keyring.write_bytes(key)
        return _checked(keyring, key_file, source=source)
    gpg = shutil.which("gpg")
    if gpg is None:
        raise E.SOURCE_VERIFY_UNAVAILABLE(source=source, reason="the key is armoured and gpg (to dearmor) is missing")
    (work / "home").mkdir(mode=0o700)
    argv = [gpg, "--batch", "--homedir", str(work / "home"), "--output", str(keyring), "--dearmor", str(key_file)]
    _run(argv, source=source, check=True)
    return _checked(keyring, key_file, source=source)


def _checked(keyring: Path, key_file: Path, *, source: str) -> Path:
    """The keyring, if it starts with an OpenPGP public-key packet (tag 6, old or new format): gpgv
    would otherwise report any signature as made by an unknown key, blaming the repository."""
    head = keyring.read_bytes()[:1] if keyring.is_file() else b""
    ctb = head[0] if head else 0
    tag = (ctb & 0x3F) if ctb & 0x40 else (ctb >> 2) & 0x0F
    if not ctb & 0x80 or tag != 6:
        raise E.SOURCE_VERIFY_UNAVAILABLE(source=source, reason=f"{key_file} holds no OpenPGP public key")
    return keyring


def _run(argv: list[str], *, source: str, check: bool = False) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise E.SOURCE_VERIFY_UNAVAILABLE(source=source, reason=f"{Path(argv[0]).name}: {exc}") from None
    if check and done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-200:]
        raise E.SOURCE_VERIFY_UNAVAILABLE(source=source, reason=f"{Path(argv[0]).name} failed: {message}")
    return done.stdout.decode(errors="replace")
