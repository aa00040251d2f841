"""Ray Tune + Optuna sweeps; every trial is a Ray Train run tracked as a nested MLflow run.

Pattern (Ray 2.5x "Train V2"): the Tune trainable is a function that builds a ``TorchTrainer``
with Tune's report callback and calls ``fit()``. The trial itself reserves almost nothing
(``{"CPU": 0.01}``) so its Train workers get the CPUs/GPUs; how many trials run at once follows
from ``ray.cluster_resources()``, so one sweep file fills 2 CPUs or 16 GPUs without edits.

Resume: the Tune experiment lives in ``<storage>/<sweep_id>``; ``resume=True`` restores it with
``Tuner.restore`` (finished trials are kept, not rerun). A trial's Train run and its MLflow run
are keyed by (sweep id, Tune trial id), so a retried or resumed trial continues both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from cjepa.config import ExperimentConfig, flatten
from cjepa.distributed import tracking
from cjepa.distributed.callbacks import PendingWatchdog, TrialProgress
from cjepa.distributed.placement import node_resources, plan_resources
from cjepa.distributed.registry import Registered, register_best
from cjepa.distributed.resources import TRIAL_CPU, ledger_name, start_ledger
from cjepa.distributed.train import Scaling
from cjepa.distributed.trial import Stages, SweepInfo, run_controls_task, run_trial
from cjepa.evaluation.stage import check_stages, get_stage
from cjepa.sweeps import SweepSpec, grid_trials, may_autoscale

__all__ = [
    "PendingWatchdog",
    "SweepResult",
    "node_resources",
    "plan_resources",
    "run_controls_task",
    "run_sweep",
]


def _search_space(spec: SweepSpec) -> dict[str, Any]:
    make = {
        "choice": lambda d: tune.choice(d["values"]),
        "uniform": lambda d: tune.uniform(d["low"], d["high"]),
        "loguniform": lambda d: tune.loguniform(d["low"], d["high"]),
        "randint": lambda d: tune.randint(d["low"], d["high"]),
        "quniform": lambda d: tune.quniform(d["low"], d["high"], d["q"]),
    }
    space = {k: make[d["type"]](d) for k, d in spec.space.items()}
    if len(spec.seeds) > 1:
        space["train.seed"] = tune.choice(spec.seeds)
    else:
        space["train.seed"] = spec.seeds[0]
    return space


@dataclass
class SweepResult:
    """``rows``: one per trial Tune knows of (``complete``: it trained, evaluated and logged
    everything; ``error``: it failed); ``total``: the trials the spec asks for."""

    sweep_id: str
    parent_run_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""
    total: int = 0
    experiment_id: str | None = None
    ended: int = 0  # trials Tune ended (TERMINATED, including early-stopped, or ERROR)
    #: Train worker groups removed by the sweep because their trial ended without removing them
    #: (an ASHA stop, a trial error): what Ray would otherwise keep reserved until the driver exits.
    released: int = 0
    #: The best trial's predictor in the MLflow Model Registry (None: untracked, interrupted, or
    #: no trial logged the sweep's metric).
    model: Registered | None = None
    #: ``cjepa.encoders.quality`` metrics of a learned encoder (set by ``run_ablation``).
    encoder_quality: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(1 for r in self.rows if r.get("complete"))

    @property
    def interrupted(self) -> bool:
        """Tune ended fewer trials than the spec asks for (stopped, e.g. by SIGINT)."""
        return self.ended < self.total


_EXISTS_HINT = "pass --resume to continue it or choose another sweep id"


def run_sweep(
    base: ExperimentConfig,
    spec: SweepSpec,
    *,
    sweep_id: str,
    storage_path: str | Path,
    tracking_uri: str | None,
    experiment_name: str = "cjepa",
    resume: bool = False,
    stages: Stages | None = None,
    stage_context: dict[str, str | None] | None = None,
    parent_tags: dict[str, str] | None = None,
    model_name: str | None = None,
) -> SweepResult:
    """Run (or resume) a sweep; returns one row per trial with its overrides and metrics.

    ``stages`` maps evaluation stage names (``cjepa.evaluation.stage.STAGES``) to their
    options; each trial runs them after training. ``stage_context`` gives them the encoder spec
    and episode directory behind the slots. A tracked sweep that ends registers its best trial's
    predictor as a version of ``model_name`` (default ``cjepa-<sweep_id>``;
    ``cjepa.distributed.registry``).
    """
    stages = {"final_validation": {}} if stages is None else dict(stages)
    for name in check_stages(stages):  # unknown names, bad options and import errors
        get_stage(name)  # surface before any trial starts
    storage = Path(storage_path).resolve()
    scaling, concurrent = plan_resources(spec, ray.cluster_resources(), node_resources())
    # Everything that can refuse the sweep does so before its MLflow parent run exists, so a
    # bad grid or an existing sweep id leaves nothing RUNNING.
    trial_space, total = _trial_space(spec, base)
    path = storage / sweep_id
    if path.exists() and not resume:
        raise FileExistsError(f"sweep {sweep_id!r} already exists at {path}; {_EXISTS_HINT}")
    parent = _Parent.open(tracking_uri, experiment_name, sweep_id, parent_tags)
    parent.log_params(base, spec, stages)
    info = _sweep_info(spec, sweep_id, storage, scaling, parent, stage_context)
    param_space = {
        "base": base.to_dict(),
        "sweep": info,
        "stages": stages,
        "trial": trial_space,
    }
    tuner = _tuner(spec, param_space, scaling, concurrent, total, storage, sweep_id, resume)
    grid, released = _fit(tuner, sweep_id, parent)
    ended = grid.num_terminated + grid.num_errors  # ASHA-stopped trials end TERMINATED too
    return SweepResult(
        sweep_id,
        parent.run_id,
        _rows(grid),
        path=str(path),
        total=total,
        experiment_id=parent.experiment_id,
        ended=ended,
        released=released,
        model=parent.register(spec, sweep_id, model_name) if ended >= total else None,
    )


def _sweep_info(
    spec: SweepSpec,
    sweep_id: str,
    storage: Path,
    scaling: Scaling,
    parent: _Parent,
    stage_context: dict[str, str | None] | None,
) -> dict[str, Any]:
    """What every trial shares, as the dict Tune's ``param_space`` carries (``SweepInfo``)."""
    return SweepInfo(
        sweep_id=sweep_id,
        uri=parent.uri,
        experiment_id=parent.experiment_id,
        parent_id=parent.run_id,
        train_storage=str(storage / "train"),
        scaling=vars(scaling),
        trainer=spec.trainer,
        context=dict(stage_context or {}),
        ledger=ledger_name(sweep_id),
        # a fixed-size cluster fails a trial that waits too long; an autoscaling one may add nodes
        pending_fail_s=0.0 if may_autoscale(spec) else spec.pending_fail_s,
    ).to_dict()


