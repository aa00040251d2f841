"""The cluster configs in cluster/: the Ray autoscaler YAMLs pass Ray's own validation (the code
`ray up` runs before it touches a cloud), the KubeRay manifests have the structure the operator
needs, both stay in step with constraints.txt, and a broken copy of each is refused. No cloud
access, no Kubernetes."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
AUTOSCALER_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
KUBERAY = CLUSTER / "kuberay.yaml"


def pinned(package: str) -> str:
    """The exact version of ``package`` in constraints.txt."""
    text = (REPO / "constraints.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==([^\s;]+)", text, flags=re.M)
    assert match, f"{package} is not pinned in constraints.txt"
    return match.group(1)


# --- Ray autoscaler (ray up) ---------------------------------------------------------------


def validate_autoscaler(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does before contacting the cloud: merge the provider's defaults
    (``prepare_config``) and check the result against Ray's JSON schema and its own rules
    (``validate_config``). Returns the prepared config; raises on an invalid one."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    pytest.importorskip("jsonschema")
    prepared = util.prepare_config(copy.deepcopy(config))
    util.validate_config(prepared)
    return prepared


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def gpu_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: node
        for name, node in config["available_node_types"].items()
        if node.get("resources", {}).get("GPU", 0) >= 1
    }


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_autoscaler_config_passes_ray_validation(name):
    prepared = validate_autoscaler(load(name))
    assert prepared["provider"]["type"] == name.split("-")[0]
    assert prepared["idle_timeout_minutes"] > 0


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_autoscaler_config_cpu_head_gpu_workers_from_zero(name):
    config = validate_autoscaler(load(name))
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    gpus = gpu_types(config)
    assert gpus, "no GPU worker type"
    for node in gpus.values():
        assert node["min_workers"] == 0 and 1 <= node["max_workers"] <= config["max_workers"]
        assert node["resources"]["CPU"] >= 1


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_autoscaler_config_keeps_dashboard_private_and_token_auth_on(name):
    config = validate_autoscaler(load(name))
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    for cmd in (*config["head_start_ray_commands"], *config["worker_start_ray_commands"]):
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, cmd
    # One token for every node, from the machine that runs `ray up`.
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    # No inbound rules of our own: Ray's default group admits SSH and in-cluster traffic only.
    assert "security_group" not in config["provider"]
    assert "firewall" not in str(config["provider"]).lower()


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_autoscaler_config_installs_project_with_the_pins(name):
    config = validate_autoscaler(load(name))
    torch = pinned("torch")
    ray_version = pinned("ray")
    assert config["file_mounts"]["~/cjepa"] == "."
    # prepare_config merges setup_commands into the head and worker lists.
    for key in ("head_setup_commands", "worker_setup_commands"):
        cmds = config[key]
        assert any("-c ~/cjepa/constraints.txt ~/cjepa" in c for c in cmds), cmds
        torch_first = next(i for i, c in enumerate(cmds) if f"torch=={torch}" in c)
        project = next(i for i, c in enumerate(cmds) if "constraints.txt" in c)
        assert torch_first < project, f"{key}: torch must be installed before the project"
    assert any("whl/cpu" in c for c in config["head_setup_commands"])  # CPU wheel on the head
    assert not any("whl/cpu" in c for c in config["worker_setup_commands"])
    images = {config["docker"]["head_image"], config["docker"]["worker_image"]}
    assert all(img.startswith(f"rayproject/ray:{ray_version}-py311") for img in images), images
    assert config["docker"]["worker_image"].endswith("-gpu")


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
def test_autoscaler_config_mounts_shared_storage_everywhere(name):
    config = validate_autoscaler(load(name))
    # Mounted on each host before its container starts, then bound into the container.
    assert any("mount -t nfs" in c and "/mnt/cjepa" in c for c in config["initialization_commands"])
    assert "-v /mnt/cjepa:/mnt/cjepa" in config["docker"]["run_options"]


def _unknown_top_level(c):
    c["idle_timeout"] = 5  # not a Ray field (idle_timeout_minutes is)


def _wrong_type_max_workers(c):
    c["max_workers"] = "eight"


def _wrong_type_gpu_count(c):
    next(iter(gpu_types(c).values()))["resources"]["GPU"] = "one"


def _unknown_node_type_key(c):
    next(iter(gpu_types(c).values()))["min_replicas"] = 0


def _head_type_missing(c):
    c["head_node_type"] = "no-such-type"


def _min_workers_over_max(c):
    next(iter(gpu_types(c).values()))["min_workers"] = c["max_workers"] + 1


def _docker_typo(c):
    c["docker"]["worker_imgae"] = c["docker"].pop("worker_image")


BREAKAGES = [
    _unknown_top_level,
    _wrong_type_max_workers,
    _wrong_type_gpu_count,
    _unknown_node_type_key,
    _head_type_missing,
    _min_workers_over_max,
    _docker_typo,
]


@pytest.mark.parametrize("name", AUTOSCALER_CONFIGS)
@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def test_broken_autoscaler_config_is_refused(name, breakage):
    jsonschema = pytest.importorskip("jsonschema")
    config = load(name)
    breakage(config)
    # Ray refuses with a schema error, a ValueError, or an assert (its docker check).
    with pytest.raises((jsonschema.ValidationError, ValueError, AssertionError)):
        validate_autoscaler(config)


# --- KubeRay -------------------------------------------------------------------------------

# Field names of the ray.io/v1 CRDs (KubeRay's apis/ray/v1 types); a typo in one is silently
# dropped by a lenient apply, so it fails here instead.
RAYCLUSTER_SPEC = {
    "authOptions",
    "autoscalerOptions",
    "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions",
    "headGroupSpec",
    "headServiceAnnotations",
    "historyServerOptions",
    "managedBy",
    "networkPolicy",
    "rayVersion",
    "suspend",
    "tlsOptions",
    "upgradeStrategy",
    "workerGroupSpecs",
}
HEAD_GROUP = {
    "enableIngress",
    "headService",
    "labels",
    "rayStartParams",
    "resources",
    "serviceType",
    "template",
}
WORKER_GROUP = {
    "groupName",
    "idleTimeoutSeconds",
    "labels",
    "maxReplicas",
    "minReplicas",
    "numOfHosts",
    "rayStartParams",
    "replicas",
    "resources",
    "scaleStrategy",
    "suspend",
    "template",
}
AUTOSCALER_OPTIONS = {
    "env",
    "envFrom",
    "idleTimeoutSeconds",
    "image",
    "imagePullPolicy",
    "resources",
    "securityContext",
    "upscalingMode",
    "version",
    "volumeMounts",
}
RAYJOB_SPEC = {
    "activeDeadlineSeconds",
    "backoffLimit",
    "clusterSelector",
    "deletionStrategy",
    "entrypoint",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "entrypointResources",
    "jobId",
    "managedBy",
    "metadata",
    "rayClusterSpec",
    "runtimeEnvYAML",
    "shutdownAfterJobFinishes",
    "submissionMode",
    "submitterConfig",
    "submitterPodTemplate",
    "suspend",
    "ttlSecondsAfterFinished",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}


class ManifestError(ValueError):
    pass


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ManifestError(message)


def _keys(obj: Any, allowed: set[str], where: str) -> None:
    _need(isinstance(obj, dict), f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = set(obj) - allowed
    _need(not unknown, f"{where}: unknown field(s) {sorted(unknown)}")


def _int(value: Any, where: str) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool), f"{where}: not an integer")
    return value


def _start_params(params: Any, where: str) -> None:
    _need(isinstance(params, dict), f"{where}.rayStartParams: expected a mapping")
    for key, value in params.items():  # map[string]string: `num-cpus: 6` is refused by the API
        _need(isinstance(value, str), f"{where}.rayStartParams.{key}: must be a string")


def _containers(group: dict, where: str) -> list[dict]:
    containers = group["template"]["spec"]["containers"]
    _need(isinstance(containers, list) and containers, f"{where}: no containers")
    return containers


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def check_raycluster(doc: dict) -> None:
    _need(doc.get("apiVersion") == "ray.io/v1", f"RayCluster apiVersion {doc.get('apiVersion')}")
    spec = doc["spec"]
    _keys(spec, RAYCLUSTER_SPEC, "RayCluster.spec")
    _need(spec.get("enableInTreeAutoscaling") is True, "autoscaling is not enabled")
    _keys(spec.get("autoscalerOptions", {}), AUTOSCALER_OPTIONS, "autoscalerOptions")
    _need(spec.get("authOptions", {}).get("mode") == "token", "token authentication is off")
    _need(spec.get("rayVersion") == pinned("ray"), "rayVersion differs from constraints.txt")

    head = spec["headGroupSpec"]
    _keys(head, HEAD_GROUP, "headGroupSpec")
    _start_params(head["rayStartParams"], "headGroupSpec")
    _need(head.get("serviceType", "ClusterIP") == "ClusterIP", "head service exposed outside")
    head_env = _env(_containers(head, "headGroupSpec")[0])
    uri = head_env.get("MLFLOW_TRACKING_URI", {})
    _need("secretKeyRef" in uri.get("valueFrom", {}), "MLFLOW_TRACKING_URI not from a Secret")

    gpu_groups = []
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        where = f"workerGroupSpecs[{i}]"
        _keys(group, WORKER_GROUP, where)
        _start_params(group["rayStartParams"], where)
        lo = _int(group["minReplicas"], f"{where}.minReplicas")
        hi = _int(group["maxReplicas"], f"{where}.maxReplicas")
        _need(0 <= lo <= _int(group.get("replicas", 0), f"{where}.replicas") <= hi, where)
        limits = _containers(group, where)[0].get("resources", {}).get("limits", {})
        if int(limits.get("nvidia.com/gpu", 0)) >= 1:
            gpu_groups.append(group)
    _need(bool(gpu_groups), "no worker group with nvidia.com/gpu limits")
    _need(any(g["minReplicas"] == 0 for g in gpu_groups), "no GPU group that scales from 0")


def check_rayjob(doc: dict, cluster_name: str) -> None:
    _need(doc.get("apiVersion") == "ray.io/v1", f"RayJob apiVersion {doc.get('apiVersion')}")
    spec = doc["spec"]
    _keys(spec, RAYJOB_SPEC, "RayJob.spec")
    _need(spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES, "bad submissionMode")
    selector = spec.get("clusterSelector", {}).get("ray.io/cluster")
    _need(selector == cluster_name or "rayClusterSpec" in spec, "RayJob targets no cluster")
    argv = shlex.split(spec["entrypoint"])
    _need(argv[:2] == ["python", "experiments/ablate_masking.py"], f"entrypoint {argv}")
    preset = argv[argv.index("--preset") + 1]
    _need(preset == "paper", f"preset {preset}")
    _need((REPO / "experiments/configs/ablate" / f"{preset}.yaml").is_file(), "no such preset")
    root = argv[argv.index("--root") + 1]
    _need(root.startswith("/"), "--root must be an absolute path on the shared volume")
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML", "{}")) or {}
    _need(isinstance(runtime_env, dict), "runtimeEnvYAML is not a mapping")


def check_kuberay(docs: list[dict]) -> None:
    kinds = {d["kind"]: d for d in docs}
    _need({"RayCluster", "RayJob"} <= set(kinds), f"kinds {sorted(kinds)}")
    cluster = kinds["RayCluster"]
    check_raycluster(cluster)
    check_rayjob(kinds["RayJob"], cluster["metadata"]["name"])
    # Every volume claim the pods mount is defined in the manifest, and --root lies on it.
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        for vol in group["template"]["spec"].get("volumes", []):
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                _need(claim in claims, f"claim {claim} not defined")
    mounts = {
        m["mountPath"] for g in groups for m in _containers(g, "group")[0].get("volumeMounts", [])
    }
    root = shlex.split(kinds["RayJob"]["spec"]["entrypoint"])
    root = root[root.index("--root") + 1]
    _need(any(root.startswith(m + "/") for m in mounts), f"--root {root} is on no mounted volume")


def load_kuberay() -> list[dict]:
    return [d for d in yaml.safe_load_all(KUBERAY.read_text()) if d]


def test_kuberay_manifests_have_the_required_structure():
    docs = load_kuberay()
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "RayCluster", "RayJob"]
    check_kuberay(docs)


def _find(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def _gpu_group(docs):
    return _find(docs, "RayCluster")["spec"]["workerGroupSpecs"][0]


def _old_api(docs):
    _find(docs, "RayCluster")["apiVersion"] = "ray.io/v1alpha1"


def _autoscaling_off(docs):
    _find(docs, "RayCluster")["spec"]["enableInTreeAutoscaling"] = False


def _typo_in_spec(docs):
    spec = _find(docs, "RayCluster")["spec"]
    spec["enableInTreeAutoscalling"] = spec.pop("enableInTreeAutoscaling")


def _gpu_min_one(docs):
    group = _gpu_group(docs)
    group["minReplicas"] = group["replicas"] = 1


def _replicas_as_string(docs):
    _gpu_group(docs)["minReplicas"] = "0"


def _no_gpu_limit(docs):
    resources = _gpu_group(docs)["template"]["spec"]["containers"][0]["resources"]
    for part in resources.values():
        part.pop("nvidia.com/gpu", None)


def _start_param_not_string(docs):
    _find(docs, "RayCluster")["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 6


def _other_entrypoint(docs):
    _find(docs, "RayJob")["spec"]["entrypoint"] = "python experiments/train_world_model.py"


def _relative_root(docs):
    job = _find(docs, "RayJob")["spec"]
    job["entrypoint"] = job["entrypoint"].replace("--root /mnt/cjepa/ablate", "--root runs/ablate")


def _job_kind_missing(docs):
    docs.remove(_find(docs, "RayJob"))


def _uri_inline(docs):
    head = _find(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    for env in head["containers"][0]["env"]:
        if env["name"] == "MLFLOW_TRACKING_URI":
            env.pop("valueFrom")
            env["value"] = "http://mlflow:5000"


K8S_BREAKAGES = [
    _old_api,
    _autoscaling_off,
    _typo_in_spec,
    _gpu_min_one,
    _replicas_as_string,
    _no_gpu_limit,
    _start_param_not_string,
    _other_entrypoint,
    _relative_root,
    _job_kind_missing,
    _uri_inline,
]


@pytest.mark.parametrize("breakage", K8S_BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def test_broken_kuberay_manifest_is_refused(breakage):
    docs = load_kuberay()
    breakage(docs)
    with pytest.raises(ManifestError):
        check_kuberay(docs)


def test_readme_documents_each_config():
    readme = (CLUSTER / "README.md").read_text()
    for name in (*AUTOSCALER_CONFIGS, KUBERAY.name):
        assert f"cluster/{name}" in readme, name
    for command in ("ray up", "ray dashboard", "ray job submit", "ray down", "RAY_AUTH_MODE=token"):
        assert command in readme, command
