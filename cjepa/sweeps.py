"""Sweep specifications (``experiments/configs/sweeps/*.yaml``) and grid expansion.

Plain data, no Ray: ``cjepa.distributed.sweep`` turns a ``SweepSpec`` into a Ray Tune run.

A spec names dotted config fields. ``mode: grid`` runs every combination of ``grid`` values for
every seed (the paper's tables), then every combination of each entry of ``blocks`` (``{grid:
{...}, seeds: [...]}``, seeds defaulting to the spec's) so that one sweep can hold e.g. three
seeds of a few cells plus a one-seed budget curve; combinations that resolve to the same
experiment (e.g. every unit at |M| = 0, which is OC-JEPA) run once. ``mode: optuna`` samples
``space`` with Optuna's TPE for ``num_samples`` trials, optimising ``metric`` in ``direction``.

``trainer`` says where a trial trains: ``ray_train`` (a ``TorchTrainer`` per trial: data-parallel
workers, GPUs, worker-level fault tolerance) or ``in_trial`` (one worker, in the Tune trial's own
process, checkpointing through Tune: no Train controller or worker actors to start per trial,
which on a 2-core machine is about a fifth of a short trial; see README, "What make run does").

``pending_warn_s`` / ``pending_fail_s``: a trial that waits longer than ``pending_warn_s`` for
its resources (its Train worker group, its evaluation task, or, still PENDING in Tune, its own
actor) is logged with what it needs, the cluster's free resources and Ray's pending placement
groups; a worker group or evaluation task still waiting after ``pending_fail_s`` fails its
trial with that message (0: wait forever). The failure applies to fixed-size clusters only:
with ``max_concurrent`` set or ``use_gpu: yes`` (an autoscaler may add the nodes) it only logs.

``placement``: how a ``ray_train`` trial's workers are placed on the nodes (Ray's placement-group
strategy): ``PACK`` (default: as few nodes as possible), ``SPREAD`` (across nodes where they
fit) or ``STRICT_SPREAD`` (every worker on a different node, e.g. ``make cluster-local``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cjepa.config import ExperimentConfig
from cjepa.schema import apply_overrides, check, from_dict, one_of, parse_yaml

DISTRIBUTIONS = {
    "choice": ("values",),
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "randint": ("low", "high"),
    "quniform": ("low", "high", "q"),
}

TRAINERS = ("ray_train", "in_trial")
#: Ray placement-group strategies for a trial's Train workers (``sweep.placement``).
PLACEMENTS = ("PACK", "SPREAD", "STRICT_SPREAD")


@dataclass
class SweepSpec:
    mode: str = "grid"
    metric: str = "val/future_visible"
    direction: str = "min"
    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 8
    asha: bool = False
    grace_period: int = 1
    reduction_factor: int = 2
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    placement: str = "PACK"
    use_gpu: str = "auto"
    max_concurrent: int = 0
    trainer: str = "ray_train"
    pending_warn_s: float = 120.0
    pending_fail_s: float = 900.0

    def __post_init__(self) -> None:
        self._check_modes()
        self._check_scaling()
        for key, values in self.grid.items():
            _check_values(f"sweep.grid.{key}", values)
        for i, block in enumerate(self.blocks):
            self._check_block(i, block)
        if self.blocks and self.mode != "grid":
            raise ValueError("sweep.blocks is only for mode: grid")
        if self.mode == "optuna":
            check(bool(self.space), "sweep.space", self.space, "non-empty in optuna mode")
        for key, dist in self.space.items():
            kind = dist.get("type")
            one_of(f"sweep.space.{key}.type", kind, DISTRIBUTIONS)
            needed = set(DISTRIBUTIONS[kind])
            check(
                set(dist) - {"type"} == needed,
                f"sweep.space.{key}",
                dist,
                f"{{type: {kind}, {', '.join(sorted(needed))}}}",
            )

    def _check_modes(self) -> None:
        one_of("sweep.mode", self.mode, ["grid", "optuna"])
        one_of("sweep.trainer", self.trainer, TRAINERS)
        if self.trainer == "in_trial":
            check(
                self.workers_per_trial == 1,
                "sweep.workers_per_trial",
                self.workers_per_trial,
                "1 with sweep.trainer=in_trial (data-parallel training needs ray_train)",
            )
        one_of("sweep.direction", self.direction, ["min", "max"])
        one_of("sweep.use_gpu", self.use_gpu, ["auto", "yes", "no"])
        check(len(self.seeds) >= 1, "sweep.seeds", self.seeds, "a non-empty list")
        check(self.num_samples >= 1, "sweep.num_samples", self.num_samples, ">= 1")

    def _check_scaling(self) -> None:
        check(
            self.workers_per_trial >= 1, "sweep.workers_per_trial", self.workers_per_trial, ">= 1"
        )
        check(self.cpus_per_worker > 0, "sweep.cpus_per_worker", self.cpus_per_worker, "> 0")
        one_of("sweep.placement", self.placement, PLACEMENTS)
        check(
            self.max_concurrent >= 0, "sweep.max_concurrent", self.max_concurrent, ">= 0 (0 = auto)"
        )
        check(self.pending_warn_s > 0, "sweep.pending_warn_s", self.pending_warn_s, "> 0")
        check(
            self.pending_fail_s == 0 or self.pending_fail_s >= self.pending_warn_s,
            "sweep.pending_fail_s",
            self.pending_fail_s,
            f">= sweep.pending_warn_s ({self.pending_warn_s}), or 0 (never fail)",
        )

    def _check_block(self, i: int, block: Any) -> None:
        check(
            isinstance(block, dict) and set(block) <= {"grid", "seeds"} and "grid" in block,
            f"sweep.blocks[{i}]",
            block,
            "{grid: {field: [values]}, seeds: [ints] (optional)}",
        )
        for key, values in block["grid"].items():
            _check_values(f"sweep.blocks[{i}].grid.{key}", values)
        seeds = block.get("seeds", self.seeds)
        check(
            isinstance(seeds, list) and len(seeds) >= 1,
            f"sweep.blocks[{i}].seeds",
            seeds,
            "a non-empty list",
        )


def _check_values(name: str, values: Any) -> None:
    check(isinstance(values, list) and len(values) > 0, name, values, "a non-empty list of values")


def may_autoscale(spec: SweepSpec) -> bool:
    """The spec expects nodes to be added while it runs (``max_concurrent`` set, or GPUs
    required): resources missing now are not a reason to refuse or fail a trial."""
    return bool(spec.max_concurrent) or spec.use_gpu == "yes"


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    data = parse_yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"sweep file {path} must hold a mapping")
    plain = []
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        section, dot, field_name = key.partition(".")
        if sep and dot and section in ("grid", "space"):  # grid keys are dotted field names
            value = parse_yaml(raw, f"sweep override {item!r}")
            data[section] = {**(data.get(section) or {}), field_name: value}
        else:
            plain.append(item)
    try:
        return from_dict(SweepSpec, apply_overrides(data, plain), prefix="sweep")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def swept_fields(spec: SweepSpec) -> set[str]:
    """The experiment fields a sweep sets per trial (an override of them in the preset's
    ``experiment`` section would be silently replaced)."""
    keys = set(spec.grid) | set(spec.space) | {"train.seed"}
    for block in spec.blocks:
        keys |= set(block["grid"])
    return keys


def apply_trial(base: dict[str, Any], trial: dict[str, Any]) -> ExperimentConfig:
    """The experiment of one trial: ``base`` (a config dict) with dotted ``trial`` values."""
    data = json.loads(json.dumps(base))  # deep copy
    for key, value in trial.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    # Budget and ratio were both resolved in the base; a trial sets one, so drop the other.
    masking = data.get("masking", {})
    if "masking.budget" in trial and "masking.ratio" not in trial:
        masking["ratio"] = None
    if "masking.ratio" in trial and "masking.budget" not in trial:
        masking["budget"] = None
    if trial.get("masking.unit") not in (None, "none") and masking.get("budget") == 0:
        masking["unit"] = "none"  # |M| = 0 hides nothing whatever the unit: OC-JEPA
    return from_dict(ExperimentConfig, data)


def config_key(cfg: ExperimentConfig) -> str:
    """Short stable hash of a resolved experiment (the name is not part of it)."""
    data = dataclasses.replace(cfg, name="").to_dict()
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def grid_trials(spec: SweepSpec, base: ExperimentConfig) -> list[dict[str, Any]]:
    """Every distinct trial of a grid spec, as dotted overrides (validated: a bad key or value
    raises here, before anything runs)."""
    blocks = [{"grid": spec.grid, "seeds": spec.seeds}] if spec.grid or not spec.blocks else []
    blocks += [{"grid": b["grid"], "seeds": b.get("seeds", spec.seeds)} for b in spec.blocks]
    base_dict = base.to_dict()
    trials, seen = [], set()
    combos = [
        (dict(zip(b["grid"], values, strict=True)), seed)
        for b in blocks
        for values in itertools.product(*b["grid"].values())
        for seed in b["seeds"]
    ]
    for point, seed in combos:
        trial = {**point, "train.seed": seed}
        cfg = apply_trial(base_dict, trial)
        key = config_key(cfg)
        if key in seen:
            continue
        seen.add(key)
        if cfg.masking.unit == "none":
            trial = {**trial, "masking.unit": "none"}
        trials.append(trial)
    return trials


def trial_label(trial: dict[str, Any]) -> str:
    """Readable run name: ``unit=object,budget=2,seed=0``."""
    return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in trial.items())
