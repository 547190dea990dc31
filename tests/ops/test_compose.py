"""docker/compose.yaml: valid against the Compose specification, complete, and self-consistent."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.ops.support import DOCKER, dockerfile_instructions, final_stage

COMPOSE = DOCKER / "compose.yaml"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
# Where Prometheus must find each exporter (the brief of docker/ and DESIGN.md's Operations).
SCRAPED = {("api", 8000), ("cpu-worker", 9101), ("llm-worker", 9102), ("flower", 5555)}

Service = dict[str, Any]


@cache
def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, Service]:
    return dict(_compose()["services"])


@cache
def _validator() -> jsonschema.protocols.Validator:
    # The Compose specification's JSON schema, as vendored by check-jsonschema.
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def _dockerfile(service: Service) -> Path:
    build = service["build"]
    return (DOCKER / build["context"] / build["dockerfile"]).resolve()


def test_compose_matches_the_specification() -> None:
    """The file is valid against the Compose specification's schema."""
    errors = [
        f"{'.'.join(str(p) for p in e.path)}: {e.message}"
        for e in _validator().iter_errors(_compose())
    ]
    assert not errors, "\n".join(errors)


def test_compose_schema_is_strict() -> None:
    """The schema check does refuse a misspelt key."""
    broken = copy.deepcopy(_compose())
    broken["services"]["redis"]["healthchek"] = broken["services"]["redis"].pop("healthcheck")
    assert not _validator().is_valid(broken)


def test_expected_services() -> None:
    """Every process of the design is there."""
    assert set(_services()) == {
        "redis",
        "qdrant",
        "api",
        "cpu-worker",
        "llm-worker-gpu",
        "llm-worker-cpu",
        "flower",
        "prometheus",
        "grafana",
    }


@pytest.mark.parametrize("name", sorted(_services()))
def test_builds_exist(name: str) -> None:
    """A built service's context and Dockerfile exist; an image-only one pins a tag."""
    service = _services()[name]
    if "build" in service:
        context = (DOCKER / service["build"]["context"]).resolve()
        assert context.is_dir(), context
        assert _dockerfile(service).is_file(), _dockerfile(service)
        assert re.fullmatch(r"ragq/[\w-]+:[\w.-]+", service["image"]), service["image"]
    else:
        image = service["image"]
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_has_a_healthcheck(name: str) -> None:
    """Each service declares a health check, or its image's Dockerfile has one."""
    service = _services()[name]
    check = service.get("healthcheck")
    if check is not None:
        assert not check.get("disable", False)
        assert check["test"][0] in ("CMD", "CMD-SHELL"), check["test"]
        return
    assert "build" in service, f"{name}: an image-only service needs its own healthcheck"
    stage = final_stage(dockerfile_instructions(_dockerfile(service)))
    checks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert checks and "NONE" not in checks[-1].upper().split(), name


def test_redis_is_durable() -> None:
    """Redis runs with AOF fsynced every second, on a named volume, never evicting."""
    redis = _services()["redis"]
    command = redis["command"]
    options = {command[i]: command[i + 1] for i in range(len(command) - 1)}
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])


def test_named_volumes_are_declared() -> None:
    """Every named volume a service mounts is declared, and every declared one is used."""
    declared = set(_compose()["volumes"])
    used = set()
    for service in _services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "$")):
                used.add(source)
    assert used == declared
    assert {"redis-data", "qdrant-data"} <= declared


def test_bind_mounts_exist() -> None:
    """Configuration files mounted from docker/ exist."""
    for service in _services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), source


def test_llm_worker_profiles() -> None:
    """One llm worker per profile, both reachable as `llm-worker`; the gpu one reserves a GPU."""
    services = _services()
    gpu, cpu = services["llm-worker-gpu"], services["llm-worker-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    for worker in (gpu, cpu):
        assert worker["networks"]["default"]["aliases"] == ["llm-worker"]
        assert worker["environment"]["RAGQ_METRICS_PORT"] == "9102"
        assert worker["environment"]["WORKER_NODE"] == "llm"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["environment"]["RAGQ_LLM_MODEL"] == "/models/llm"
    assert gpu["build"]["dockerfile"] == "docker/gpu-worker.Dockerfile"
    assert cpu["build"]["dockerfile"] == "docker/cpu-worker.Dockerfile"
    assert "--queues llm" in " ".join(cpu["command"])
    for name in ("api", "cpu-worker", "flower"):
        assert "profiles" not in services[name], name


def test_app_services_are_production_configured() -> None:
    """App containers talk to the Redis and Qdrant services, in production mode."""
    for name in ("api", "cpu-worker", "llm-worker-gpu", "llm-worker-cpu", "flower"):
        env = _services()[name]["environment"]
        assert env["RAGQ_ENVIRONMENT"] == "production", name
        assert env["RAGQ_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["RAGQ_QDRANT_URL"] == "http://qdrant:6333", name


def _scraped_targets() -> set[tuple[str, int]]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    found: set[tuple[str, int]] = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                found.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            found.update((name, int(dns["port"])) for name in dns["names"])
    return found


def test_prometheus_scrapes_every_exporter() -> None:
    """Prometheus scrapes the API, both workers and Flower at their metrics ports."""
    assert _scraped_targets() >= SCRAPED
    mounted = {v.split(":")[0] for v in _services()["prometheus"]["volumes"]}
    assert "./prometheus/prometheus.yml" in mounted


def test_grafana_is_provisioned() -> None:
    """Grafana gets the Prometheus data source and the dashboards folder from docker/grafana."""
    grafana = DOCKER / "grafana"
    datasources = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((grafana / "provisioning/dashboards/ragq.yaml").read_text())
    (provider,) = providers["providers"]
    mounts = dict(v.split(":")[:2] for v in _services()["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert list((grafana / "dashboards").glob("*.json"))
