"""docker-compose.yml is checked statically (no Docker engine in CI)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_complete() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "mlflow"} <= set(services)
    declared_volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: undeclared {source}"


def test_mlflow_uses_postgres_and_the_locked_version() -> None:
    mlflow = _compose()["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--backend-store-uri postgresql://" in command
    assert "@postgres:5432/" in command
    pinned = re.search(r"mlflow==([\d.]+)", mlflow["build"]["dockerfile_inline"])
    assert pinned
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert pinned.group(1) == locked["mlflow"]