def _trial_space(spec: SweepSpec, base: ExperimentConfig) -> tuple[Any, int]:
    """Tune's space for ``param_space["trial"]`` and how many trials the spec asks for."""
    if spec.mode == "grid":
        trials = grid_trials(spec, base)
        return tune.grid_search(trials), len(trials)
    return _search_space(spec), spec.num_samples


@dataclass
class _Parent:
    """The sweep's MLflow parent run (all fields None without a tracking URI)."""

    uri: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None

    @classmethod
    def open(
        cls,
        uri: str | None,
        experiment_name: str,
        sweep_id: str,
        tags: dict[str, str] | None,
    ) -> _Parent:
        """Create the parent run, or reopen the one a resumed sweep already has."""
        if not uri:
            return cls()
        mlf = tracking.client(uri)
        experiment_id = tracking.get_or_create_experiment(mlf, experiment_name)
        run_id, _ = tracking.get_or_create_run(
            mlf,
            experiment_id,
            key={"cjepa.sweep_id": sweep_id, "cjepa.role": "sweep"},
            name=sweep_id,
            tags={**tracking.environment_tags(), **(tags or {})},
        )
        return cls(uri, experiment_id, run_id)

    def log_params(self, base: ExperimentConfig, spec: SweepSpec, stages: Stages) -> None:
        """The base config, the sweep spec and the stages' options, flattened."""
        if self.run_id is None:
            return
        tracking.MlflowTracker(self.uri, self.run_id).log_params(
            {
                **{f"base.{k}": v for k, v in flatten(base.to_dict()).items()},
                **{f"sweep.{k}": v for k, v in flatten(vars(spec)).items()},
                "stages": ",".join(stages),
                **{f"stages.{k}": v for k, v in flatten(stages).items()},
            }
        )

    def register(self, spec: SweepSpec, sweep_id: str, name: str | None) -> Registered | None:
        """The best trial's predictor into the Model Registry; a registry that refuses it is
        reported in one line (the sweep's results stand without it)."""
        if self.run_id is None:
            return None
        try:
            return register_best(
                self.uri,
                self.experiment_id,
                self.run_id,
                sweep_id=sweep_id,
                metric=spec.metric,
                direction=spec.direction,
                name=name,
            )
        except MlflowException as err:
            print(f"[sweep] best trial not registered in {self.uri}: {err.message}", flush=True)
            return None

    def fail(self, interrupted: bool) -> None:
        """End the parent and every child still open as FAILED (KILLED when interrupted)."""
        if self.run_id is None:
            return
        mlf = tracking.client(self.uri)
        tracking.end_run(mlf, self.run_id, failed=True, killed=interrupted)
        tracking.end_open_children(mlf, self.experiment_id, self.run_id)


