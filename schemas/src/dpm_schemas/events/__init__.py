"""Every event and command dpm knows, grouped by the stream category that owns them."""

from dpm_schemas.events.agents import MachineCameOnline, MachineWentOffline
from dpm_schemas.events.boot import MachineBooted, MachineDiscovered
from dpm_schemas.events.imaging import ChunkSent, ImageCaptured
from dpm_schemas.events.machines import (
    MachineDeleted,
    MachineRegistered,
    MachineRenamed,
    PowerOn,
    RebootMachine,
)
from dpm_schemas.events.scenarios import ScenarioAssigned
from dpm_schemas.events.testing import Probe

__all__ = [
    "ChunkSent",
    "ImageCaptured",
    "MachineBooted",
    "MachineCameOnline",
    "MachineDeleted",
    "MachineDiscovered",
    "MachineRegistered",
    "MachineRenamed",
    "MachineWentOffline",
    "PowerOn",
    "Probe",
    "RebootMachine",
    "ScenarioAssigned",
]
