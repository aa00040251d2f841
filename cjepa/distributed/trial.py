"""One sweep trial as a Tune trainable: a Ray Train run (or the loop in the trial's process),
then the evaluation stages as a task, tracked as a nested MLflow run.

A trial's Train run and its MLflow run are keyed by (sweep id, Tune trial id), so a retried or
resumed trial continues both, and a trial that finished and logged before the driver died
reports what MLflow holds instead of running again.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from cjepa.config import ExperimentConfig, flatten
from cjepa.data.sources import load_windows
from cjepa.distributed import tracking
from cjepa.distributed.resources import (
    EVALUATION,
    TRAIN_WORKERS,
    PendingTimeout,
    get_ledger,
    report_placed,
    resource_str,
    wait_message,
)
from cjepa.distributed.train import (
    START_TIMEOUT_ENV,
    Scaling,
    load_trained,
    make_trainer,
    system_metrics,
    tracker_for,
    train_and_report,
)
from cjepa.evaluation.stage import StageContext, run_stages
from cjepa.sweeps import apply_trial, trial_label
from cjepa.train import (
    CHECKPOINT_NAME,
    EVAL_PROTOCOL,
    TrainLoop,
    load_checkpoint,
    resolve_device,
    set_threads,
)

Stages = dict[str, dict[str, Any]]


@dataclass
class SweepInfo:
    """What every trial of one sweep shares; Tune's ``param_space`` carries it as a dict
    (``asdict``), so a resumed sweep reads the same fields back.

    Attributes:
        sweep_id: the sweep's id (MLflow tag ``cjepa.sweep_id``, Tune experiment name).
        uri: MLflow tracking URI; None -> nothing is tracked.
        experiment_id, parent_id: the MLflow experiment and the sweep's parent run.
        train_storage: where Ray Train keeps each trial's checkpoints.
        scaling: ``Scaling`` fields for each trial's Train run.
        trainer: ``ray_train`` or ``in_trial`` (``SweepSpec.trainer``).
        context: ``StageContext`` fields for the stages (``encoder``, ``episode_dir``).
        ledger: name of the sweep's ``TrialLedger`` actor.
        pending_fail_s: fail a trial whose workers wait this long (0: never, e.g. autoscaling).
    """

    sweep_id: str
    uri: str | None
    experiment_id: str | None
    parent_id: str | None
    train_storage: str
    scaling: dict[str, Any]
    trainer: str
    context: dict[str, Any]
    ledger: str
    pending_fail_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: ``config`` holds ``base`` (the experiment config), ``trial`` (its
    overrides), ``sweep`` (``SweepInfo`` as a dict) and ``stages``."""
    trial_id = tune.get_context().get_trial_id()
    sweep, trial = SweepInfo(**config["sweep"]), config["trial"]
    cfg = apply_trial(config["base"], trial)
    if sweep.uri and _report_logged_trial(sweep, trial_id):
        return
    tracker, run_id = _open_trial_run(sweep, trial_id, trial, cfg) if sweep.uri else (None, None)
    try:
        mlflow = {"uri": sweep.uri, "run_id": run_id} if run_id else None
        final, files, state = _train_and_score(cfg, sweep, trial_id, config, mlflow)
        if tracker is not None:
            _log_outputs(tracker, cfg, state, final, files)
            tracker.set_tags({tracking.COMPLETE_TAG: "1"})
            tracking.end_run(tracking.client(sweep.uri), run_id)
        # The trial's last Tune result carries the stage metrics, so tables need no MLflow;
        # ``complete`` tells a finished trial from one an interruption stopped.
        last = state["history"][-1] if state["history"] else {}
        step = int(state["step"])
        tune.report({**last, **final, "step": step, "complete": 1, "mlflow_run_id": run_id or ""})
    except BaseException:
        if run_id is not None:
            tracking.end_run(tracking.client(sweep.uri), run_id, failed=True)
        raise


def _trial_key(sweep: SweepInfo, trial_id: str) -> dict[str, str]:
    return {"cjepa.sweep_id": sweep.sweep_id, "cjepa.trial_id": trial_id}


def _report_logged_trial(sweep: SweepInfo, trial_id: str) -> bool:
    """A trial finished and logged before the driver died (Tune's saved state lags behind): a
    resumed sweep reports what MLflow holds instead of evaluating or logging again."""
    mlf = tracking.client(sweep.uri)
    done = tracking.completed_run(mlf, sweep.experiment_id, _trial_key(sweep, trial_id))
    if done is None:
        return False
    tune.report({**done.data.metrics, "complete": 1, "mlflow_run_id": done.info.run_id})
    return True


