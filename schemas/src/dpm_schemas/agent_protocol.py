"""The agent <-> agent-gateway protocol, version 1: msgpack frames over one WebSocket that the agent
opens (outbound only; DESIGN.md §6). Every frame is a map with ``kind``; unknown kinds are refused.

    agent                                   gateway
      | -- POST /v1/enrol {enrolment token, facts} -->   (once; returns the per-machine token)
      | == WS /v1/agent, Authorization: Bearer <machine token> ==
      | -- Hello(facts, protocol, agent_version) --> |
      | <-- Welcome(machine_id, heartbeat, server_version)
      | -- Heartbeat / Addresses / Inventory ------> |   (Addresses and Inventory only on change)
      | <-- Command(id, ...) / --> CommandResult(id)   (shutdown, reboot, files, install)

An ``install`` command carries an ``InstallOrder``: the agent answers at once (accepted or refused)
and installs in the background -- an install outlasts the command timeout and the session. It
downloads each item from the updater (``CONTENT_PATH``, the order's bearer token, ``Range`` resume)
and reports progress and the outcome as ``InstallReport`` to the updater (``REPORT_PATH``, the same
token), which appends them as the step's reports: the token is bound to one execution on one
machine, so an agent can report only its own step.
"""

from __future__ import annotations

import ipaddress
import uuid
from enum import StrEnum
from typing import Annotated, Literal, cast

import msgpack
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from dpm_schemas.events.executions import StepStatus
from dpm_schemas.events.machines import Mac
from dpm_schemas.events.packages import OUTPUT_TAIL_MAX as OUTPUT_TAIL_MAX  # re-exported: the agent cuts to it
from dpm_schemas.events.packages import Hex64, PackageOutcome
from dpm_schemas.ids import unusable_mac
from dpm_schemas.packages import Package
from dpm_schemas.text import Label, LongText, Text

PROTOCOL_VERSION = 1
ENROL_PATH = "/v1/enrol"
AGENT_PATH = "/v1/agent"
MAX_FRAME = 4 * 1024 * 1024  # bytes; inventories of a few thousand packages fit easily
CLOSE_UNAUTHORIZED = 4401  # WebSocket close code: unknown or revoked token (DPM-E402)
CLOSE_PROTOCOL = 4400  # malformed frame or unsupported protocol version
CLOSE_REPLACED = 4409  # a newer connection with the same token took over (DPM-E126)


class Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _own_mac(mac: str) -> str:
    if (why := unusable_mac(mac)) is not None:
        raise ValueError(f"{mac} is {why}, not a network card's own address")
    return mac


def _address(text: str) -> str:
    ipaddress.ip_address(text)  # ValueError: "not-an-ip" never reaches the machines read model
    return text


# What an agent reports is checked at the frame: the gateway, and whatever it writes to the log,
# only ever see a NIC's own MAC (DPM-E109's rule) and addresses that parse.
OwnMac = Annotated[Mac, AfterValidator(_own_mac)]
IpAddress = Annotated[Label, Field(max_length=64), AfterValidator(_address)]


class Facts(Frame):
    """What a machine says about itself."""

    macs: Annotated[tuple[OwnMac, ...], Field(min_length=1, max_length=64)]
    smbios_uuid: uuid.UUID | None = None
    hostname: Annotated[Text, Field(max_length=253)]
    ips: Annotated[tuple[IpAddress, ...], Field(max_length=256)] = ()
    os: Annotated[Text, Field(max_length=200)] = ""
    kernel: Annotated[Text, Field(max_length=200)] = ""


class Hello(Frame):
    kind: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    agent_version: Annotated[Label, Field(max_length=50)]
    facts: Facts


class Welcome(Frame):
    kind: Literal["welcome"] = "welcome"
    machine_id: uuid.UUID
    heartbeat_interval: Annotated[FiniteFloat, Field(gt=0, le=86400)]  # finite: inf or nan would wedge timers
    server_version: Label


class Heartbeat(Frame):
    kind: Literal["heartbeat"] = "heartbeat"
    seq: int = Field(ge=0)


class Addresses(Frame):
    kind: Literal["addresses"] = "addresses"
    ips: Annotated[tuple[IpAddress, ...], Field(max_length=256)]


class Inventory(Frame):
    kind: Literal["inventory"] = "inventory"
    os: Text
    kernel: Text
    packages: Annotated[tuple[Text, ...], Field(max_length=50_000)]  # "name=version"
    digest: Label


class Action(StrEnum):
    SHUTDOWN = "shutdown"
    REBOOT = "reboot"
    PUT_FILE = "put_file"
    DELETE_FILE = "delete_file"
    LIST_DIR = "list_dir"
    INSTALL = "install"  # only the updater may send it (NATS permissions)


MAX_FILE = 3 * 1024 * 1024  # put_file content travels inside one frame
CONTENT_PATH = "/v1/content/{sha256}"  # updater: GET (Range) one package file, with an order's token
REPORT_PATH = "/v1/reports"  # updater: POST an InstallReport, with the same token
MAX_ITEMS = 64


