"""The real cluster path: a Ray head on this machine, `ray job submit` of the tiny ablation,
SUCCEEDED, runs in MLflow, `ray stop`. Slow (`make test-slow`)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cjepa.distributed import tracking

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_job_submit_tiny_ablation(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths have a limit
    start = [
        RAY,
        "start",
        "--head",
        "--num-cpus",
        "2",
        "--dashboard-host",
        "127.0.0.1",
        "--port",
        "6391",
        "--dashboard-port",
        "8277",
        "--dashboard-agent-listen-port",
        "52399",
        "--temp-dir",
        temp,
        "--disable-usage-stats",
    ]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
        runtime = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}})
        submit = [
            RAY,
            "job",
            "submit",
            "--address",
            "http://127.0.0.1:8277",
            "--working-dir",
            str(REPO),
            "--runtime-env-json",
            runtime,
            "--",
            sys.executable,
            "experiments/ablate_masking.py",
            "--preset",
            "tiny",
            "--root",
            str(tmp_path / "runs"),
        ]
        out = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=800)
        assert out.returncode == 0 and "succeeded" in out.stdout, (
            out.stdout[-3000:] + out.stderr[-2000:]
        )
        mlf = tracking.client(uri)
        exp = mlf.get_experiment_by_name("cjepa-ablation")
        runs = mlf.search_runs([exp.experiment_id])
        assert sorted(r.data.tags["cjepa.role"] for r in runs) == [
            "sweep",
            "trial",
            "trial",
            "trial",
        ]
        assert {r.info.status for r in runs} == {"FINISHED"}
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
