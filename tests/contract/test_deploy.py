"""deploy/compose.yaml and the Dockerfiles, validated offline (no Docker engine here): the compose
JSON Schema, hadolint, and the properties the stack relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from dpm_runtime import dbroles
from dpm_runtime.localstack.nats import authorization_block, durables, find_nats_server, password_variable, permissions
from dpm_runtime.localstack.stack import SERVICES
from dpm_schemas import ports

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy/compose.yaml"
BIN = Path(sys.executable).parent


def compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_is_built_from_the_root_waits_for_healthy_dependencies_and_has_a_healthcheck() -> None:
    doc = compose()
    for name, module in SERVICES:
        svc = doc["services"][name]
        port = ports.SETTINGS[name][1]
        assert svc["build"] == {
            "context": "..",
            "dockerfile": "deploy/Dockerfile",
            "args": {"PACKAGE": f"dpm-{name}", "MODULE": module, "PORT": str(port)},
        }
        assert (ROOT / "services" / name / "pyproject.toml").read_text().count(f'name = "dpm-{name}"') == 1
        assert svc["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "nats": {"condition": "service_healthy"},
        }
        assert f"{port}/readyz" in " ".join(svc["healthcheck"]["test"])
        assert svc["environment"]["DPM_NATS_URL"] == "nats://nats:4222"
    for infra in ("postgres", "nats"):
        assert doc["services"][infra]["healthcheck"]["test"]
    assert "DPM_API_TOKEN" in doc["services"]["api"]["environment"]


def test_tracing_profile_has_a_collector_and_jaeger() -> None:
    doc = compose()
    assert doc["services"]["otel-collector"]["profiles"] == ["tracing"]
    assert doc["services"]["jaeger"]["profiles"] == ["tracing"]
    assert (ROOT / "deploy/otel/collector.yaml").exists()


def test_the_service_dockerfile_passes_hadolint() -> None:
    hadolint = BIN / "hadolint"
    if not hadolint.exists():  # pragma: no cover -- outside the project venv
        hadolint = Path(shutil.which("hadolint") or "hadolint")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", "deploy/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


SECRET_NAMES = ("PASSWORD", "TOKEN")


def _values(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for child in node.values() for v in _values(child)]
    if isinstance(node, list):
        return [v for child in node for v in _values(child)]
    return [str(node)]


def test_compose_ships_no_default_secret_and_every_secret_is_required() -> None:
    text = COMPOSE.read_text()
    for name in SECRET_NAMES:
        assert f"{name}:-" not in text, f"a default for a *{name} variable"
    references = [v for v in _values(compose()) if "${" in v and any(n in v for n in SECRET_NAMES)]
    assert references
    for value in references:
        for ref in value.split("${")[1:]:
            variable = ref.split("}")[0]
            if any(n in variable for n in SECRET_NAMES):
                assert ":?" in variable, f"{variable} is not required"


def test_each_container_gets_only_its_own_credentials() -> None:
    doc = compose()
    holders = {
        name: svc.get("environment", {}) for name, svc in doc["services"].items() if name not in ("postgres", "nats")
    }
    assert [n for n, env in holders.items() if "DPM_API_TOKEN" in env] == ["api"]
    assert [n for n, env in holders.items() if "DPM_DATABASE_ADMIN_URL" in env] == ["relay"]
    for name in [*(n for n, _ in SERVICES), "relay"]:
        env = holders[name]
        assert env["DPM_NATS_USER"] == name
        assert env["DPM_NATS_PASSWORD"].startswith("${" + password_variable(name) + ":?")
        assert env["DPM_RELAY_ENABLED"] == "false" or name == "relay"
    nats_env = doc["services"]["nats"]["environment"]
    assert sorted(nats_env) == sorted(password_variable(user) for user in permissions())


def test_each_container_logs_into_postgres_as_its_own_role_with_a_required_password() -> None:
    """Issue 12, item 12: one database role per service and the relay; no container holds another's URL."""
    doc = compose()
    shared = doc["x-dpm-service"]["environment"]
    assert "DPM_DATABASE_URL" not in shared  # a URL in the anchor would reach every container
    for name in [*(n for n, _ in SERVICES), "relay"]:
        url = doc["services"][name]["environment"]["DPM_DATABASE_URL"]
        variable = dbroles.password_variable(name)
        assert url == f"postgresql://{dbroles.role_of(name)}:${{{variable}:?set {variable}}}@postgres:5432/dpm"
        others = [dbroles.password_variable(o) for o in dbroles.ROLES if o != name]
        assert not [v for v in others if v in str(doc["services"][name]["environment"])], name
    postgres_env = doc["services"]["postgres"]["environment"]
    wanted = sorted(dbroles.password_variable(n) for n in dbroles.ROLES)
    assert sorted(k for k in postgres_env if k.startswith("DPM_DB_")) == wanted
    assert "DPM_APP_PASSWORD" not in COMPOSE.read_text()  # the single role of old is gone
    script = (ROOT / "deploy/postgres/10-dpm-roles.sh").read_text()
    for service, r in dbroles.ROLES.items():
        variable = dbroles.password_variable(service)
        assert f'"${{{variable}:?set {variable}}}"' in script  # refused unset, never defaulted
        assert f"'{r.role}'" in script and f"ALTER ROLE {r.role} WITH LOGIN PASSWORD :'" in script
    assert "'dpm_app'" not in script and "ROLE dpm_app " not in script  # nothing logs in as the single role


