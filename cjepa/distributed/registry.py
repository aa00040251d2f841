"""A sweep's best predictor in the MLflow Model Registry.

When a sweep ends, the trial with the best ``sweep.metric`` (in ``sweep.direction``, among the
trials that logged everything: tag ``cjepa.complete``) becomes a new version of a registered
model, ``cjepa-<preset>-<world>`` for ``make run`` (``cjepa-<sweep id>`` by default). The
version's files are the trial's ``checkpoint/`` artifact: ``predictor.pt`` holds the state dict,
the config as a plain dict and the step, so it loads with ``torch.load(weights_only=True)`` (no
pickled classes, unlike an ``mlflow.pytorch`` model). Its tags carry the trial's config (every
param of the trial run: the flattened config and the trial's overrides), the metric and the
sweep and trial ids. Registering twice for one sweep (a resumed sweep) returns the version it
already has. Works on the SQLite store; nothing is downloaded from outside the store.

Load a version: ``load_registered(URI, "cjepa-smoke-collide", 1)``, or by hand::

    source = MlflowClient(URI).get_model_version_download_uri("cjepa-smoke-collide", "1")
    path = mlflow.artifacts.download_artifacts(artifact_uri=source)
    checkpoint = torch.load(Path(path) / "predictor.pt", weights_only=True)
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cjepa.distributed import tracking

CHECKPOINT_DIR = "checkpoint"  # the trial run's artifact folder (trial._log_outputs)
CHECKPOINT_FILE = "predictor.pt"
SWEEP_TAG = "cjepa.sweep_id"


@dataclass
class Registered:
    """A model version: ``name`` and ``version`` (``models:/<name>/<version>``), the trial run
    it came from and the metric it won on."""

    name: str
    version: str
    run_id: str
    metric: str
    value: float

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def best_trial(mlf: MlflowClient, experiment_id: str, parent_id: str, metric: str, direction: str):
    """The complete child run of ``parent_id`` with the best finite ``metric`` (None: no trial
    logged it)."""
    runs = mlf.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{tracking.COMPLETE_TAG}` = '1'"
        ),
    )
    scored = [r for r in runs if math.isfinite(r.data.metrics.get(metric, math.nan))]
    if not scored:
        return None
    pick = min if direction == "min" else max
    return pick(scored, key=lambda r: r.data.metrics[metric])


def register_best(
    uri: str,
    experiment_id: str,
    parent_id: str,
    *,
    sweep_id: str,
    metric: str,
    direction: str,
    name: str | None = None,
) -> Registered | None:
    """Register the sweep's best trial (``best_trial``) as a version of ``name`` (default
    ``cjepa-<sweep_id>``); None when no trial has the metric."""
    name = name or f"cjepa-{sweep_id}"
    mlf = tracking.client(uri)
    run = best_trial(mlf, experiment_id, parent_id, metric, direction)
    if run is None:
        return None
    value = run.data.metrics[metric]
    existing = _version_of_sweep(mlf, name, sweep_id)
    if existing is not None:
        return Registered(name, str(existing.version), existing.run_id, metric, value)
    _ensure_model(mlf, name)
    tags = {
        **run.data.params,
        SWEEP_TAG: sweep_id,
        "cjepa.trial_id": run.data.tags.get("cjepa.trial_id", ""),
        "cjepa.trial": run.info.run_name or "",
        "cjepa.metric": metric,
        "cjepa.metric_value": f"{value:.6g}",
        "cjepa.direction": direction,
    }
    version = mlf.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{CHECKPOINT_DIR}",
        run_id=run.info.run_id,
        tags=tags,
        description=(
            f"Best trial of sweep {sweep_id} by {metric} ({direction}) = {value:.6g}: "
            f"{run.info.run_name}. {CHECKPOINT_FILE}: state dict, config and step; load with "
            "torch.load(weights_only=True)."
        ),
    )
    return Registered(name, str(version.version), run.info.run_id, metric, value)


def _version_of_sweep(mlf: MlflowClient, name: str, sweep_id: str):
    try:
        found = mlf.search_model_versions(f"name = '{name}' and tags.`{SWEEP_TAG}` = '{sweep_id}'")
    except MlflowException:  # no registered model of that name yet
        return None
    return found[0] if found else None


def _ensure_model(mlf: MlflowClient, name: str) -> None:
    try:
        mlf.get_registered_model(name)
    except MlflowException:
        mlf.create_registered_model(
            name, description="C-JEPA predictors: the best trial of each sweep, one version each."
        )


def load_registered(uri: str, name: str, version: str | int | None = None) -> dict[str, Any]:
    """The checkpoint of version ``version`` of ``name`` (None: its newest): ``{"model": state
    dict, "config": the experiment config as a dict, "step"}``."""
    from cjepa.train import load_checkpoint

    mlf = tracking.client(uri)
    if version is None:
        versions = mlf.search_model_versions(f"name = '{name}'")
        if not versions:
            raise LookupError(f"MLflow registered model {name!r} has no versions in {uri}")
        version = max(int(v.version) for v in versions)
    source = mlf.get_model_version_download_uri(name, str(version))
    with tempfile.TemporaryDirectory() as d:
        path = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=d)
        return load_checkpoint(Path(path) / CHECKPOINT_FILE)  # torch.load(weights_only=True)
