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
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from tqdm import tqdm

from cjepa.config import ExperimentConfig, flatten
from cjepa.data.sources import load_windows
from cjepa.distributed import tracking
from cjepa.distributed.resources import (
    EVALUATION,
    TRAIN_WORKERS,
    TRIAL_CPU,
    PendingTimeout,
    get_ledger,
    ledger_name,
    report_placed,
    resource_str,
    start_ledger,
    wait_message,
)
from cjepa.distributed.train import (
    START_TIMEOUT_ENV,
    Scaling,
    load_trained,
    make_trainer,
    tracker_for,
    train_and_report,
)
from cjepa.evaluation.stage import StageContext, get_stage, run_stages
from cjepa.sweeps import SweepSpec, apply_trial, grid_trials, may_autoscale, trial_label
from cjepa.train import (
    CHECKPOINT_NAME,
    EVAL_PROTOCOL,
    TrainLoop,
    load_checkpoint,
    resolve_device,
    set_threads,
)


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
    return Scaling(spec.workers_per_trial, use_gpu, per_worker), concurrent


def _check_placeable(
    spec: SweepSpec,
    per_worker: float,
    use_gpu: bool,
    resources: dict[str, float],
    nodes: list[dict[str, float]],
) -> None:
    """Every worker of a trial is one bundle ``{CPU: per_worker, GPU: 1 if use_gpu}`` on one
    node; the evaluation task (ray_train) and an in_trial trial need the same on one node."""
    bundle = {"CPU": per_worker, **({"GPU": 1.0} if use_gpu else {})}
    fit = sum(
        min(math.floor((node.get(k, 0) + 1e-9) / v) for k, v in bundle.items()) for node in nodes
    )
    if fit >= spec.workers_per_trial:
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
    evaluation = " (and its evaluation task, one more)" if spec.trainer == "ray_train" else ""
    raise ValueError(
        f"sweep.workers_per_trial x sweep.cpus_per_worker = {spec.workers_per_trial} x "
        f"{resource_str(bundle)}{evaluation} cannot be placed: {fit} such bundle(s) fit on this "
        f"cluster's {len(nodes)} node(s) (largest node {resource_str(largest)}, cluster "
        f"{resource_str(resources)}); lower sweep.cpus_per_worker or sweep.workers_per_trial, or "
        "set sweep.max_concurrent on an autoscaling cluster"
    )


def node_resources() -> list[dict[str, float]]:
    """Each alive node's total resources."""
    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")]


