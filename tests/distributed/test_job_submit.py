"""The real cluster path: a Ray head on this machine, `ray job submit` of the tiny ablation,
SUCCEEDED, runs in MLflow, the head stopped by its own PID (not `ray stop`, which would stop
every Ray on the machine). Slow (`make test-slow`)."""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from cjepa.distributed import local_cluster as lc
from cjepa.distributed import tracking

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ray_job_submit_tiny_ablation(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # short: Ray's socket paths
    cluster = lc.start_cluster(temp, head_cpus=2, workers=0)
    try:
        uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
        ablation = ["experiments/ablate_masking.py", "--preset", "tiny"]
        out = lc.submit(
            cluster,
            [sys.executable, *ablation, "--root", str(tmp_path / "runs")],
            working_dir=REPO,
            env_vars={"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)},
            timeout=800,
        )
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
        left = lc.stop_cluster(cluster)
        shutil.rmtree(temp, ignore_errors=True)
    assert left == [], f"processes of the head outlived it: {left}"
