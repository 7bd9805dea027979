"""The deployment files, checked without a Docker engine or a cluster: compose files against the
compose spec, rendered kustomize overlays against a pinned Kubernetes release's schemas,
Dockerfiles through hadolint, and every env var, port and secret name against the settings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    COMPOSE_FILES,
    DOCKER,
    K8S,
    OVERLAYS,
    ROOT,
    code_settings,
    containers,
    load_compose,
    parameters,
    parse_pbtxt,
    pod_specs,
    readme_defaults,
    readme_settings,
    render,
)

KUBERNETES_VERSION = "1.31.0"  # the oldest release the manifests must apply to
TRITON_RELEASE = "24.08"  # nvcr.io/nvidia/tritonserver:<release>-py3 in the Triton Dockerfiles
# What that NGC release ships (and this project may use): native backends and the ensemble.
TRITON_PLATFORMS = {"onnxruntime_onnx", "pytorch_libtorch", "ensemble"}
TRITON_BACKENDS = {"onnxruntime", "pytorch", "python", "fil"}
FIL_PARAMETERS = {
    "model_type",
    "is_classifier",
    "output_class",
    "predict_proba",
    "threshold",
    "layout",
    "algo",
    "storage_type",
    "threads_per_tree",
    "transfer_threshold",
    "use_experimental_optimizations",
    "xgboost_allow_unknown_field",
}
FIL_MODEL_TYPES = {"xgboost", "xgboost_json", "xgboost_ubj", "lightgbm", "treelite_checkpoint"}
OWN_PARAMETERS = {"feature_fingerprint", "feature_timeframe", "feature_spec"}
ORCHESTRATOR_IMAGE = "trading-ml-orchestrator"
SECRET_KEYS = {"INTERNAL_API_KEY", "JWT_SECRET", "MYSQL_PASSWORD", "REDIS_URL"}
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
GPU_CONFIGS = sorted((ROOT / "model_repository" / "gpu").glob("*/config.pbtxt"))
CPU_CONFIGS = sorted((ROOT / "model_repository").glob("**/cpu/*/config.pbtxt"))
RUNNERS = ROOT / "model_repository" / "backends"


@pytest.fixture(scope="module")
def settings() -> set[str]:
    return code_settings()


@pytest.fixture(scope="module")
def defaults() -> dict[str, str]:
    return readme_defaults()


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(K8S / "overlays" / request.param)


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


# --- settings ----------------------------------------------------------------------------------


# Table rows read outside the two settings modules (tests, tooling, importers).
NOT_SERVICE_SETTINGS = {
    "TEST_REDIS_URL",
    "MYSQL_TEST_DATABASE",
    "PYTHON312",
    "POLYGON_API_KEY",
    "POLYGON_BASE_URL",
    "REPLAY_INTERVAL_S",
}


def test_readme_table_and_settings_code_agree(settings: set[str]) -> None:
    # The table is the deployer's reference: every service setting it lists is read by the code.
    assert readme_settings() - NOT_SERVICE_SETTINGS <= settings
    assert {"MYSQL_HOST", "REDIS_URL", "TRITON_HOST", "API_PORT", "JOB_HEARTBEAT_S"} <= settings


# --- compose -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_matches_compose_spec(path: Path) -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(load_compose(path))
    ]
    assert not errors


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_env_ports_and_order(
    path: Path, settings: set[str], defaults: dict[str, str]
) -> None:
    services = load_compose(path)["services"]
    assert {"mariadb", "redis", "triton", "migrate", "api", "worker"} <= set(services)
    for name in ("migrate", "api", "worker"):
        svc = services[name]
        env = svc["environment"]
        assert set(env) <= settings, f"{name}: {set(env) - settings} are not settings"
        assert svc["build"]["dockerfile"] == "docker/orchestrator.Dockerfile"
        assert env["MYSQL_HOST"] in services
        assert env["TRITON_HOST"] in services
        redis = urlparse(env["REDIS_URL"])
        assert redis.hostname in services
        assert redis.port == urlparse(defaults["REDIS_URL"]).port
        for var in ("MYSQL_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT", "TRITON_METRICS_PORT"):
            assert env[var] == defaults[var], var
        assert env["API_PORT"] == defaults["API_PORT"]
    assert services["api"]["ports"] == [f"{defaults['API_PORT']}:{defaults['API_PORT']}"]
    triton_ports = [defaults[f"TRITON_{p}_PORT"] for p in ("HTTP", "GRPC", "METRICS")]
    assert services["triton"]["ports"] == [f"{p}:{p}" for p in triton_ports]
    assert "/v2/health/ready" in " ".join(services["triton"]["healthcheck"]["test"])
    # Migrations once, then the API and the workers.
    assert services["migrate"]["command"][-2:] == ["db", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["api"]["command"][-1] == "serve"
    assert services["worker"]["command"][-1] == "worker"
    assert services["api"]["depends_on"]["triton"]["condition"] == "service_healthy"
    # The MariaDB container gets the same credentials the orchestrator uses.
    maria = services["mariadb"]["environment"]
    orch = services["api"]["environment"]
    assert maria["MARIADB_USER"] == orch["MYSQL_USER"]
    assert maria["MARIADB_DATABASE"] == orch["MYSQL_DATABASE"]
    assert (
        maria["MARIADB_PASSWORD"]
        == orch["MYSQL_PASSWORD"]
        == "${MYSQL_PASSWORD:?set MYSQL_PASSWORD}"
    )
    for svc in services.values():
        if "build" in svc:
            assert (ROOT / svc["build"]["dockerfile"]).is_file()


def test_compose_gpu_and_cpu_variants() -> None:
    gpu, cpu = (load_compose(p)["services"] for p in COMPOSE_FILES)
    assert set(gpu) == set(cpu)
    for name in set(gpu) - {"triton"}:
        assert gpu[name] == cpu[name], f"{name} differs between the variants"
    devices = gpu["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["triton"]["build"]["dockerfile"] == "docker/triton-gpu.Dockerfile"
    assert "deploy" not in cpu["triton"]
    assert cpu["triton"]["build"]["dockerfile"] == "docker/triton-cpu.Dockerfile"
    for profile in ("gpu", "cpu"):
        text = (DOCKER / f"triton-{profile}.Dockerfile").read_text()
        assert f"COPY --chown=10001:10001 model_repository/{profile} /models/{profile}" in text
        assert f'"--model-repository=/models/{profile}"' in text
        assert "USER 10001:10001" in text


def test_compose_shares_one_writable_model_repository() -> None:
    """Retraining in compose: Triton, the API and the workers mount the one `models` volume
    (filled from the Triton image, owned by the uid the orchestrator images run as), and the
    API and workers find the cpu profile where Triton reads it."""
    app_uid = "--uid 10001"
    assert app_uid in (DOCKER / "orchestrator.Dockerfile").read_text()
    for path in COMPOSE_FILES:
        compose = load_compose(path)
        assert "models" in compose["volumes"]
        services = compose["services"]
        for name in ("triton", "api", "worker"):
            assert "models:/models" in services[name]["volumes"], (path.name, name)
        for name in ("api", "worker"):
            assert services[name]["environment"]["MODEL_REPOSITORY"] == "/models/cpu"
        assert services["worker"]["depends_on"]["triton"] == {"condition": "service_healthy"}
        # The API's feature-state snapshots outlive its container (a recreated one resumes).
        assert "feature-states:/feature-states" in services["api"]["volumes"]
        assert services["api"]["environment"]["STATE_SNAPSHOT_DIR"] == "/feature-states"
    assert (
        "install -d -o 10001 -g 10001 /feature-states"
        in (DOCKER / "orchestrator.Dockerfile").read_text()
    )


# --- Kubernetes --------------------------------------------------------------------------------


def test_manifests_match_kubernetes_schemas(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_manifests_share_the_model_volume_and_switch_every_triton(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    """Retraining in Kubernetes: one ReadWriteMany volume mounted at /models in every Triton,
    API and worker pod (Triton's init container fills it from the same image), and a switch that
    resolves the headless `triton-peers` Service to every Triton pod."""
    _, docs = rendered
    claim = _one(docs, "PersistentVolumeClaim", "models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    specs = pod_specs(docs)
    for name in ("triton", "api", "worker"):
        spec = specs[name]
        assert {"name": "models", "persistentVolumeClaim": {"claimName": "models"}} in spec[
            "volumes"
        ]
        assert spec["securityContext"]["fsGroup"] == 10001
        main = next(c for c in spec["containers"] if c["name"] == name)
        assert {"name": "models", "mountPath": "/models"} in main["volumeMounts"]
    fill = next(c for c in specs["triton"]["initContainers"] if c["name"] == "fill-models")
    assert fill["image"] == specs["triton"]["containers"][0]["image"]
    assert "cp -Rn /models/. /shared/" in " ".join(fill["command"])
    config = _one(docs, "ConfigMap", "orchestrator-config")["data"]
    assert config["MODEL_REPOSITORY"] == "/models/cpu"
    # The API pods share their feature-state snapshots: a replaced or added pod resumes them.
    states = _one(docs, "PersistentVolumeClaim", "feature-states")
    assert states["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {"name": "feature-states", "mountPath": config["STATE_SNAPSHOT_DIR"]} in next(
        c for c in specs["api"]["containers"] if c["name"] == "api"
    )["volumeMounts"]
    peers = _one(docs, "Service", config["TRITON_PEERS"])
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"] == {"app.kubernetes.io/name": "triton"}
    assert [p["port"] for p in peers["spec"]["ports"]] == [int(config["TRITON_GRPC_PORT"])]


def test_manifest_env_and_secret_names(
    rendered: tuple[str, list[dict[str, Any]]], settings: set[str]
) -> None:
    _, docs = rendered
    config = _one(docs, "ConfigMap", "orchestrator-config")["data"]
    secret = _one(docs, "Secret", "orchestrator-secrets")["stringData"]
    assert set(secret) == SECRET_KEYS
    assert set(config) <= settings, set(config) - settings
    assert not set(config) & set(secret)
    refs = {"ConfigMap": config, "Secret": secret}
    for name, spec in pod_specs(docs).items():
        for c in containers(spec):
            for src in c.get("envFrom", []):
                kind, ref = next(iter(src.items()))
                target = {"configMapRef": "ConfigMap", "secretRef": "Secret"}[kind]
                _one(docs, target, ref["name"])
            for env in c.get("env", []):
                if c["image"].startswith(ORCHESTRATOR_IMAGE):
                    assert env["name"] in settings, f"{name}: {env['name']}"
                src = env.get("valueFrom", {})
                for kind, target in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if kind in src:
                        doc = _one(docs, target, src[kind]["name"])
                        data = doc.get("data") or doc.get("stringData")
                        assert src[kind]["key"] in data, f"{name}: {src[kind]}"
                        assert data is refs[target]


def test_manifest_ports_and_hosts(
    rendered: tuple[str, list[dict[str, Any]]], defaults: dict[str, str]
) -> None:
    _, docs = rendered
    config = _one(docs, "ConfigMap", "orchestrator-config")["data"]
    secret = _one(docs, "Secret", "orchestrator-secrets")["stringData"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    pods = {d["metadata"]["name"]: d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}}

    def port(service: str, name: str | None = None) -> int:
        ports = services[service]["spec"]["ports"]
        return next(p["port"] for p in ports if name is None or p["name"] == name)

    for var in (
        "MYSQL_PORT",
        "TRITON_HTTP_PORT",
        "TRITON_GRPC_PORT",
        "TRITON_METRICS_PORT",
        "API_PORT",
    ):
        assert config[var] == defaults[var]
    assert port(config["MYSQL_HOST"]) == int(config["MYSQL_PORT"])
    for var, name in (("HTTP", "http"), ("GRPC", "grpc"), ("METRICS", "metrics")):
        assert port(config["TRITON_HOST"], name) == int(config[f"TRITON_{var}_PORT"])
    assert port("api") == int(config["API_PORT"])
    redis = urlparse(secret["REDIS_URL"])
    assert redis.scheme == "redis"
    assert port(str(redis.hostname)) == redis.port
    # Each Service selects exactly one workload, whose containers declare the named target ports.
    for sname, svc in services.items():
        selector = svc["spec"]["selector"]
        chosen = [
            w
            for w in pods.values()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(chosen) == 1, sname
        declared = {
            (p.get("name"), p["containerPort"])
            for c in chosen[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for p in svc["spec"]["ports"]:
            assert (p["targetPort"], p["port"]) in declared, f"{sname}: {p}"


def test_manifest_probes_resources_and_budgets(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = rendered
    specs = pod_specs(docs)
    for name, spec in specs.items():
        for c in containers(spec):
            assert {"requests", "limits"} <= set(c.get("resources", {})), f"{name}/{c['name']}"
        if name != "mysql":  # the MariaDB image's entrypoint drops root itself
            assert spec["securityContext"]["runAsNonRoot"] is True, name
    api = specs["api"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert specs["api"]["initContainers"][0]["command"][-2:] == ["db", "migrate"]
    assert specs["worker"]["containers"][0]["command"][-1] == "worker"
    triton = specs["triton"]["containers"][0]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    gpus = triton["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus == "1") if overlay == "gpu" else (gpus is None), overlay
    assert triton["image"].startswith(f"trading-ml-triton-{overlay}:")
    hpa = _one(docs, "HorizontalPodAutoscaler", "api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for name in ("api", "triton", "worker"):
        pdb = _one(docs, "PodDisruptionBudget", name)
        workload = _one(docs, "Deployment", name)
        assert pdb["spec"]["selector"] == workload["spec"]["selector"]


# --- Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lints_clean(path: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_hardened(path: Path) -> None:
    text = path.read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    stages = set(re.findall(r"^FROM \S+ AS (\S+)", text, re.MULTILINE))
    assert froms
    # Every base image is pinned; a stage built on an earlier stage of the file names that stage.
    assert all(f in stages or (":" in f and not f.endswith(":latest")) for f in froms)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert "HEALTHCHECK" in text
    if path.name.startswith("triton-"):
        assert froms == [f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"]


# --- Triton gpu profile --------------------------------------------------------------------------


def test_gpu_profile_present() -> None:
    assert len(GPU_CONFIGS) >= 3


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.parent.name)
def test_gpu_config_uses_shipped_backends(path: Path) -> None:
    config = parse_pbtxt(path.read_text())
    model_dir = path.parent
    assert config["name"] == [model_dir.name]
    platform, backend = config.get("platform", []), config.get("backend", [])
    assert len(platform) + len(backend) == 1, "exactly one of platform / backend"
    assert set(platform) <= TRITON_PLATFORMS
    assert set(backend) <= TRITON_BACKENDS
    params = parameters(config)
    if platform == ["ensemble"]:
        for step in config["ensemble_scheduling"][0]["step"]:
            assert (model_dir.parent / step["model_name"][0] / "config.pbtxt").is_file()
        return
    assert int(config["max_batch_size"][0]) > 0
    assert "dynamic_batching" in config
    assert {g["kind"][0] for g in config["instance_group"]} == {"KIND_GPU"}
    if backend == ["fil"]:
        assert set(params) <= FIL_PARAMETERS | OWN_PARAMETERS, set(params)
        assert params["model_type"] in FIL_MODEL_TYPES
    else:
        assert set(params) <= OWN_PARAMETERS
    versions = [d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    assert versions, "no version directory"
    if "default_model_filename" in config:
        assert (versions[0] / config["default_model_filename"][0]).is_file()


# --- Triton cpu profile: Python-based backends installed once -------------------------------------


@pytest.mark.parametrize("path", CPU_CONFIGS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_cpu_config_names_an_installed_runner_and_ships_no_code(path: Path) -> None:
    config = parse_pbtxt(path.read_text())
    (runner,) = config["backend"]
    assert (RUNNERS / runner / "model.py").is_file(), f"{runner} is not a runner"
    for version in (d for d in path.parent.iterdir() if d.is_dir() and d.name.isdigit()):
        assert not list(version.glob("*.py")), f"{version} holds code; it belongs in a backend"


def test_cpu_image_installs_the_runners_as_backends() -> None:
    text = (DOCKER / "triton-cpu.Dockerfile").read_text()
    assert "COPY model_repository/backends/ /opt/tritonserver/backends/" in text


def test_pbtxt_parser() -> None:
    parsed = parse_pbtxt(
        'name: "m"\n# c\ninput [ { name: "A", dims: [ 1, 2 ] } ]\n'
        'parameters { key: "k" value: { string_value: "{\\"x\\":1}" } }\n'
    )
    assert parsed["input"][0]["dims"] == ["1", "2"]
    assert parameters(parsed) == {"k": '{"x":1}'}
    with pytest.raises((ValueError, IndexError)):
        parse_pbtxt("name: { ")