def _trial(config: dict[str, Any]) -> None:
    """The Tune trainable: one Ray Train run plus evaluation stages, tracked in MLflow."""
    ctx = tune.get_context()
    trial_id, sweep = ctx.get_trial_id(), config["sweep"]
    trial = config["trial"]
    cfg = apply_trial(config["base"], trial)
    tracker, run_id = None, None
    if sweep["uri"]:
        mlf = tracking.client(sweep["uri"])
        done = tracking.completed_run(
            mlf,
            sweep["experiment_id"],
            {"cjepa.sweep_id": sweep["sweep_id"], "cjepa.trial_id": trial_id},
        )
        if done is not None:
            # Finished and logged before the driver died (Tune's saved state lags behind): a
            # resumed sweep reports what MLflow holds instead of evaluating or logging again.
            tune.report({**done.data.metrics, "complete": 1, "mlflow_run_id": done.info.run_id})
            return
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
        mlflow = {"uri": sweep["uri"], "run_id": run_id} if run_id else None
        scaling = Scaling(**sweep["scaling"])
        if sweep["trainer"] == "in_trial":
            state = _fit_in_trial(cfg, mlflow)
            final, files = _in_task(
                cfg,
                sweep["context"],
                cfg.train.seed,
                lambda ctx: run_stages(cfg, state, config["stages"], ctx),
            )
        else:
            final, files, state = _train_and_evaluate(cfg, config, trial_id, scaling, mlflow)
        if tracker is not None:
            _log_outputs(tracker, cfg, state, final)
            with tempfile.TemporaryDirectory() as out_dir:
                for rel, data in files.items():
                    (Path(out_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                    (Path(out_dir) / rel).write_bytes(data)
                if files:
                    tracker.log_artifacts(out_dir, "eval")
        if tracker is not None:
            tracker.set_tags({tracking.COMPLETE_TAG: "1"})
            tracking.end_run(tracking.client(sweep["uri"]), run_id)
        # The trial's last Tune result carries the stage metrics, so tables need no MLflow;
        # ``complete`` tells a finished trial from one an interruption stopped.
        last = state["history"][-1] if state["history"] else {}
        tune.report(
            {
                **last,
                **final,
                "step": int(state["step"]),
                "complete": 1,
                "mlflow_run_id": run_id or "",
            }
        )
    except BaseException:
        if run_id is not None:
            tracking.end_run(tracking.client(sweep["uri"]), run_id, failed=True)
        raise


def _train_and_evaluate(
    cfg: ExperimentConfig,
    config: dict[str, Any],
    trial_id: str,
    scaling: Scaling,
    mlflow: dict[str, str] | None,
) -> tuple[dict[str, float], dict[str, bytes], dict[str, Any]]:
    """``sweep.trainer: ray_train``: a Train run, then the evaluation stages as a task. Both are
    registered with the sweep's ``TrialLedger`` (what they wait for, the worker group's
    placement group), so whatever this trial reserved is released however it ends; a worker
    group or evaluation task still unplaced after ``pending_fail_s`` fails the trial."""
    sweep, label = config["sweep"], trial_label(config["trial"])
    runtime = ray.get_runtime_context()
    key = runtime.get_actor_id()
    ledger = get_ledger(sweep["ledger"])
    ray.get(ledger.watch.remote(key, label, runtime.current_actor))
    placement = {"ledger": sweep["ledger"], "key": key}
    fail_s = sweep["pending_fail_s"]
    bundle = {"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})}
    workers = f"{scaling.num_workers} x {resource_str(bundle)}, PACK"
    if fail_s:
        # Ray Train waits this long for the worker group's placement group, removes it and, with
        # no controller retries (make_trainer), raises; the controller reads it from this
        # process's environment. Only ray_train trial processes set it.
        os.environ[START_TIMEOUT_ENV] = str(fail_s)
    trainer = make_trainer(
        cfg,
        name=f"{sweep['sweep_id']}-{trial_id}",
        storage_path=sweep["train_storage"],
        scaling=scaling,
        mlflow=mlflow,
        callbacks=[TuneReportCallback()],
        placement=placement,
        controller_retries=not fail_s,
    )
    ray.get(ledger.waiting.remote(key, TRAIN_WORKERS, workers))
    t0 = time.time()
    try:
        state = load_trained(trainer.fit())
    except ray.train.ControllerError as err:
        waited = time.time() - t0
        if fail_s and waited >= fail_s and ray.get(ledger.is_waiting.remote(key, TRAIN_WORKERS)):
            raise PendingTimeout(wait_message(label, TRAIN_WORKERS, workers, waited)) from err
        raise
    # Evaluation runs as its own task with a Train worker's resources (a GPU on a GPU
    # cluster): the trial process itself reserves almost nothing.
    ray.get(ledger.waiting.remote(key, EVALUATION, resource_str(bundle)))
    ref = _evaluate.options(
        num_cpus=scaling.cpus_per_worker,
        num_gpus=1 if scaling.use_gpu else 0,
        scheduling_strategy="DEFAULT",  # not the trial's 0.01-CPU placement group
    ).remote(cfg, state, config["stages"], sweep["context"], placement)
    t0 = time.time()
    try:
        while not ray.wait([ref], timeout=1.0)[0]:
            waited = time.time() - t0
            if fail_s and waited >= fail_s and ray.get(ledger.is_waiting.remote(key, EVALUATION)):
                raise PendingTimeout(wait_message(label, EVALUATION, resource_str(bundle), waited))
        final, files = ray.get(ref)
    except BaseException:
        ray.cancel(ref, force=True)  # a pending or running evaluation gives its CPUs back
        raise
    return final, files, state


def _fit_in_trial(cfg: ExperimentConfig, mlflow: dict[str, str] | None) -> dict[str, Any]:
    """``sweep.trainer: in_trial``: the Train worker's loop run in this trial's process, with
    the same reports, MLflow rows and checkpoints, through Tune (a retried trial resumes from
    its last checkpoint); returns the final ``TrainLoop.state_dict``."""
    set_threads(cfg.train.threads)
    train, val = load_windows(cfg.data)
    loop = TrainLoop(cfg, train, val, device=resolve_device(cfg.train.device))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            loop.load_state_dict(load_checkpoint(Path(d) / CHECKPOINT_NAME))

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    train_and_report(loop, tracker_for(mlflow), report)
    return loop.state_dict()


def _in_task(cfg: ExperimentConfig, context: dict[str, Any], seed: int, run) -> tuple:
    """``run(ctx)`` in a fresh output directory with ``cfg``'s torch threads; returns its
    metrics and the files it wrote (relative path -> bytes), since a task may run on another
    node than the driver or the trial."""
    import torch

    from cjepa.train import set_threads

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
    stages: dict[str, dict[str, Any]],
    context: dict[str, Any],
    placement: dict[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Run the evaluation stages; returns their metrics and the files they wrote."""
    report_placed(placement, EVALUATION, in_group=False)
    return _in_task(cfg, context, cfg.train.seed, lambda ctx: run_stages(cfg, state, stages, ctx))


@ray.remote
def run_controls_task(
    cfg: ExperimentConfig,
    stages: dict[str, dict[str, Any]],
    context: dict[str, Any],
    ceiling_only: list[str] | None = None,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """``cjepa.evaluation.controls.run_controls`` as a task (once per sweep, beside the
    trials); returns the ``control/...`` metrics and the files the stages wrote."""
    from cjepa.evaluation.controls import run_controls

    return _in_task(cfg, context, 0, lambda ctx: run_controls(cfg, stages, ctx, ceiling_only or ()))


def _log_outputs(tracker: tracking.MlflowTracker, cfg, state, final: dict[str, float]) -> None:
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


class _TrialProgress(tune.Callback):
    """One bar over finished trials on a terminal; one line per finished trial otherwise
    (``ray job logs`` and CI), so a sweep is neither silent nor noisy."""

    def __init__(self, total: int, metric: str) -> None:
        self.metric, self.done = metric, 0
        self.bar = tqdm(total=total, unit="trial", desc="sweep", disable=None)

    def _finish(self, trial, status: str) -> None:
        self.done += 1
        self.bar.update(1)
        label = trial_label(trial.config.get("trial", {})) if trial.config else trial.trial_id
        value = (trial.last_result or {}).get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else status
        if self.bar.disable:
            print(f"[sweep] {self.done}/{self.bar.total} {label}: {shown}", flush=True)
        else:
            self.bar.set_postfix_str(f"{label}: {shown}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "done")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "ERROR")

    def on_experiment_end(self, trials, **info) -> None:
        self.bar.close()


class PendingWatchdog(tune.Callback):
    """Logs trials that wait for resources: Tune trials still PENDING, and running trials whose
    Train worker group or evaluation task the ledger has not seen start. Past ``warn_s`` one
    line per trial (again every ``warn_s``); failing past ``fail_s`` happens in the trial (Ray
    Train's worker-group start timeout, the evaluation task's wait), so the trial's error is the
    same message."""

    def __init__(self, ledger: str, warn_s: float, every_s: float = 1.0) -> None:
        # The ledger by name: a resumed sweep restores this callback from disk, with a new ledger.
        self.ledger, self.warn_s, self.every_s = ledger, warn_s, every_s
        self._last_poll = 0.0
        self._pending_since: dict[str, float] = {}
        self._warned: dict[str, float] = {}
        self.warnings: list[str] = []

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.time()
        if now - self._last_poll < self.every_s:
            return
        self._last_poll = now
        waits = []
        for trial in trials:
            if trial.status != "PENDING":
                self._pending_since.pop(trial.trial_id, None)
                continue
            since = self._pending_since.setdefault(trial.trial_id, now)
            label = trial_label(trial.config.get("trial", {})) if trial.config else trial.trial_id
            demand = resource_str(trial.placement_group_factory.required_resources)
            waits.append((trial.trial_id, label, "Tune trial actor", demand, now - since))
        try:
            for w in ray.get(get_ledger(self.ledger).waits.remote(), timeout=10):
                waits.append((w["key"], w["label"], w["what"], w["demand"], w["waited_s"]))
        except (ValueError, ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            pass  # a busy or gone ledger must not stop the sweep; Tune's PENDING still shows
        for key, label, what, demand, waited in waits:
            if waited < self.warn_s or now - self._warned.get(key, 0.0) < self.warn_s:
                continue
            self._warned[key] = now
            line = f"[sweep] waiting: {wait_message(label, what, demand, waited)}"
            self.warnings.append(line)
            print(line, flush=True)


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

    @property
    def finished(self) -> int:
        return sum(1 for r in self.rows if r.get("complete"))

    @property
    def interrupted(self) -> bool:
        """Tune ended fewer trials than the spec asks for (stopped, e.g. by SIGINT)."""
        return self.ended < self.total


def run_sweep(
    base: ExperimentConfig,
    spec: SweepSpec,
    *,
    sweep_id: str,
    storage_path: str | Path,
    tracking_uri: str | None,
    experiment_name: str = "cjepa",
    resume: bool = False,
    stages: dict[str, dict[str, Any]] | None = None,
    stage_context: dict[str, str | None] | None = None,
    parent_tags: dict[str, str] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep; returns one row per trial with its overrides and metrics.

    ``stages`` maps evaluation stage names (``cjepa.evaluation.stage.STAGES``) to their
    options; each trial runs them after training. ``stage_context`` gives them the encoder spec
    and episode directory behind the slots.
    """
    stages = {"final_validation": {}} if stages is None else dict(stages)
    for name in stages:
        get_stage(name)  # unknown names and import errors surface before any trial starts
    storage = Path(storage_path).resolve()
    scaling, concurrent = plan_resources(spec, ray.cluster_resources(), node_resources())
    # Everything that can refuse the sweep does so before its MLflow parent run exists, so a
    # bad grid or an existing sweep id leaves nothing RUNNING.
    if spec.mode == "grid":
        trials = grid_trials(spec, base)
        trial_space, total = tune.grid_search(trials), len(trials)
    else:
        trial_space, total = _search_space(spec), spec.num_samples
    path = storage / sweep_id
    restore = resume and tune.Tuner.can_restore(str(path))
    if path.exists() and not resume:
        raise FileExistsError(
            f"sweep {sweep_id!r} already exists at {path}; pass --resume "
            "to continue it or choose another sweep id"
        )
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
                "stages": ",".join(stages),
                **{f"stages.{k}": v for k, v in flatten(stages).items()},
            }
        )
    sweep_info = {
        "sweep_id": sweep_id,
        "uri": tracking_uri,
        "experiment_id": experiment_id,
        "parent_id": parent_id,
        "train_storage": str(storage / "train"),
        "scaling": vars(scaling),
        "trainer": spec.trainer,
        "context": dict(stage_context or {}),
        "ledger": ledger_name(sweep_id),
        # a fixed-size cluster fails a trial that waits too long; an autoscaling one may add nodes
        "pending_fail_s": 0.0 if may_autoscale(spec) else spec.pending_fail_s,
    }
    param_space: dict[str, Any] = {
        "base": base.to_dict(),
        "sweep": sweep_info,
        "stages": stages,
    }
    search_alg, num_samples = None, 1
    param_space["trial"] = trial_space
    if spec.mode == "optuna":
        search_alg = OptunaSearch(seed=spec.seeds[0])
        num_samples = spec.num_samples
    scheduler = None
    if spec.asha:
        scheduler = ASHAScheduler(
            grace_period=spec.grace_period, reduction_factor=spec.reduction_factor
        )
    # ray_train: the trial reserves almost nothing and its Train workers the CPUs/GPUs;
    # in_trial: the trial is the worker.
    resources = {"CPU": TRIAL_CPU}
    if spec.trainer == "in_trial":
        resources = {"CPU": scaling.cpus_per_worker, "GPU": 1 if scaling.use_gpu else 0}
    trainable = tune.with_resources(_trial, resources)
    if restore:
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_errored=True, param_space=param_space
        )
    else:
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
                callbacks=[
                    _TrialProgress(total, spec.metric),
                    PendingWatchdog(ledger_name(sweep_id), spec.pending_warn_s),
                ],
            ),
        )
    # The legacy reporter at verbose=0 prints nothing; the new output engine prints a
    # configuration box and a TensorBoard hint even then.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ledger = start_ledger(sweep_id)
    try:
        grid = tuner.fit()
    except BaseException as err:  # never leave the parent RUNNING
        if parent_id is not None:
            interrupted = isinstance(err, KeyboardInterrupt)
            tracking.end_run(mlf, parent_id, failed=True, killed=interrupted)
            tracking.end_open_children(mlf, experiment_id, parent_id)
        raise
    finally:
        # Every trial has ended: nothing of theirs stays reserved for the rest of the driver.
        leftover = ray.get(ledger.release_all.remote())
        released = ray.get(ledger.released.remote())
        ray.kill(ledger)
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
    ended = grid.num_terminated + grid.num_errors  # ASHA-stopped trials end TERMINATED too
    return SweepResult(
        sweep_id, parent_id, rows, str(path), total, experiment_id, ended, released + leftover
    )
