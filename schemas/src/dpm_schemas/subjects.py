"""NATS subjects, the JetStream stream, and durable consumer names -- the only place they are spelled.

Events are published by the relay on ``dpm.evt.<category>.<WireName>`` (category = stream-id prefix),
so a consumer filters by category (``dpm.evt.machine.>``) or by one type.
Commands go to ``dpm.cmd.<service>.<WireName>``; transient signals to ``dpm.sig.<WireName>``.
"""

from __future__ import annotations

EVENTS_STREAM = "DPM_EVENTS"
EVENTS_ROOT = "dpm.evt"
COMMANDS_ROOT = "dpm.cmd"
SIGNALS_ROOT = "dpm.sig"

# Header names carried on every relayed event.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TRACEPARENT = "traceparent"
HEADER_POSITION = "Dpm-Position"
HEADER_TYPE = "Dpm-Type"
HEADER_VERSION = "Dpm-Version"  # on transient signals: the payload's schema version (none is stored)

# Stream categories: the prefix of stream ids, one writer service per category (DESIGN.md §2).
MACHINE = "machine"
GROUP = "group"
BOOT = "boot"
AGENT = "agent"
SCENARIO = "scenario"
EXECUTION = "execution"
IMAGE = "image"  # imager: what happened to an image (captured, aborted transfers, verified)
CATALOG = "catalog"  # api: who may move an image (transfers opened) and its deletion
DISKS = "disks"  # api: disk layouts a deploy environment reported (disk configuration check), per machine
PACKAGE = "package"  # api: package definitions, one stream per package id (revisions, removal)
UPLOAD = "upload"  # api: package content uploads opened (who may send bytes), one stream per upload
CONTENT = "content"  # updater: what reached the package content store, one stream per upload
DELIVERY = "delivery"  # updater: a delivery (remote-update step or auto-update) and its reports, one stream each
NOTIFY = "notify"  # api: operators' "notify now" of package updates, one stream per request
ROLLOUT = "rollout"  # api: staged rollouts of a package started by operators, one stream per rollout
RING = "ring"  # updater: how each staged rollout went, ring by ring, one stream per rollout
SOURCE = "source"  # api: package sources (Debian-format repositories) and their "sync now", one stream each
SYNC = "sync"  # updater: what each sync of a package source found and offered, one stream per source
USER = "user"  # api: accounts, roles, API tokens
ENROLMENT = "enrolment"  # api: enrolment tokens issued for agents
COMMAND = "command"  # api: commands issued to agents and their outcomes (the audit of file distribution)
POWER = "power"  # scheduler: power actions sent per machine
ASSIGNMENT = "assignment"  # api: requests to run a scenario on machines (one stream per run)
SCHEDULE = "schedule"  # api: schedule definitions
FIRING = "firing"  # scheduler: what each schedule firing did or skipped
SESSION = "session"  # scheduler: multicast sessions
STEP = "step"  # step reports of an execution, by the service that implements the step
SETTING = "setting"  # api: server-wide settings, one stream per area (setting-boot)
IDENTITY = "identity"  # one stream per MAC / SMBIOS UUID: who owns it (uniqueness by expected version)
TEST = "test"  # reserved for the test suites and benchmarks

CATEGORIES = (
    MACHINE,
    GROUP,
    USER,
    ENROLMENT,
    COMMAND,
    BOOT,
    AGENT,
    SCENARIO,
    EXECUTION,
    IMAGE,
    CATALOG,
    DISKS,
    PACKAGE,
    UPLOAD,
    CONTENT,
    DELIVERY,
    NOTIFY,
    ROLLOUT,
    RING,
    SOURCE,
    SYNC,
    POWER,
    ASSIGNMENT,
    SCHEDULE,
    FIRING,
    SESSION,
    STEP,
    SETTING,
    IDENTITY,
    TEST,
)


def event_subject(category: str, wire_name: str) -> str:
    return f"{EVENTS_ROOT}.{category}.{wire_name}"


def category_events(category: str) -> str:
    """Every event of one stream category."""
    return f"{EVENTS_ROOT}.{category}.>"


def all_events() -> str:
    return f"{EVENTS_ROOT}.>"


def command_subject(service: str, wire_name: str) -> str:
    return f"{COMMANDS_ROOT}.{service}.{wire_name}"


def agent_command(machine_id: object, action: object = "*") -> str:
    """Requests for one machine's agent, one subject per action (``dpm.cmd.agent.<machine>.<action>``):
    the gateway replica holding its connection subscribes to all of them, and NATS permissions can let
    a service send only some actions (the scheduler reboots and shuts down, never writes files). The
    gateway refuses a command whose body names another action than its subject."""
    return f"{COMMANDS_ROOT}.agent.{machine_id}.{action}"


def signal_subject(wire_name: str, key: str = "*") -> str:
    return f"{SIGNALS_ROOT}.{wire_name}.{key}"


def agent_session_check(machine_id: object = "*") -> str:
    """Core NATS broadcast to every agent-gateway replica: re-check the sessions you hold for this
    machine against PostgreSQL (its token was replaced or revoked, or a newer session opened). The
    message carries no authority; the database decides."""
    return signal_subject("AgentSessionCheck", str(machine_id))


def durable_name(service: str, purpose: str) -> str:
    """A durable consumer name: stable across restarts, shared by the replicas of one service."""
    name = f"{service}-{purpose}"
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"durable consumer names are alphanumeric with - or _: {name!r}")
    return name
