"""How many trials of a sweep run at once, and with what Train scaling, on this cluster.

A plan that no node can place is refused here, before the sweep's MLflow parent run exists.
"""

from __future__ import annotations

import math

import ray

from cjepa.distributed.resources import TRIAL_CPU, resource_str
from cjepa.distributed.train import Scaling
from cjepa.sweeps import SweepSpec, may_autoscale


def plan_resources(
    spec: SweepSpec, resources: dict[str, float], nodes: list[dict[str, float]] | None = None
) -> tuple[Scaling, int]:
    """Per-trial Train scaling and how many trials fit at once in ``resources`` (the cluster's
    totals; ``nodes``: each alive node's resources, default one node holding them all).

    A ray_train trial reserves ``TRIAL_CPU`` beside its workers, so two 1-CPU trials do not fit
    in 2 CPUs (planning 2 at once left one waiting for the other's workers). A plan that no node
    can place raises here, before the sweep starts, unless an autoscaler may add nodes.
    """
    nodes = nodes or [resources]
    gpus = resources.get("GPU", 0)
    use_gpu = spec.use_gpu == "yes" or (spec.use_gpu == "auto" and gpus >= 1)
    # An autoscaling cluster may have no GPU node yet (min 0): with use_gpu=yes and an explicit
    # max_concurrent the trials wait as PENDING while the autoscaler adds GPU workers.
    if spec.use_gpu == "yes" and gpus < spec.workers_per_trial and not spec.max_concurrent:
        raise ValueError(
            f"sweep.use_gpu=yes but the cluster has {gpus} GPUs for "
            f"{spec.workers_per_trial} workers per trial; on an autoscaling cluster set "
            "sweep.max_concurrent (trials at once) and the autoscaler adds GPU workers"
        )
    cpus = resources.get("CPU", 1)
    trial_cpu = TRIAL_CPU if spec.trainer == "ray_train" else 0.0
    per_worker = min(spec.cpus_per_worker, (cpus - trial_cpu) / spec.workers_per_trial)
    if not may_autoscale(spec):
        _check_placeable(spec, per_worker, use_gpu, resources, nodes)
    if use_gpu:
        fit = max(math.floor(gpus / spec.workers_per_trial), spec.max_concurrent)
    else:
        fit = math.floor((cpus + 1e-9) / (per_worker * spec.workers_per_trial + trial_cpu))
    concurrent = max(1, fit if not spec.max_concurrent else min(fit, spec.max_concurrent))
    return Scaling(spec.workers_per_trial, use_gpu, per_worker, spec.placement), concurrent


def _check_placeable(
    spec: SweepSpec,
    per_worker: float,
    use_gpu: bool,
    resources: dict[str, float],
    nodes: list[dict[str, float]],
) -> None:
    """Every worker of a trial is one bundle ``{CPU: per_worker, GPU: 1 if use_gpu}`` on one
    node (``STRICT_SPREAD``: each on a different node); the evaluation task (ray_train) and an
    in_trial trial need the same on one node."""
    bundle = {"CPU": per_worker, **({"GPU": 1.0} if use_gpu else {})}
    per_node = [
        min(math.floor((node.get(k, 0) + 1e-9) / v) for k, v in bundle.items()) for node in nodes
    ]
    strict = spec.placement == "STRICT_SPREAD"
    fit = sum(min(n, 1) for n in per_node) if strict else sum(per_node)
    if fit >= spec.workers_per_trial:
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
    evaluation = " (and its evaluation task, one more)" if spec.trainer == "ray_train" else ""
    raise ValueError(
        f"sweep.workers_per_trial x sweep.cpus_per_worker = {spec.workers_per_trial} x "
        f"{resource_str(bundle)}{evaluation} cannot be placed: {fit} such bundle(s) fit "
        f"{'on different nodes ' if strict else ''}on this "
        f"cluster's {len(nodes)} node(s) (largest node {resource_str(largest)}, cluster "
        f"{resource_str(resources)}); lower sweep.cpus_per_worker or sweep.workers_per_trial, or "
        "set sweep.max_concurrent on an autoscaling cluster"
    )


def node_resources() -> list[dict[str, float]]:
    """Each alive node's total resources."""
    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")]