def _open_trial_run(
    sweep: SweepInfo, trial_id: str, trial: dict[str, Any], cfg: ExperimentConfig
) -> tuple[tracking.MlflowTracker, str]:
    """The trial's nested MLflow run (reopened on a retry), with its full config as params."""
    run_id, _ = tracking.get_or_create_run(
        tracking.client(sweep.uri),
        sweep.experiment_id,
        name=trial_label(trial),
        parent_id=sweep.parent_id,
        key=_trial_key(sweep, trial_id),
        tags={
            **tracking.environment_tags(),
            "cjepa.role": "trial",
            "cjepa.seed": str(cfg.train.seed),
            "cjepa.eval_protocol": EVAL_PROTOCOL,
        },
    )
    tracker = tracking.MlflowTracker(sweep.uri, run_id)
    tracker.log_params(
        {
            **flatten(cfg.to_dict()),
            "eval_protocol": EVAL_PROTOCOL,
            **{f"trial.{k}": v for k, v in trial.items()},
        }
    )
    return tracker, run_id


def _train_and_score(
    cfg: ExperimentConfig,
    sweep: SweepInfo,
    trial_id: str,
    config: dict[str, Any],
    mlflow: dict[str, str] | None,
) -> tuple[dict[str, float], dict[str, bytes], dict[str, Any]]:
    """(stage metrics, files the stages wrote, final training state) for either trainer."""
    stages = config["stages"]
    if sweep.trainer == "in_trial":
        state = _fit_in_trial(cfg, mlflow)
        final, files = _in_task(
            cfg, sweep.context, cfg.train.seed, lambda ctx: run_stages(cfg, state, stages, ctx)
        )
        return final, files, state
    # ray_train: a Train run, then the evaluation stages as a task. Both are registered with
    # the sweep's TrialLedger (what they wait for, the worker group's placement group), so
    # whatever this trial reserved is released however it ends; a worker group or evaluation
    # task still unplaced after pending_fail_s fails the trial.
    runtime = ray.get_runtime_context()
    waits = _Waits(sweep.ledger, runtime.get_actor_id(), trial_label(config["trial"]), sweep)
    ray.get(waits.ledger.watch.remote(waits.key, waits.label, runtime.current_actor))
    scaling = Scaling(**sweep.scaling)
    state = _fit_train_run(cfg, sweep, trial_id, scaling, mlflow, waits)
    final, files = _evaluate_as_task(cfg, state, stages, sweep.context, scaling, waits)
    return final, files, state


class _Waits:
    """This trial's entry in the sweep's ``TrialLedger``: what it waits for, and whether a wait
    has passed ``pending_fail_s`` while the ledger still sees it waiting."""

    def __init__(self, ledger: str, key: str, label: str, sweep: SweepInfo) -> None:
        self.ledger, self.key, self.label = get_ledger(ledger), key, label
        self.placement = {"ledger": ledger, "key": key}
        self.fail_s = sweep.pending_fail_s

    def begin(self, what: str, demand: str) -> None:
        ray.get(self.ledger.waiting.remote(self.key, what, demand))

    def timed_out(self, what: str, waited: float) -> bool:
        if not self.fail_s or waited < self.fail_s:
            return False
        return ray.get(self.ledger.is_waiting.remote(self.key, what))