def test_the_compose_nats_config_requires_the_users_dpm_up_uses() -> None:
    conf = (ROOT / "deploy/nats/nats.conf").read_text()
    assert authorization_block() in conf
    assert 'http: "127.0.0.1:8222"' in conf  # monitoring never leaves the container
    env = {password_variable(user): f"pw-{user}" for user in permissions()}
    checked = subprocess.run(
        [find_nats_server(), "-t", "-c", str(ROOT / "deploy/nats/nats.conf")], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    env.pop(password_variable("relay"))
    missing = subprocess.run(
        [find_nats_server(), "-t", "-c", str(ROOT / "deploy/nats/nats.conf")], env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0  # a password left unset is a start-up error, never an open server


def test_compose_runs_two_relays_one_active_by_the_advisory_lock() -> None:
    relay = compose()["services"]["relay"]
    assert relay["deploy"]["replicas"] == 2  # a stand-by takes over when the active one dies
    assert "container_name" not in relay and "ports" not in relay  # both can run side by side


def declared_durables(tmp: Path) -> dict[str, list[str]]:
    """The durable consumers each service's wiring declares (wire() only builds objects; no I/O here)."""
    from types import SimpleNamespace

    from pydantic import SecretStr

    from dpm_agent_gateway.bootstrap import bootstrap as gateway
    from dpm_agent_gateway.settings import AgentGatewaySettings
    from dpm_api.bootstrap import bootstrap as api
    from dpm_api.settings import ApiSettings
    from dpm_imager.bootstrap import bootstrap as imager
    from dpm_imager.settings import ImagerSettings
    from dpm_pxe.bootstrap import bootstrap as pxe
    from dpm_pxe.settings import PxeSettings
    from dpm_scheduler.bootstrap import bootstrap as scheduler
    from dpm_scheduler.settings import SchedulerSettings
    from dpm_updater.bootstrap import bootstrap as updater
    from dpm_updater.settings import UpdaterSettings

    services = [
        api(ApiSettings(api_token=SecretStr("t" * 24))),
        scheduler(SchedulerSettings()),
        pxe(PxeSettings(pxe_root=tmp / "boot", pxe_tftp_enabled=False, pxe_service_token=SecretStr("p" * 24))),
        imager(ImagerSettings(imager_root=tmp / "images")),
        updater(UpdaterSettings()),
        gateway(AgentGatewaySettings()),
    ]
    stub = dict.fromkeys(("pool", "nc", "js", "eventlog", "tracer", "stop"))
    return {
        s.name: sorted(
            c.durable
            for c in s.wire(
                SimpleNamespace(**stub, name=s.name, settings=s.settings, catch_up=lambda _projection: None)
            ).consumers
        )
        for s in services
    }


def test_each_nats_user_may_use_exactly_the_durables_its_service_declares(tmp_path: Path) -> None:
    """Consumer-API, MSG.NEXT and ACK permissions name each durable: a service that declares a new
    one must grant it in localstack.nats, or it would not start under dpm up or compose."""
    declared = declared_durables(tmp_path)
    assert sorted(declared) == sorted(n for n, _ in SERVICES)
    for name, names in declared.items():
        assert sorted(durables(name)) == names, name
        allowed = permissions()[name]["publish"]["allow"]
        for durable in names:
            assert f"$JS.API.CONSUMER.MSG.NEXT.DPM_EVENTS.{durable}" in allowed
            assert f"$JS.ACK.DPM_EVENTS.{durable}.>" in allowed
        assert not [a for a in allowed if a.endswith("DPM_EVENTS.>") or "STREAM.UPDATE" in a or "STREAM.CREATE" in a]
    assert durables("relay") == []
