"""Ray Train: the C-JEPA predictor trained data-parallel with ``TorchTrainer``.

``train_fn_per_worker`` runs the same ``cjepa.train.TrainLoop`` as the single-process trainer:
every worker loads the windows from the shared data (per-worker loader over the Parquet slot
shards, or the seeded synthetic world), the model is wrapped in DDP (gloo on CPU, nccl on GPU) by
``ray.train.torch.prepare_model``, and every ``train.eval_every`` steps all ranks call
``ray.train.report``; rank 0 attaches the checkpoint and is the only rank that logs to MLflow.
With one worker and the same seed the loss curve equals ``cjepa.train.fit``'s.

A lost worker restarts the run from the last reported checkpoint (``FailureConfig``).
``storage_path`` is a local directory on one machine and shared storage (NFS, ``s3://...``) on a
cluster.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from cjepa.config import ExperimentConfig, from_dict
from cjepa.data.sources import load_windows
from cjepa.distributed.resources import TRAIN_WORKERS, report_placed
from cjepa.tracking import NullTracker
from cjepa.train import (
    CHECKPOINT_NAME,
    TrainLoop,
    load_checkpoint,
    save_checkpoint,
    set_threads,
)

#: Ray Train's wait for a worker group's placement group (seconds; Ray's default 60, retried).
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
#: Trial-run tag: the Ray node id of every Train worker, by rank, comma-separated.
TRAIN_NODES_TAG = "cjepa.train_nodes"


@dataclass
class Scaling:
    """How many Train workers a run uses and what each reserves."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    placement_strategy: str = "PACK"  # Ray's placement-group strategy (sweep.placement)

    def ray(self) -> ScalingConfig:
        resources = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = 1
        return ScalingConfig(
            num_workers=self.num_workers,
            use_gpu=self.use_gpu,
            resources_per_worker=resources,
            placement_strategy=self.placement_strategy,
        )


def tracker_for(mlflow_cfg: dict[str, str] | None):
    """The MLflow run ``{"uri", "run_id"}`` to log training rows to (None: no tracking)."""
    if not mlflow_cfg:
        return NullTracker()
    from cjepa.distributed.tracking import MlflowTracker

    return MlflowTracker(mlflow_cfg["uri"], mlflow_cfg["run_id"])


def system_metrics(mlflow_cfg: dict[str, str] | None):
    """CPU/GPU/memory samples into the MLflow run ``{"uri", "run_id"}`` while the block runs
    (``cjepa.distributed.tracking.system_metrics``); nothing without a run."""
    if not mlflow_cfg:
        return contextlib.nullcontext(False)
    from cjepa.distributed.tracking import system_metrics as monitor

    return monitor(mlflow_cfg["uri"], mlflow_cfg["run_id"])


def worker_nodes(world: int) -> list[str]:
    """Every Train worker's Ray node id, by rank (a collective: all ranks call it)."""
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if world == 1 or not dist.is_initialized():
        return [node]
    nodes: list[str] = [""] * world
    dist.all_gather_object(nodes, node)
    return nodes


def train_fn_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker entry. ``config``: ``{"experiment": ExperimentConfig as a dict,
    "mlflow": {"uri", "run_id"} or None, "placement": {"ledger", "key"} or None}`` (a sweep
    trial's ``TrialLedger``: rank 0 registers the worker group's placement group there).
    Rank 0 tags the run with every worker's node (``TRAIN_NODES_TAG``) and samples system
    metrics into it while training."""
    cfg = from_dict(ExperimentConfig, config["experiment"])
    set_threads(cfg.train.threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    nodes = worker_nodes(world)
    mlflow_cfg = config.get("mlflow") if rank == 0 else None  # only rank 0 logs
    tracker = tracker_for(mlflow_cfg)
    if rank == 0:
        report_placed(config["placement"], TRAIN_WORKERS, in_group=True)
    if mlflow_cfg:
        tracker.set_tags({TRAIN_NODES_TAG: ",".join(nodes)})
    train, val = load_windows(cfg.data)
    loop = TrainLoop(
        cfg,
        train,
        val if rank == 0 else None,
        device=ray.train.torch.get_device(),
        rank=rank,
        world_size=world,
        wrap=ray.train.torch.prepare_model,
    )
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            loop.load_state_dict(load_checkpoint(Path(d) / CHECKPOINT_NAME))

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        checkpoint = Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    with system_metrics(mlflow_cfg):
        train_and_report(loop, tracker, report, rank == 0)


def train_and_report(
    loop: TrainLoop,
    tracker,
    report: Callable[[dict[str, float], str | None], None],
    checkpoints: bool = True,
) -> None:
    """Train ``loop`` to ``train.steps``; every ``train.eval_every`` steps log the rows to
    ``tracker`` and call ``report(metrics, checkpoint_dir)`` (``checkpoint_dir`` holds the
    loop's state while ``report`` runs; None when ``checkpoints`` is off, e.g. on ranks > 0).
    Shared by the Train worker and the in-trial trainer (``cjepa.distributed.sweep``)."""
    tc = loop.cfg.train
    while loop.step < tc.steps:
        end = min(tc.steps, (loop.step // tc.eval_every + 1) * tc.eval_every)
        rows: list[tuple[int, dict[str, float]]] = []
        loop.run(end, on_row=lambda row, rows=rows: rows.append((loop.step, row)))
        metrics: dict[str, float] = {"step": loop.step}
        for step, row in rows:
            tracker.log_metrics(row, step)
            metrics.update(row)
        if checkpoints:
            with tempfile.TemporaryDirectory() as d:
                save_checkpoint(Path(d) / CHECKPOINT_NAME, loop.state_dict())
                report(metrics, d)
        else:
            report(metrics, None)


def make_trainer(
    cfg: ExperimentConfig,
    *,
    name: str,
    storage_path: str,
    scaling: Scaling | None = None,
    mlflow: dict[str, str] | None = None,
    max_failures: int = 2,
    callbacks: list | None = None,
    log_level: str = "WARNING",
    placement: dict[str, str] | None = None,
    controller_retries: bool = True,
) -> TorchTrainer:
    """A ``TorchTrainer`` for ``cfg``. Re-using ``name`` under ``storage_path`` resumes that run
    from its last checkpoint (Ray does so silently), so give each new run a unique name.
    ``placement``: the sweep trial's ledger entry (``cjepa.distributed.resources``);
    ``controller_retries=False``: a worker group that cannot be placed within
    ``START_TIMEOUT_ENV`` fails the run instead of being retried forever."""
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"experiment": cfg.to_dict(), "mlflow": mlflow, "placement": placement},
        scaling_config=(scaling or Scaling()).ray(),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(
                max_failures=max_failures, controller_failure_limit=-1 if controller_retries else 0
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level=log_level),
        ),
    )


def load_trained(result) -> dict[str, Any]:
    """The final training state (``TrainLoop.state_dict``) of a finished ``fit()`` result."""
    with result.checkpoint.as_directory() as d:
        return load_checkpoint(Path(d) / CHECKPOINT_NAME)
