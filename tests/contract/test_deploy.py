"""deploy/compose.yaml and the Dockerfiles, validated offline (no Docker engine here): the compose
JSON Schema, hadolint, and the properties the stack relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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
        assert svc["build"] == {"context": "..", "dockerfile": f"services/{name}/Dockerfile"}
        assert (ROOT / "services" / name / "Dockerfile").exists()
        assert svc["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "nats": {"condition": "service_healthy"},
        }
        port = ports.SETTINGS[name][1]
        assert f"{port}/readyz" in " ".join(svc["healthcheck"]["test"])
        dockerfile = (ROOT / "services" / name / "Dockerfile").read_text()
        assert f'ENTRYPOINT ["python", "-m", "{module}"]' in dockerfile and f"EXPOSE {port}" in dockerfile
        assert svc["environment"]["DPM_NATS_URL"] == "nats://nats:4222"
    for infra in ("postgres", "nats"):
        assert doc["services"][infra]["healthcheck"]["test"]
    assert "DPM_API_TOKEN" in doc["services"]["api"]["environment"]


def test_tracing_profile_has_a_collector_and_jaeger() -> None:
    doc = compose()
    assert doc["services"]["otel-collector"]["profiles"] == ["tracing"]
    assert doc["services"]["jaeger"]["profiles"] == ["tracing"]
    assert (ROOT / "deploy/otel/collector.yaml").exists()


@pytest.mark.parametrize("name", [name for name, _ in SERVICES])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        hadolint = Path(shutil.which("hadolint") or "hadolint")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", f"services/{name}/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