def _bundle(scaling: Scaling) -> dict[str, float]:
    return {"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})}


def _fit_train_run(
    cfg: ExperimentConfig,
    sweep: SweepInfo,
    trial_id: str,
    scaling: Scaling,
    mlflow: dict[str, str] | None,
    waits: _Waits,
) -> dict[str, Any]:
    """The trial's Ray Train run; its final state (``load_trained``)."""
    workers = (
        f"{scaling.num_workers} x {resource_str(_bundle(scaling))}, {scaling.placement_strategy}"
    )
    if waits.fail_s:
        # Ray Train waits this long for the worker group's placement group, removes it and, with
        # no controller retries (make_trainer), raises; the controller reads it from this
        # process's environment. Only ray_train trial processes set it.
        os.environ[START_TIMEOUT_ENV] = str(waits.fail_s)
    trainer = make_trainer(
        cfg,
        name=f"{sweep.sweep_id}-{trial_id}",
        storage_path=sweep.train_storage,
        scaling=scaling,
        mlflow=mlflow,
        callbacks=[TuneReportCallback()],
        placement=waits.placement,
        controller_retries=not waits.fail_s,
    )
    waits.begin(TRAIN_WORKERS, workers)
    t0 = time.time()
    try:
        return load_trained(trainer.fit())
    except ray.train.ControllerError as err:
        waited = time.time() - t0
        if waits.timed_out(TRAIN_WORKERS, waited):
            raise PendingTimeout(wait_message(waits.label, TRAIN_WORKERS, workers, waited)) from err
        raise


def _evaluate_as_task(
    cfg: ExperimentConfig,
    state: dict[str, Any],
    stages: Stages,
    context: dict[str, Any],
    scaling: Scaling,
    waits: _Waits,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """The stages as a task with a Train worker's resources (a GPU on a GPU cluster): the trial
    process itself reserves almost nothing."""
    demand = resource_str(_bundle(scaling))
    waits.begin(EVALUATION, demand)
    ref = _evaluate.options(
        num_cpus=scaling.cpus_per_worker,
        num_gpus=1 if scaling.use_gpu else 0,
        scheduling_strategy="DEFAULT",  # not the trial's 0.01-CPU placement group
    ).remote(cfg, state, stages, context, waits.placement)
    t0 = time.time()
    try:
        while not ray.wait([ref], timeout=1.0)[0]:
            waited = time.time() - t0
            if waits.timed_out(EVALUATION, waited):
                raise PendingTimeout(wait_message(waits.label, EVALUATION, demand, waited))
        return ray.get(ref)
    except BaseException:
        ray.cancel(ref, force=True)  # a pending or running evaluation gives its CPUs back
        raise


def _fit_in_trial(cfg: ExperimentConfig, mlflow: dict[str, str] | None) -> dict[str, Any]:
    """``sweep.trainer: in_trial``: the Train worker's loop run in this trial's process, with
    the same reports, MLflow rows, system metrics and checkpoints, through Tune (a retried trial
    resumes from its last checkpoint); returns the final ``TrainLoop.state_dict``."""
    set_threads(cfg.train.threads)
    train, val = load_windows(cfg.data)
    loop = TrainLoop(cfg, train, val, device=resolve_device(cfg.train.device))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            loop.load_state_dict(load_checkpoint(Path(d) / CHECKPOINT_NAME))

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    with system_metrics(mlflow):
        train_and_report(loop, tracker_for(mlflow), report)
    return loop.state_dict()


def _in_task(
    cfg: ExperimentConfig,
    context: dict[str, Any],
    seed: int,
    run: Callable[[StageContext], dict[str, float]],
) -> tuple[dict[str, float], dict[str, bytes]]:
    """``run(ctx)`` in a fresh output directory with ``cfg``'s torch threads; returns its
    metrics and the files it wrote (relative path -> bytes), since a task may run on another
    node than the driver or the trial."""
    import torch

    set_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = StageContext(
            out_dir=Path(out_dir),
            encoder=context.get("encoder"),
            episode_dir=context.get("episode_dir"),
            seed=seed,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        metrics = run(ctx)
        root = Path(out_dir)
        files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return metrics, files


@ray.remote
def _evaluate(
    cfg: ExperimentConfig,
    state: dict[str, Any],
    stages: Stages,
    context: dict[str, Any],
    placement: dict[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Run the evaluation stages; returns their metrics and the files they wrote."""
    report_placed(placement, EVALUATION, in_group=False)
    return _in_task(cfg, context, cfg.train.seed, lambda ctx: run_stages(cfg, state, stages, ctx))


@ray.remote
def run_controls_task(
    cfg: ExperimentConfig,
    stages: Stages,
    context: dict[str, Any],
    ceiling_only: list[str] | None = None,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """``cjepa.evaluation.controls.run_controls`` as a task (once per sweep, beside the
    trials); returns the ``control/...`` metrics and the files the stages wrote."""
    from cjepa.evaluation.controls import run_controls

    return _in_task(cfg, context, 0, lambda ctx: run_controls(cfg, stages, ctx, ceiling_only or ()))


def _log_outputs(
    tracker: tracking.MlflowTracker,
    cfg: ExperimentConfig,
    state: dict[str, Any],
    final: dict[str, float],
    files: dict[str, bytes],
) -> None:
    """The stage metrics, config, checkpoint, loss curve and the stages' files (under eval/)."""
    import torch

    from cjepa.distributed.artifacts import loss_curve_png

    tracker.log_metrics(final, int(state["step"]))
    if files:
        with tempfile.TemporaryDirectory() as out_dir:
            for rel, data in files.items():
                (Path(out_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(out_dir) / rel).write_bytes(data)
            tracker.log_artifacts(out_dir, "eval")
    tracker.log_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), "config.yaml")
    with tempfile.TemporaryDirectory() as d:
        torch.save(
            {"model": state["model"], "config": cfg.to_dict(), "step": state["step"]},
            Path(d) / "predictor.pt",
        )
        tracker.log_artifact(Path(d) / "predictor.pt", "checkpoint")
        loss_curve_png(state["history"], Path(d) / "loss_curve.png", title=cfg.name)
        tracker.log_artifact(Path(d) / "loss_curve.png", "plots")
