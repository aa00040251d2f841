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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from cjepa.config import ExperimentConfig, flatten
from cjepa.distributed import tracking
from cjepa.distributed.train import Scaling, load_trained, make_trainer
from cjepa.sweeps import SweepSpec, apply_trial, grid_trials, trial_label
from cjepa.train import EVAL_PROTOCOL

#: An evaluation stage: (experiment config, final training state) -> final metrics. Stages run
#: in the trial after training; their metrics land in the trial's MLflow run and the table.
Stage = Callable[[ExperimentConfig, dict[str, Any]], dict[str, float]]


def final_validation(cfg: ExperimentConfig, state: dict[str, Any]) -> dict[str, float]:
    """The last validation row of training (history and future losses)."""
    rows = [r for r in state["history"] if "val/future_visible" in r]
    return (
        {f"final/{k[4:]}": v for k, v in rows[-1].items() if k.startswith("val/")} if rows else {}
    )


#: Stages by name (trial configs carry names, not functions). Later evaluation modules add
#: theirs with ``register_stage``.
STAGES: dict[str, Stage] = {"final_validation": final_validation}


def register_stage(name: str, stage: Stage) -> None:
    STAGES[name] = stage


def plan_resources(spec: SweepSpec, resources: dict[str, float]) -> tuple[Scaling, int]:
    """Per-trial Train scaling and how many trials fit at once in ``resources``."""
    gpus = resources.get("GPU", 0)
    use_gpu = spec.use_gpu == "yes" or (spec.use_gpu == "auto" and gpus >= 1)
    if spec.use_gpu == "yes" and gpus < spec.workers_per_trial:
        raise ValueError(
            f"sweep.use_gpu=yes but the cluster has {gpus} GPUs for "
            f"{spec.workers_per_trial} workers per trial"
        )
    cpus = resources.get("CPU", 1)
    per_worker = min(spec.cpus_per_worker, cpus / spec.workers_per_trial)
    if use_gpu:
        fit = math.floor(gpus / spec.workers_per_trial)
    else:
        fit = math.floor((cpus + 1e-9) / (per_worker * spec.workers_per_trial))
    concurrent = max(1, fit if not spec.max_concurrent else min(fit, spec.max_concurrent))
    return Scaling(spec.workers_per_trial, use_gpu, per_worker), concurrent


def _trial(config: dict[str, Any]) -> None:
    """The Tune trainable: one Ray Train run plus evaluation stages, tracked in MLflow."""
    ctx = tune.get_context()
    trial_id, sweep = ctx.get_trial_id(), config["sweep"]
    trial = config["trial"]
    cfg = apply_trial(config["base"], trial)
    tracker, run_id = None, None
    if sweep["uri"]:
        mlf = tracking.client(sweep["uri"])
        run_id, _ = tracking.get_or_create_run(
            mlf,
            sweep["experiment_id"],
            name=trial_label(trial),
            parent_id=sweep["parent_id"],
            key={"cjepa.sweep_id": sweep["sweep_id"], "cjepa.trial_id": trial_id},
            tags={
                **tracking.environment_tags(),
                "cjepa.role": "trial",
                "cjepa.seed": str(cfg.train.seed),
                "cjepa.eval_protocol": EVAL_PROTOCOL,
            },
        )
        tracker = tracking.MlflowTracker(sweep["uri"], run_id)
        tracker.log_params(
            {
                **flatten(cfg.to_dict()),
                "eval_protocol": EVAL_PROTOCOL,
                **{f"trial.{k}": v for k, v in trial.items()},
            }
        )
    try:
        trainer = make_trainer(
            cfg,
            name=f"{sweep['sweep_id']}-{trial_id}",
            storage_path=sweep["train_storage"],
            scaling=Scaling(**sweep["scaling"]),
            mlflow={"uri": sweep["uri"], "run_id": run_id} if run_id else None,
            callbacks=[TuneReportCallback()],
        )
        state = load_trained(trainer.fit())
        final: dict[str, float] = {}
        for name in config["stages"]:
            final.update(STAGES[name](cfg, state))
        if tracker is not None:
            _log_outputs(tracker, cfg, state, final)
            tracking.end_run(tracking.client(sweep["uri"]), run_id)
        # The trial's last Tune result carries the stage metrics, so tables need no MLflow.
        last = state["history"][-1] if state["history"] else {}
        tune.report({**last, **final, "step": int(state["step"]), "mlflow_run_id": run_id or ""})
    except BaseException:
        if run_id is not None:
            tracking.end_run(tracking.client(sweep["uri"]), run_id, failed=True)
        raise


