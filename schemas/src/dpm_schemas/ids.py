"""Stream ids from natural keys, so every service derives the same id without a lookup race."""

from __future__ import annotations

import re
import uuid

# A fixed namespace for dpm's name-based UUIDs. Never change it: stored stream ids depend on it.
NAMESPACE = uuid.UUID("6f1c3a52-8e0b-5d1e-9c7a-2b4d6e8f0a13")

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$", re.IGNORECASE)


class UnusableMac(ValueError):
    """A well-formed MAC that no NIC has as its own: broadcast, multicast or all zeros."""

    def __init__(self, mac: str, why: str) -> None:
        super().__init__(f"{mac} is {why}")
        self.mac, self.why = mac, why


def normalize_mac(mac: str) -> str:
    """``AA-BB-cc:dd...`` -> ``aa:bb:cc:dd:ee:ff``; raises ValueError on anything else, UnusableMac on
    an address that cannot be a machine's (every edge uses this, so every edge refuses them)."""
    text = mac.strip()
    if not _MAC.match(text):
        raise ValueError(f"not a MAC address: {mac!r}")
    digits = re.sub(r"[^0-9a-fA-F]", "", text).lower()
    canonical = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    if (why := unusable_mac(canonical)) is not None:
        raise UnusableMac(canonical, why)
    return canonical


def unusable_mac(mac: str) -> str | None:
    """Why a canonical MAC cannot identify a machine, or None. Broadcast and multicast addresses (the
    I/G bit, the lowest bit of the first byte) and all zeros are never a NIC's own address; letting
    one in makes every machine that boots behind a broken or spoofing client look the same."""
    if mac == "ff:ff:ff:ff:ff:ff":
        return "the broadcast address"
    if int(mac[:2], 16) & 1:
        return "a multicast address (the first byte is odd)"
    if mac == "00:00:00:00:00:00":
        return "the all-zero address"
    return None


def machine_key(*, mac: str | None = None, smbios_uuid: uuid.UUID | None = None) -> uuid.UUID:
    """The machine's identity: its SMBIOS UUID when known, else its (first) MAC."""
    if smbios_uuid is not None:
        return uuid.uuid5(NAMESPACE, f"smbios:{smbios_uuid}")
    if mac is None:
        raise ValueError("a machine key needs a MAC or an SMBIOS UUID")
    return uuid.uuid5(NAMESPACE, f"mac:{normalize_mac(mac)}")


def stream_id(category: str, key: uuid.UUID | str) -> str:
    return f"{category}-{key}"