def _http_base(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return text.rstrip("/")


class InstallWhen(StrEnum):
    NOW = "now"
    NEXT_BOOT = "next-boot"
    AT_TIME = "at-time"


class InstallItem(Frame):
    """One package to install: its definition at the revision delivered, and its content file."""

    package: Package
    sha256: Hex64 | None = None  # None: nothing to download (a command-only script package)
    size: int = Field(default=0, ge=0)
    file_name: Label = ""


class LaterReport(Frame):
    """Where a next-boot or at-time install reports when it runs: the step ended once the files were
    fetched and the install queued, so the install is its own delivery, with its own token."""

    execution_id: uuid.UUID
    token: Annotated[Label, Field(min_length=16)]


class InstallOrder(Frame):
    """What a remote-update step asks of one machine. ``token`` downloads the items' content and
    reports on ``execution_id`` (and nothing else), until the execution ends."""

    execution_id: uuid.UUID
    step: Label
    server: Annotated[Text, Field(max_length=2048), AfterValidator(_http_base)]  # the updater, as agents reach it
    token: Annotated[Label, Field(min_length=16)]
    items: Annotated[tuple[InstallItem, ...], Field(min_length=1, max_length=MAX_ITEMS)]
    when: InstallWhen = InstallWhen.NOW
    at: AwareDatetime | None = None  # AT_TIME: not before this instant
    timeout_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 1800  # each installer's
    later: LaterReport | None = None  # NEXT_BOOT / AT_TIME: the queued install's own delivery

    @model_validator(mode="after")
    def _timed(self) -> InstallOrder:
        if (self.when is InstallWhen.AT_TIME) != (self.at is not None):
            raise ValueError("`at` is given exactly when `when` is at-time")
        return self


class FileFetch(Frame):
    """Where a ``put_file`` too large for a frame gets its content: the updater's copy, fetched with
    a token good for this one file (``url``: ``<updater>/v1/content/<sha256>``), resumable, hashed."""

    url: Annotated[Text, Field(max_length=2048), AfterValidator(_http_base)]
    token: Annotated[Label, Field(min_length=16)]
    sha256: Hex64
    size: int = Field(ge=0)


class Command(Frame):
    kind: Literal["command"] = "command"
    id: uuid.UUID
    action: Action
    path: Annotated[Text, Field(max_length=4096)] | None = None
    content: Annotated[bytes, Field(max_length=MAX_FILE)] | None = None
    mode: int = Field(default=0o644, ge=0, le=0o7777)
    install: InstallOrder | None = None  # Action.INSTALL only
    fetch: FileFetch | None = None  # Action.PUT_FILE without ``content``: any size
    timeout: FiniteFloat | None = Field(default=None, gt=0, le=3600)  # how long the gateway waits (default 120 s)


class Entry(Frame):
    name: str
    type: Literal["file", "dir", "link", "other"]
    size: int
    mtime: FiniteFloat  # finite: a NaN or inf from a peer overflows int()/utime()


class CommandResult(Frame):
    kind: Literal["result"] = "result"
    id: uuid.UUID
    ok: bool
    code: Label = ""  # a DPM error code when not ok
    message: LongText = ""
    entries: tuple[Entry, ...] = ()


class InstallReport(Frame):
    """The agent's report on an order (JSON to ``REPORT_PATH``): progress while it works, then
    completed (every item installed) or failed (the first failure's code; the outcomes so far)."""

    execution_id: uuid.UUID
    status: StepStatus
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    code: Label | None = None
    message: Annotated[LongText, Field(max_length=1000)] = ""
    outcomes: Annotated[tuple[PackageOutcome, ...], Field(max_length=MAX_ITEMS)] = ()


class Refused(Frame):
    kind: Literal["refused"] = "refused"
    code: Label
    message: LongText


AnyFrame = Annotated[
    Hello | Welcome | Heartbeat | Addresses | Inventory | Command | CommandResult | Refused, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[AnyFrame] = TypeAdapter(AnyFrame)


class FrameError(ValueError):
    """Not a valid frame of this protocol version."""


def encode(frame: Frame) -> bytes:
    """msgpack of the JSON form, except bytes fields, which msgpack carries as they are."""
    raw = {k: v for k in type(frame).model_fields if isinstance(v := getattr(frame, k), bytes)}
    body = frame.model_dump(mode="json", exclude_none=True, exclude=set(raw)) | raw
    return cast(bytes, msgpack.packb(body, use_bin_type=True))


def decode(raw: bytes) -> Frame:
    if len(raw) > MAX_FRAME:
        raise FrameError(f"frame of {len(raw)} bytes exceeds {MAX_FRAME}")
    try:
        return cast(Frame, _ADAPTER.validate_python(msgpack.unpackb(raw, raw=False)))
    except (ValueError, ValidationError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise FrameError(str(exc)[:300]) from None
