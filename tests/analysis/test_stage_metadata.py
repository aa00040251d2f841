"""A stage registered at run time (in this test, nowhere in analysis/) shows in the ablation table
with the direction it declared: the sweep's metrics.json carries it, the analysis reads it."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis import ablation_table
from analysis.store import load_sweep
from analysis.table import build_table
from cjepa.config import load_config
from cjepa.evaluation import stage as st
from cjepa.metrics import MetricFamily, MetricInfo, Reference

EXPERIMENT = "toy-stage"


@dataclass
class ToyOptions:
    scale: float = 1.0


#: ``toy/error`` is lower-is-better, where its name alone would say nothing and ``toy/score``
#: is declared lower-is-better too, against the name guess (``score`` reads as higher).
TOY = MetricFamily(
    "toy",
    metrics={"toy/score": MetricInfo("min", (Reference("chance", "floor", 0.5),), "toy score")},
    patterns=(("toy/error*", "min"),),
    headline=("toy/score",),
)


def toy_stage(cfg, state, ctx):
    opts = st.parse_options("toy", ToyOptions, ctx.options)
    return {"toy/score": opts.scale * state["step"], "toy/error_x": 1.0 / state["step"]}


def _trial(mlf, exp_id, parent_id, unit, budget, seed, metrics):
    tags = {"cjepa.role": "trial", "cjepa.seed": str(seed), "mlflow.parentRunId": parent_id}
    rid = mlf.create_run(exp_id, tags=tags, run_name=f"{unit}{budget}s{seed}").info.run_id
    params = {"masking.unit": unit, "masking.budget": str(budget), "train.seed": str(seed)}
    now = int(time.time() * 1000)
    mlf.log_batch(
        rid,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    mlf.set_terminated(rid, "FINISHED")


@pytest.fixture
def toy_sweep(tmp_path, empty_store, monkeypatch):
    """A sweep whose trials ran the toy stage through ``run_stages`` and whose parent logged
    metrics.json the way the pipeline does; the toy stage is unregistered afterwards."""
    from cjepa.distributed import pipeline, tracking

    monkeypatch.setattr(st, "STAGES", dict(st.STAGES))  # the registration ends with the test
    st.register_stage("toy", st.StageSpec(toy_stage, ToyOptions, (TOY,)))
    cfg = load_config("experiments/configs/smoke.yaml")
    shutil.copy(empty_store, tmp_path / "mlruns.db")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlf = MlflowClient(tracking_uri=uri)
    exp_id = mlf.create_experiment(EXPERIMENT, artifact_location=str(tmp_path / "artifacts"))
    parent = mlf.create_run(exp_id, tags={"cjepa.role": "sweep", "cjepa.sweep_id": "toy-1"})
    parent_id = parent.info.run_id
    rows = []
    for unit, budget, step in (("none", 0, 4), ("object", 1, 2)):
        for seed in (0, 1):
            state = {"model": {}, "history": [], "step": step + seed}
            ctx = st.StageContext(out_dir=tmp_path / f"{unit}{seed}")
            metrics = st.run_stages(cfg, state, {"toy": {"scale": 0.1}}, ctx)
            _trial(mlf, exp_id, parent_id, unit, budget, seed, metrics)
            rows.append(metrics)
    pipeline._log_controls(tracking.MlflowTracker(uri, parent_id), rows, {}, {})
    mlf.set_terminated(parent_id, "FINISHED")
    del st.STAGES["toy"]  # the analysis must get everything from the run
    return uri


def test_a_stage_registered_at_run_time_shows_in_the_table_with_its_direction(
    toy_sweep, tmp_path, capsys
):
    sweep = load_sweep(toy_sweep, EXPERIMENT)
    recorded = sweep.metrics_json["metrics"]["toy/score"]
    assert recorded["direction"] == "min" and recorded["stage"] == "toy"
    assert recorded["family"] == "toy" and recorded["headline"]
    table = build_table(sweep)
    assert table.metrics == ["toy/score"]  # the family's headline metric
    assert table.direction_from["toy/score"] == "metrics.json"
    assert table.directions["toy/score"] == "min"
    assert [(r.kind, r.label, r.value) for r in table.references["toy/score"]] == [
        ("floor", "chance", 0.5)
    ]
    every = build_table(sweep, ["all"])
    assert every.metrics == ["toy/error_x", "toy/score"]  # by name, as before
    assert every.directions["toy/error_x"] == "min"
    assert not every.guessed
    argv = ["--experiment", EXPERIMENT, "--tracking-uri", toy_sweep, "--no-plots", "--no-log"]
    assert ablation_table.main([*argv, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| toy/score ↓ |" in printed and "direction guessed" not in printed
    # OC-JEPA's steps 4, 5 -> 0.45 mean; object's 2, 3 -> 0.25: the lower one is the best
    assert "| object | 1 | **0.2500 ± 0.0707** (n=2) |" in printed
    assert "| *floor: chance* |  | 0.5000 |" in printed


def test_the_logged_metadata_lists_the_stage_only_while_it_is_registered(monkeypatch):
    from cjepa import metrics

    assert metrics.describe(["toy/score"], {})["toy/score"]["family"] is None
    monkeypatch.setitem(st.STAGES, "toy", st.StageSpec(toy_stage, ToyOptions, (TOY,)))
    entry = metrics.describe(["toy/score"], {})["toy/score"]
    assert entry["family"] == "toy" and entry["direction"] == "min"
    assert json.loads(json.dumps(entry))["references"][0]["value"] == 0.5
