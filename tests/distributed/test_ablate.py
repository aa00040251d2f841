"""The main job end to end: `experiments/ablate_masking.py --preset tiny`, interrupted after its
first finished trial and resumed with --resume, as a user would run it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cjepa.distributed import tracking

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "ablate_masking.py"


def finished_trials(mlf, experiment):
    exp = mlf.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return mlf.search_runs(
        [exp.experiment_id], "tags.`cjepa.role` = 'trial' and attributes.status = 'FINISHED'"
    )


@pytest.mark.timeout(900)
def test_tiny_preset_interrupted_and_resumed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    repo = str(SCRIPT.parents[1])
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
    }
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--preset",
        "tiny",
        "--root",
        str(tmp_path / "runs"),
        "--sweep-id",
        "tiny-test",
        "--sweep-set",
        "max_concurrent=1",
    ]
    mlf = tracking.client(uri)

    first = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.time() + 400
    while time.time() < deadline and first.poll() is None:
        if finished_trials(mlf, "cjepa-ablation"):
            first.send_signal(signal.SIGINT)  # Tune saves its state and stops
            break
        time.sleep(1)
    out1, _ = first.communicate(timeout=180)
    done_before = {r.info.run_id for r in finished_trials(mlf, "cjepa-ablation")}
    assert len(done_before) >= 1, out1[-3000:]
    # An interrupted sweep says so, exits 130, prints no table and leaves nothing RUNNING.
    assert first.returncode == 130, out1[-3000:]
    assert "interrupted:" in out1 and "rerun with --resume" in out1
    assert "| final/future_visible" not in out1
    exp = mlf.get_experiment_by_name("cjepa-ablation")
    statuses = {r.info.status for r in mlf.search_runs([exp.experiment_id])}
    assert "RUNNING" not in statuses, statuses

    second = subprocess.run(
        [*cmd, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "| final/future_visible (lower is better) |" in second.stdout
    assert "| *floor: copy-last* |" in second.stdout

    exp = mlf.get_experiment_by_name("cjepa-ablation")
    runs = mlf.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("cjepa.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("cjepa.role") == "trial"]
    assert len(parents) == 1 and len(children) == 3  # no duplicates after the resume
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    labels = sorted(c.info.run_name for c in children)
    assert labels == [
        "unit=none,budget=0,seed=0",
        "unit=object,budget=1,seed=0",
        "unit=token,budget=1,seed=0",
    ]
    for child in children:
        params = child.data.params
        assert params["masking.unit"] in {"none", "object", "token"}
        assert params["data.source"] == "slots" and params["eval_protocol"]
        assert child.data.tags["cjepa.git_commit"] and child.data.tags["cjepa.seed"] == "0"
        steps = [m.step for m in mlf.get_metric_history(child.info.run_id, "val/future_visible")]
        assert steps[-1] == 20 and set(steps) == {10, 20}  # one evaluation per 10 steps
        arts = {a.path for a in mlf.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "plots", "checkpoint", "eval"} <= arts
        # the preset's evaluation stages ran in the trial: metrics and their files
        metrics = child.data.metrics
        assert "final/future_visible" in metrics and "eval/causal_s" in metrics
        assert (
            0.0 <= metrics["causal/auroc"] <= 1.0
            or metrics["causal/auroc"] != metrics["causal/auroc"]
        )
        causal = {a.path for a in mlf.list_artifacts(child.info.run_id, "eval/causal")}
        assert "eval/causal/causal_scores.json" in causal
    # Trials finished before the interruption were not trained again, and nothing was logged
    # twice: every metric of every trial has one point per step.
    for run_id in done_before:
        assert len(mlf.get_metric_history(run_id, "val/future_visible")) == 2
    for child in children:
        for key in child.data.metrics:
            steps = [m.step for m in mlf.get_metric_history(child.info.run_id, key)]
            assert len(steps) == len(set(steps)), (child.info.run_name, key, steps)
    parent_arts = {a.path for a in mlf.list_artifacts(parents[0].info.run_id)}
    assert {"ablation_table.md", "metrics.json", "controls"} <= parent_arts
    # controls: once per sweep on the parent, and every metric's direction recorded with it
    parent = mlf.get_run(parents[0].info.run_id)
    assert parent.data.metrics["control/copy_last/causal/auroc"] == pytest.approx(0.5)
    local = mlf.download_artifacts(parents[0].info.run_id, "metrics.json", str(tmp_path))
    doc = json.loads(Path(local).read_text())
    assert doc["metrics"]["final/future_present"]["direction"] == "min"
    assert doc["metrics"]["causal/auroc"]["direction"] == "max"
    refs = {r["label"]: r["value"] for r in doc["metrics"]["final/future_present"]["references"]}
    assert refs["copy-last"] == pytest.approx(children[0].data.metrics["final/copy_last_present"])
    assert parents[0].info.status == "FINISHED"
