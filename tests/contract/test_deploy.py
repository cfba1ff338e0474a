"""deploy/compose.yaml and the Dockerfiles, validated offline (no Docker engine here): the compose
JSON Schema, hadolint, and the properties the stack relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

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