def _log_outputs(tracker: tracking.MlflowTracker, cfg, state, final: dict[str, float]) -> None:
    import tempfile

    import torch

    from cjepa.distributed.artifacts import loss_curve_png

    tracker.log_metrics(final, int(state["step"]))
    tracker.log_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), "config.yaml")
    with tempfile.TemporaryDirectory() as d:
        torch.save(
            {"model": state["model"], "config": cfg.to_dict(), "step": state["step"]},
            Path(d) / "predictor.pt",
        )
        tracker.log_artifact(Path(d) / "predictor.pt", "checkpoint")
        loss_curve_png(state["history"], Path(d) / "loss_curve.png", title=cfg.name)
        tracker.log_artifact(Path(d) / "loss_curve.png", "plots")


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
    sweep_id: str
    parent_run_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""


def run_sweep(
    base: ExperimentConfig,
    spec: SweepSpec,
    *,
    sweep_id: str,
    storage_path: str | Path,
    tracking_uri: str | None,
    experiment_name: str = "cjepa",
    resume: bool = False,
    stages: tuple[str, ...] = ("final_validation",),
    parent_tags: dict[str, str] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep; returns one row per trial with its overrides and metrics."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown evaluation stage(s) {unknown}; known: {sorted(STAGES)}")
    storage = Path(storage_path).resolve()
    scaling, concurrent = plan_resources(spec, ray.cluster_resources())
    parent_id = experiment_id = None
    if tracking_uri:
        mlf = tracking.client(tracking_uri)
        experiment_id = tracking.get_or_create_experiment(mlf, experiment_name)
        parent_id, _ = tracking.get_or_create_run(
            mlf,
            experiment_id,
            key={"cjepa.sweep_id": sweep_id, "cjepa.role": "sweep"},
            name=sweep_id,
            tags={**tracking.environment_tags(), **(parent_tags or {})},
        )
        parent = tracking.MlflowTracker(tracking_uri, parent_id)
        parent.log_params(
            {
                **{f"base.{k}": v for k, v in flatten(base.to_dict()).items()},
                **{f"sweep.{k}": v for k, v in flatten(vars(spec)).items()},
            }
        )
    sweep_info = {
        "sweep_id": sweep_id,
        "uri": tracking_uri,
        "experiment_id": experiment_id,
        "parent_id": parent_id,
        "train_storage": str(storage / "train"),
        "scaling": vars(scaling),
    }
    param_space: dict[str, Any] = {
        "base": base.to_dict(),
        "sweep": sweep_info,
        "stages": list(stages),
    }
    search_alg, num_samples = None, 1
    if spec.mode == "grid":
        param_space["trial"] = tune.grid_search(grid_trials(spec, base))
    else:
        param_space["trial"] = _search_space(spec)
        search_alg = OptunaSearch(seed=spec.seeds[0])
        num_samples = spec.num_samples
    scheduler = None
    if spec.asha:
        scheduler = ASHAScheduler(
            grace_period=spec.grace_period, reduction_factor=spec.reduction_factor
        )
    trainable = tune.with_resources(_trial, {"CPU": 0.01})
    path = storage / sweep_id
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_errored=True, param_space=param_space
        )
    else:
        if path.exists() and not resume:
            raise FileExistsError(
                f"sweep {sweep_id!r} already exists at {path}; pass --resume "
                "to continue it or choose another sweep id"
            )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.direction,
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=concurrent,
            ),
            run_config=tune.RunConfig(
                name=sweep_id,
                storage_path=str(storage),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=1),
            ),
        )
    grid = tuner.fit()
    rows = []
    for result in grid:
        trial = dict(result.config["trial"]) if result.config else {}
        rows.append(
            {
                **trial,
                **{
                    k: v
                    for k, v in (result.metrics or {}).items()
                    if isinstance(v, int | float) and "/" in k
                },
                "error": repr(result.error) if result.error else None,
            }
        )
    return SweepResult(sweep_id, parent_id, rows, str(path))
