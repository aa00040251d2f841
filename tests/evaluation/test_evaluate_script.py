"""experiments/evaluate.py: stages on a saved checkpoint and slot directory, no sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cjepa.evaluation.stage import StageContext, run_stages
from cjepa.train import build_predictor, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, str(REPO / "experiments" / "evaluate.py")]
TINY = str(REPO / "experiments" / "configs" / "ablate" / "tiny.yaml")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, collide_setup):
    root = tmp_path_factory.mktemp("evaluate")
    cfg, episodes = collide_setup(root, episodes=12, shard_size=6, questions=False)
    model = build_predictor(cfg)
    history = [{"step": 3, "val/future_visible": 0.5, "val/history": 0.25}]
    payload = {"model": model.state_dict(), "config": cfg.to_dict(), "step": 3, "history": history}
    save_checkpoint(root / "predictor.pt", payload)
    return root, cfg, episodes, payload


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*SCRIPT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_presets_stages_on_a_checkpoint_match_running_them_in_process(checkpoint, tmp_path):
    root, cfg, episodes, payload = checkpoint
    ckpt, out = str(root / "predictor.pt"), tmp_path / "m.json"
    # tiny.yaml keeps final_validation and causal of its base (smoke.yaml) and drops the rest
    args = ["--checkpoint", ckpt, "--episode-dir", episodes, "--preset", TINY]
    args += ["--set", "causal.max_episodes=2", "--json", str(out), "--out", str(tmp_path / "f")]
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["stages"] == {"final_validation": {"videos": 0}, "causal": {"max_episodes": 2}}
    got = doc["metrics"]
    assert got["final/future_visible"] == 0.5 and "causal/auroc" in got
    assert "causal/auroc" in done.stdout and (tmp_path / "f" / "causal").is_dir()
    state = {k: payload[k] for k in ("model", "history", "step")}
    ctx = StageContext(tmp_path / "ref", episode_dir=episodes)
    want = run_stages(cfg, state, doc["stages"], ctx)
    for name in ("final/future_present", "final/copy_last_present", "causal/auroc"):
        assert got[name] == pytest.approx(want[name], rel=1e-6, nan_ok=True), name


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--stage", "causal", "--set", "causal.graph_window=all"], "stages.causal.graph_window"),
        (["--stage", "nope"], "unknown evaluation stage 'nope'"),
        (["--set", "vqa.steps=3"], "expected STAGE.FIELD=VALUE for a stage of []"),
        ([], "no stage to run"),
    ],
)
def test_a_bad_stage_or_option_is_one_line(checkpoint, args, says):
    root = checkpoint[0]
    done = _run("--checkpoint", str(root / "predictor.pt"), "--out", str(root / "bad"), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_mlflow_run_gets_the_metrics_and_their_directions(checkpoint, tmp_path):
    from mlflow.tracking import MlflowClient

    root = checkpoint[0]
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    args = ["--checkpoint", str(root / "predictor.pt"), "--stage", "final_validation"]
    done = _run(*args, "--out", str(tmp_path / "f"), "--mlflow", "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[-1]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["final/future_visible"] == 0.5
    assert run.data.params["data.world"] == "collide"
    doc = json.loads(
        Path(client.download_artifacts(run_id, "metrics.json", str(tmp_path))).read_text()
    )
    entry = doc["metrics"]["final/future_visible"]
    assert entry["direction"] == "min" and entry["family"] == "final"


def test_no_mlflow_or_ray_import_unless_asked(checkpoint, tmp_path):
    root = checkpoint[0]
    argv = [
        str(SCRIPT[1]),
        "--checkpoint",
        str(root / "predictor.pt"),
        "--stage",
        "final_validation",
    ]
    argv += ["--out", str(tmp_path)]
    code = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "print(sorted(m for m in ('mlflow', 'ray') if m in sys.modules))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "final/future_visible" in done.stdout and done.stdout.strip().endswith("[]")
