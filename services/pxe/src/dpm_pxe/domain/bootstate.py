"""The boot settings in force, in memory (pure): the DHCP listener reads them for every packet, so
they are held here rather than read per packet. Memory follows the ``boot_settings`` row
(``adapters.state.follow``), whatever wrote it -- the live runner or a rebuild's swap -- so switching
the mode needs no restart and a rebuilt table is what the listener answers by.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dpm_schemas.events import BootSettingsChanged
from dpm_schemas.events.boot import DhcpMode

log = logging.getLogger(__name__)


@dataclass
class BootState:
    """The boot settings in force. ``default_mode`` applies until an operator saves settings once."""

    default_mode: DhcpMode = DhcpMode.OFF
    settings: BootSettingsChanged | None = None
    position: int = 0  # of the settings held (0: none); what the DHCP configuration is cached by
    changed: list[DhcpMode] = field(default_factory=list)  # modes applied, for the log and tests

    @property
    def current(self) -> BootSettingsChanged:
        return self.settings or BootSettingsChanged(mode=self.default_mode)

    def follow(self, settings: BootSettingsChanged | None, position: int) -> None:
        """Hold exactly what the table holds -- also an older row, after a rebuild set an event aside."""
        if position == self.position:
            return
        before = self.current.mode
        self.settings, self.position = settings, position
        if self.current.mode is not before:
            log.info("DHCP mode is now %s", self.current.mode.value)
        self.changed.append(self.current.mode)
