"""A synthetic finished sweep in a temporary SQLite MLflow store, written with the same tags and
params as ``cjepa.distributed.sweep`` (parent ``cjepa.role = sweep``, children ``trial``), and
the parent's ``metrics.json`` as ``cjepa.distributed.pipeline`` logs it (the older sweep has
none, as sweeps before it)."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

EXPERIMENT = "analysis-test"
SWEEP_ID = "tiny-collide-20261128-000000"
OLD_SWEEP_ID = "tiny-collide-20261127-000000"

#: (unit, budget, seed) -> final metrics; token |M|=1 seed 2 fails before evaluation.
FINAL = {
    ("none", 0, 0): {"final/future_visible": 0.30, "final/history": 0.9, "vqa/d/per_question": 0.5},
    ("none", 0, 1): {"final/future_visible": 0.32, "final/history": 0.9, "vqa/d/per_question": 0.6},
    ("none", 0, 2): {"final/future_visible": 0.34, "final/history": 0.9, "vqa/d/per_question": 0.7},
    ("object", 1, 0): {
        "final/future_visible": 0.20,
        "final/history": 0.5,
        "vqa/d/per_question": 0.8,
    },
    ("object", 1, 1): {
        "final/future_visible": 0.22,
        "final/history": 0.5,
        "vqa/d/per_question": 0.8,
    },
    ("object", 1, 2): {
        "final/future_visible": 0.24,
        "final/history": 0.5,
        "vqa/d/per_question": 0.8,
    },
    ("token", 1, 0): {
        "final/future_visible": 0.25,
        "final/history": 0.1,
        "vqa/d/per_question": 0.6,
    },
    ("token", 1, 1): {
        "final/future_visible": 0.27,
        "final/history": 0.3,
        "vqa/d/per_question": 0.7,
    },
}
FAILED = ("token", 1, 2)
#: Reference metrics every finished trial logs: the same copy-last and constant-velocity error
#: in every trial (same val windows), and one that differs by seed (so no reference value).
REFERENCE_METRICS = {"final/copy_last_visible": 0.40, "final/linear_visible": 0.95}
NOISY = "final/noisy_ref"
CONTROLS = {"control/true_slots/vqa/d/per_question": 0.9}
#: The latest sweep's metrics.json (``cjepa.metrics.describe`` format). ``causal/precision_drop``
#: is recorded "min" where its name guesses "max"; NaN values resolve from controls/trials.
METRICS_JSON = {
    "metrics": {
        "final/future_visible": {
            "direction": "min",
            "what": "val future MSE",
            "references": [
                {
                    "label": "copy-last",
                    "kind": "floor",
                    "source": "final/copy_last_visible",
                    "value": 0.40,
                },
                {"label": "true slots", "kind": "ceiling", "source": 0.0, "value": 0.0},
            ],
        },
        "final/history": {
            "direction": "min",
            "what": "history MSE",
            "references": [
                {
                    "label": "constant velocity",
                    "kind": "floor",
                    "source": "final/linear_visible",
                    "value": math.nan,
                },
                {"label": "noisy", "kind": "floor", "source": NOISY, "value": math.nan},
            ],
        },
        "vqa/d/per_question": {
            "direction": "max",
            "what": "VQA descriptive accuracy per question",
            "references": [
                {
                    "label": "majority answer",
                    "kind": "floor",
                    "source": "vqa/majority/d/per_question",
                    "value": 0.3333,
                },
                {
                    "label": "reader on true slots",
                    "kind": "ceiling",
                    "source": "control/true_slots/vqa/d/per_question",
                    "value": math.nan,
                },
            ],
        },
        "causal/precision_drop": {"direction": "min", "what": "", "references": []},
    },
    "controls": CONTROLS,
}


@dataclass
class SyntheticSweep:
    uri: str
    experiment: str
    sweep_id: str
    parent_id: str
    failed_run_id: str
    final: dict  # FINAL: the logged final metrics, to check aggregates against
    old_sweep_id: str = OLD_SWEEP_ID  # the earlier sweep: one trial, no metrics.json


def _parent(mlf: MlflowClient, exp_id: str, sweep_id: str, start: int) -> str:
    tags = {
        "cjepa.sweep_id": sweep_id,
        "cjepa.role": "sweep",
        "cjepa.preset": "tiny",
        "cjepa.world": "collide",
        "cjepa.git_commit": "abc1234",
    }
    run = mlf.create_run(exp_id, start_time=start, tags=tags, run_name=sweep_id)
    params = {"sweep.seeds": "[0, 1, 2]", "sweep.mode": "grid", "base.train.steps": "20"}
    mlf.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def _trial(mlf, exp_id, sweep_id, parent_id, unit, budget, seed, final) -> str:
    tags = {
        "cjepa.sweep_id": sweep_id,
        "cjepa.trial_id": f"t{unit}{budget}{seed}",
        "cjepa.role": "trial",
        "cjepa.seed": str(seed),
        "cjepa.eval_protocol": "fixed val windows",
        "cjepa.git_commit": "abc1234",
        "mlflow.parentRunId": parent_id,
    }
    run = mlf.create_run(exp_id, tags=tags, run_name=f"unit={unit},budget={budget},seed={seed}")
    rid = run.info.run_id
    params = {
        "masking.unit": unit,
        "masking.budget": str(budget),
        "masking.ratio": str(budget / 7),
        "predictor.aux_encoding": "entity",
        "train.seed": str(seed),
        "eval_protocol": "fixed val windows",
        "trial.masking.unit": unit,
        "trial.masking.budget": str(budget),
        "trial.train.seed": str(seed),
    }
    now = int(time.time() * 1000)
    metrics = [Metric("train/loss", 1.0 / (s + 1 + seed), now, s) for s in (0, 10, 20)]
    metrics += [Metric("val/future_visible", 0.5 / (s + 1), now, s) for s in (10, 20)]
    metrics += [Metric(k, v, now, 20) for k, v in (final or {}).items()]
    if final:
        refs = {**REFERENCE_METRICS, NOISY: 0.1 * (seed + 1)}
        metrics += [Metric(k, v, now, 20) for k, v in refs.items()]
    mlf.log_batch(rid, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    mlf.set_terminated(rid, "FINISHED" if final else "FAILED")
    return rid


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """An empty SQLite store with MLflow's tables: creating them takes seconds, copying does not."""
    path = tmp_path_factory.mktemp("store") / "mlruns.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def synthetic_sweep(tmp_path, empty_store) -> SyntheticSweep:
    """Two sweeps (an old one with one trial, then the latest with 9 trials, one failed)."""
    shutil.copy(empty_store, tmp_path / "mlruns.db")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlf = MlflowClient(tracking_uri=uri)
    exp_id = mlf.create_experiment(EXPERIMENT, artifact_location=str(tmp_path / "artifacts"))
    old = _parent(mlf, exp_id, OLD_SWEEP_ID, int(time.time() * 1000) - 3_600_000)
    old_final = {"final/future_visible": 9.0, "final/copy_last": 8.5, "causal/precision_drop": 0.3}
    _trial(mlf, exp_id, OLD_SWEEP_ID, old, "object", 2, 0, old_final)
    mlf.set_terminated(old, "FINISHED")
    parent = _parent(mlf, exp_id, SWEEP_ID, int(time.time() * 1000))
    for (unit, budget, seed), final in FINAL.items():
        _trial(mlf, exp_id, SWEEP_ID, parent, unit, budget, seed, final)
    failed = _trial(mlf, exp_id, SWEEP_ID, parent, *FAILED, None)
    mlf.set_tag(parent, "mlflow.note.content", "synthetic")
    mlf.log_batch(parent, tags=[RunTag("cjepa.version.mlflow", "3.17.2")])
    mlf.log_batch(parent, metrics=[Metric(k, v, 0, 0) for k, v in CONTROLS.items()])
    mlf.log_text(parent, json.dumps(METRICS_JSON, indent=1), "metrics.json")
    mlf.set_terminated(parent, "FAILED")
    return SyntheticSweep(uri, EXPERIMENT, SWEEP_ID, parent, failed, FINAL)