def _tuner(
    spec: SweepSpec,
    param_space: dict[str, Any],
    scaling: Scaling,
    concurrent: int,
    total: int,
    storage: Path,
    sweep_id: str,
    resume: bool,
) -> tune.Tuner:
    """A new Tuner, or the saved one restored (``resume`` and a saved sweep at the path)."""
    # ray_train: the trial reserves almost nothing and its Train workers the CPUs/GPUs;
    # in_trial: the trial is the worker.
    resources = {"CPU": TRIAL_CPU}
    if spec.trainer == "in_trial":
        resources = {"CPU": scaling.cpus_per_worker, "GPU": 1 if scaling.use_gpu else 0}
    trainable = tune.with_resources(run_trial, resources)
    path = str(storage / sweep_id)
    if resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(
            path, trainable=trainable, resume_errored=True, param_space=param_space
        )
    optuna = spec.mode == "optuna"
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.direction,
            search_alg=OptunaSearch(seed=spec.seeds[0]) if optuna else None,
            scheduler=_asha(spec),
            num_samples=spec.num_samples if optuna else 1,
            max_concurrent_trials=concurrent,
        ),
        run_config=tune.RunConfig(
            name=sweep_id,
            storage_path=str(storage),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=[
                TrialProgress(total, spec.metric),
                PendingWatchdog(ledger_name(sweep_id), spec.pending_warn_s),
            ],
        ),
    )


def _asha(spec: SweepSpec) -> ASHAScheduler | None:
    if not spec.asha:
        return None
    return ASHAScheduler(grace_period=spec.grace_period, reduction_factor=spec.reduction_factor)


def _fit(tuner: tune.Tuner, sweep_id: str, parent: _Parent) -> tuple[tune.ResultGrid, int]:
    """Run the sweep; (Tune's results, Train worker groups the ledger released)."""
    # The legacy reporter at verbose=0 prints nothing; the new output engine prints a
    # configuration box and a TensorBoard hint even then.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ledger = start_ledger(sweep_id)
    try:
        grid = tuner.fit()
    except BaseException as err:  # never leave the parent RUNNING
        parent.fail(interrupted=isinstance(err, KeyboardInterrupt))
        raise
    finally:
        # Every trial has ended: nothing of theirs stays reserved for the rest of the driver.
        leftover = ray.get(ledger.release_all.remote())
        released = ray.get(ledger.released.remote())
        ray.kill(ledger)
    return grid, released + leftover


def _rows(grid: tune.ResultGrid) -> list[dict[str, Any]]:
    """One row per trial: its overrides, numeric ``family/metric`` results, error, complete."""
    rows = []
    for result in grid:
        trial = dict(result.config["trial"]) if result.config else {}
        metrics = result.metrics or {}
        rows.append(
            {
                **trial,
                **{k: v for k, v in metrics.items() if isinstance(v, int | float) and "/" in k},
                "error": repr(result.error) if result.error else None,
                "complete": bool(metrics.get("complete")),
            }
        )
    return rows
