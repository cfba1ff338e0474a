"""What pxe saw of a machine's boot that names its address (pure): the deploy token of an execution
goes only to a client at one of these addresses (``sightings``), not to whoever asks for the MAC.

* A DHCP packet of a PXE client (ROM or iPXE) says which address it has or is taking: ``ciaddr``,
  option 50 of a REQUEST (the address a plain DHCP server such as dnsmasq offered it, in proxy mode),
  or the source of a unicast request on 4011. A relayed packet's source is the relay's: not taken.
* A TFTP read of the boot file pxe just gave one MAC comes from that machine (a TFTP transfer needs
  the client's ACKs, so its address is not a spoofed source). It is paired only when it is
  unambiguous: exactly one MAC was given that file in the last ``TFTP_WINDOW`` seconds and is not
  paired yet.

Who may then have the deploy environment is ``admitted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from dpm_netproto.dhcp import OPT_REQUESTED_IP, REQUEST, DhcpPacket
from dpm_netproto.pxeclient import ClientInfo

TFTP_WINDOW = 30.0  # seconds between a ROM's boot-file answer and its TFTP read
MAX_OFFERS = 10_000  # offers remembered at most, whatever the rate


def dhcp_addresses(packet: DhcpPacket, source: str, *, on_4011: bool) -> list[tuple[IPv4Address, str]]:
    """The (address, how pxe knows it) a PXE client's packet names; nothing for other clients."""
    if not ClientInfo.from_packet(packet).is_pxe:
        return []
    found: list[tuple[IPv4Address, str]] = []
    if int(packet.ciaddr):
        found.append((packet.ciaddr, "dhcp-ciaddr"))
    requested = packet.options.get(OPT_REQUESTED_IP, b"")
    if packet.message_type == REQUEST and len(requested) == 4 and int.from_bytes(requested, "big"):
        found.append((IPv4Address(requested), "dhcp-requested"))
    if on_4011 and not int(packet.giaddr):
        try:
            address = IPv4Address(source)
        except ValueError:
            address = None
        if address is not None and int(address):
            found.append((address, "dhcp-4011"))
    return [(ip, how) for i, (ip, how) in enumerate(found) if ip not in [x for x, _ in found[:i]]]


@dataclass
class _Offer:
    mac: str
    file: str
    at: float
    paired: bool = False


@dataclass
class TftpPairing:
    """Boot files given to ROMs, waiting for their TFTP read."""

    window: float = TFTP_WINDOW
    offers: list[_Offer] = field(default_factory=list)

    def offered(self, mac: str, file: str, now: float) -> None:
        self._forget(now)
        self.offers = [o for o in self.offers if o.mac != mac]  # a ROM's retry: the newest answer counts
        self.offers.append(_Offer(mac, file.lstrip("/"), now))
        del self.offers[:-MAX_OFFERS]

    def fetched(self, file: str, now: float) -> str | None:
        """The MAC this completed read of ``file`` belongs to, when exactly one is waiting for it."""
        self._forget(now)
        waiting = [o for o in self.offers if o.file == file.lstrip("/") and not o.paired]
        if len(waiting) != 1:
            return None
        waiting[0].paired = True
        return waiting[0].mac

    def _forget(self, now: float) -> None:
        if self.offers and now - self.offers[0].at > self.window:
            self.offers = [o for o in self.offers if now - o.at <= self.window]


def admitted(client_ip: str, seen: set[str], *, watching: bool) -> bool:
    """May the client at ``client_ip`` have the deploy environment of a MAC pxe saw boot from ``seen``?
    Only from one of those addresses; when pxe saw none, only while its DHCP listener does not take part
    in every boot (``watching``: proxy or full mode), for then it has nothing to bind to."""
    return client_ip in seen or (not seen and not watching)


def unseen(seen: set[str], window: float) -> str:
    """Why a client that was not ``admitted`` is refused."""
    if seen:
        return "pxe did not see that MAC boot from this address"
    return f"pxe saw no network boot of that MAC in the last {round(window)} s"
