"""Every event and command dpm knows, grouped by the stream category that owns them."""

from dpm_schemas.events.agents import (
    AgentCommandCompleted,
    AgentCommandIssued,
    AgentEnrolled,
    AgentTokenRevoked,
    EnrolmentTokenIssued,
    InventoryReported,
    MachineAddressesChanged,
    MachineCameOnline,
    MachineWentOffline,
)
from dpm_schemas.events.boot import MachineBooted, MachineDiscovered
from dpm_schemas.events.groups import GroupDefined, GroupDeleted
from dpm_schemas.events.imaging import ChunkSent, ImageCaptured
from dpm_schemas.events.machines import (
    IdentityClaimed,
    IdentityReleased,
    MachineDeleted,
    MachineEdited,
    MachineRegistered,
    MachineRenamed,
    PowerOn,
    PowerOnFailed,
    PowerOnRequested,
    PowerOnSent,
    PowerOnSucceeded,
    RebootMachine,
)
from dpm_schemas.events.scenarios import ScenarioAssigned
from dpm_schemas.events.testing import Probe
from dpm_schemas.events.users import (
    ApiTokenIssued,
    ApiTokenRevoked,
    UserCreated,
    UserDisabled,
    UserLoggedIn,
    UserPasswordChanged,
    UserRoleChanged,
)

__all__ = [
    "AgentCommandCompleted",
    "AgentCommandIssued",
    "AgentEnrolled",
    "AgentTokenRevoked",
    "ApiTokenIssued",
    "ApiTokenRevoked",
    "ChunkSent",
    "EnrolmentTokenIssued",
    "GroupDefined",
    "GroupDeleted",
    "IdentityClaimed",
    "IdentityReleased",
    "ImageCaptured",
    "InventoryReported",
    "MachineAddressesChanged",
    "MachineBooted",
    "MachineCameOnline",
    "MachineDeleted",
    "MachineDiscovered",
    "MachineEdited",
    "MachineRegistered",
    "MachineRenamed",
    "MachineWentOffline",
    "PowerOn",
    "PowerOnFailed",
    "PowerOnRequested",
    "PowerOnSent",
    "PowerOnSucceeded",
    "Probe",
    "RebootMachine",
    "ScenarioAssigned",
    "UserCreated",
    "UserDisabled",
    "UserLoggedIn",
    "UserPasswordChanged",
    "UserRoleChanged",
]
