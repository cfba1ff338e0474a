"""Group stream (written by api): machine groups and the network settings Wake-on-LAN needs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated

from pydantic import Field, StringConstraints

from dpm_schemas.base import Event
from dpm_schemas.text import LongText

GroupName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")]
NEW_MACHINES = "new-machines"  # where auto-registered machines land; always exists


class GroupDefined(Event):
    """A group was created or its settings changed (the whole new state)."""

    wire_name = "GroupDefined"

    name: GroupName
    subnet: IPv4Network | None = None  # e.g. 192.168.0.0/24; None: the server's own segment
    broadcast: IPv4Address | None = None  # directed broadcast for WOL; derived from subnet when None
    gateway: IPv4Address | None = None
    description: Annotated[LongText, Field(max_length=500)] = ""

    @property
    def wol_broadcast(self) -> IPv4Address | None:
        """Where magic packets for this group go: the directed broadcast (given, or the subnet's);
        None means the server's own segment (255.255.255.255)."""
        if self.broadcast is not None:
            return self.broadcast
        return self.subnet.broadcast_address if self.subnet is not None else None


class GroupDeleted(Event):
    wire_name = "GroupDeleted"

    name: GroupName


class GroupRenamed(Event):
    """A group got a new name (stream of the old name); its machines, settings and schedules follow.
    Later changes of the group are on the stream of the new name."""

    wire_name = "GroupRenamed"

    name: GroupName
    new_name: GroupName
