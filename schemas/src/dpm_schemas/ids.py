"""Stream ids from natural keys, so every service derives the same id without a lookup race."""

from __future__ import annotations

import re
import uuid

# A fixed namespace for dpm's name-based UUIDs. Never change it: stored stream ids depend on it.
NAMESPACE = uuid.UUID("6f1c3a52-8e0b-5d1e-9c7a-2b4d6e8f0a13")

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$", re.IGNORECASE)


def normalize_mac(mac: str) -> str:
    """``AA-BB-cc:dd...`` -> ``aa:bb:cc:dd:ee:ff``; raises ValueError on anything else."""
    text = mac.strip()
    if not _MAC.match(text):
        raise ValueError(f"not a MAC address: {mac!r}")
    digits = re.sub(r"[^0-9a-fA-F]", "", text).lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def machine_key(*, mac: str | None = None, smbios_uuid: uuid.UUID | None = None) -> uuid.UUID:
    """The machine's identity: its SMBIOS UUID when known, else its (first) MAC."""
    if smbios_uuid is not None:
        return uuid.uuid5(NAMESPACE, f"smbios:{smbios_uuid}")
    if mac is None:
        raise ValueError("a machine key needs a MAC or an SMBIOS UUID")
    return uuid.uuid5(NAMESPACE, f"mac:{normalize_mac(mac)}")


def stream_id(category: str, key: uuid.UUID | str) -> str:
    return f"{category}-{key}"
