"""Process-level faults (issue I), as a user meets them: a killed Ray Train worker, a driver
killed with SIGKILL then resumed, data generation and slot extraction killed mid-shard, and an
output directory that cannot be written. Slow: `make test-slow`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cjepa.data.splits import list_shards
from cjepa.distributed import tracking

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "experiments"


def env_for(uri: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return env


def finished_trials(mlf) -> list:
    """The ablation's trial runs that FINISHED (none before the experiment exists)."""
    exp = mlf.get_experiment_by_name("cjepa-ablation")
    if exp is None:
        return []
    return mlf.search_runs(
        [exp.experiment_id], "tags.`cjepa.role` = 'trial' and attributes.status = 'FINISHED'"
    )


def wait_for(predicate, timeout: float, every: float = 0.5) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def train_worker_pids() -> list[int]:
    """PIDs of Ray Train worker processes (Ray titles them ``ray::RayTrainWorker...``)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::RayTrainWorker" in line]


TRAIN_DRIVER = """
import sys
from cjepa.config import load_config
from cjepa.distributed.runtime import init_ray
from cjepa.distributed.train import load_trained, make_trainer

init_ray(num_cpus=2, log_to_driver=False)
cfg = load_config(
    "experiments/configs/smoke.yaml",
    ["train.steps=3000", "train.log_every=100", "train.eval_every=100", "train.threads=1"],
)
trainer = make_trainer(
    cfg, name="kill", storage_path=sys.argv[1], mlflow={"uri": sys.argv[2], "run_id": sys.argv[3]}
)
print("final step", load_trained(trainer.fit())["step"])
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_worker_killed_mid_run_resumes_from_its_checkpoint(tmp_path):
    """FailureConfig restarts the worker group from the last reported checkpoint; MLflow keeps
    one run with one point per step. The trainer runs in its own process with its own local Ray
    (a Ray shared with other tests would die with `ray stop` in test_job_submit)."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlf = tracking.client(uri)
    run_id, _ = tracking.get_or_create_run(
        mlf, tracking.get_or_create_experiment(mlf, "faults"), key={"k": "kill"}, name="kill"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN_DRIVER, str(tmp_path), uri, run_id],
        env=env_for(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:

        def reported() -> bool:
            return len(mlf.get_metric_history(run_id, "train/loss")) >= 3  # a checkpoint exists

        assert wait_for(reported, 300), "training never reported"
        workers = train_worker_pids()
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "final step 3000" in out
    steps = [m.step for m in mlf.get_metric_history(run_id, "train/loss")]
    assert steps == list(range(100, 3001, 100))  # every step once: none twice, none missing


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sweep_driver_sigkill_then_resume(tmp_path):
    """kill -9 of the driver after a finished trial: --resume reruns nothing finished, logs
    nothing twice, and ends with one parent and every trial FINISHED."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cmd = [
        sys.executable, str(SCRIPTS / "ablate_masking.py"), "--preset", "tiny",
        "--root", str(tmp_path / "runs"), "--sweep-id", "kill9",
        "--sweep-set", "max_concurrent=1",
    ]  # fmt: skip
    mlf = tracking.client(uri)

    def finished() -> list:
        return finished_trials(mlf)

    first = subprocess.Popen(cmd, env=env_for(uri), cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(lambda: len(finished()) >= 1, 600, every=1), "no trial finished"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray it started
        first.wait(60)
    done = {r.info.run_id: r for r in finished()}
    points = {
        rid: {k: len(mlf.get_metric_history(rid, k)) for k in r.data.metrics}
        for rid, r in done.items()
    }
    second = subprocess.run([*cmd, "--resume"], env=env_for(uri), cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    exp = mlf.get_experiment_by_name("cjepa-ablation")
    runs = mlf.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("cjepa.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("cjepa.role") == "trial"]
    assert len(parents) == 1 and len(children) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    for rid, counts in points.items():  # finished before the kill: not evaluated or logged again
        assert {k: len(mlf.get_metric_history(rid, k)) for k in counts} == counts
    for child in children:
        for key in child.data.metrics:
            steps = [m.step for m in mlf.get_metric_history(child.info.run_id, key)]
            assert len(steps) == len(set(steps)), (child.info.run_name, key)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stage", ["make_data", "extract_slots"])
def test_killed_mid_shard_leaves_no_partial_shard_and_reruns_clean(tmp_path, stage):
    data = tmp_path / "data"
    make = [
        sys.executable, str(SCRIPTS / "make_data.py"), "--world", "collide", "--episodes", "40",
        "--seed", "0", "--out", str(data), "--shard-size", "10", "--workers", "1",
        "--frames", "48", "--size", "48",
    ]  # fmt: skip
    extract = [
        sys.executable, str(SCRIPTS / "extract_slots.py"), "--data", str(data),
        "--encoder", "oracle:collide", "--out", str(tmp_path / "slots"), "--no-ray",
        "--batch-size", "1",
    ]  # fmt: skip
    if stage == "extract_slots":
        subprocess.run(make, env=env_for(), check=True, capture_output=True, timeout=300)
    cmd = make if stage == "make_data" else extract
    target = data if stage == "make_data" else tmp_path / "slots"
    proc = subprocess.Popen(cmd, env=env_for(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip

    def one_shard_done() -> bool:
        return target.exists() and len(list(target.rglob("*.parquet"))) >= 1

    assert wait_for(one_shard_done, 240, every=0.1)
    time.sleep(0.3)  # into the next shard
    proc.kill()
    proc.wait(30)
    # Shards are written to a hidden temp file and renamed, so every listed shard is whole:
    # list_shards(kind) reads each footer and raises ShardError on a partial file.
    kind = "episodes" if stage == "make_data" else "slots"
    for folder in {p.parent for p in target.rglob("*.parquet")}:
        listed = list_shards(folder, kind)
        assert listed and not any(p.name.startswith(".") for p in listed)
    again = subprocess.run(cmd, env=env_for(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    if stage == "make_data":
        assert len(list_shards(data, "episodes")) == 4
    else:
        (slot_dir,) = [p for p in (tmp_path / "slots").iterdir() if p.is_dir()]
        assert len(list_shards(slot_dir, "slots")) == 4


def test_unwritable_output_directory_fails_with_one_line(tmp_path):
    # /proc refuses new entries even to root: a read-only place on every Linux machine.
    out = Path("/proc/cjepa-no-such-dir/data")
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_data.py"), "--world", "collide", "--episodes",
         "2", "--seed", "0", "--out", str(out), "--workers", "1"],
        env=env_for(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and str(out.parent) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_tracking_server_stopped_mid_sweep_then_resume(tmp_path):
    """The MLflow server dies after a finished trial: the sweep fails within minutes (MLflow's
    retries are cut to seconds) with one line naming the server, the finished trials and the
    checkpoints stay; with the server back, --resume finishes every trial."""
    from urllib.parse import urlparse

    from test_mlflow_server import start_server

    server = start_server(tmp_path)
    port = urlparse(server.url).port
    cmd = [
        sys.executable, str(SCRIPTS / "ablate_masking.py"), "--preset", "tiny",
        "--root", str(tmp_path / "runs"), "--sweep-id", "down",
        "--sweep-set", "max_concurrent=1",
    ]  # fmt: skip
    mlf = tracking.client(server.url)

    def finished() -> list:
        return finished_trials(mlf)

    first = subprocess.Popen(cmd, env=env_for(server.url), cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert wait_for(lambda: len(finished()) >= 1, 600, every=1), "no trial finished"
        server.stop()
        t0 = time.time()
        _, err = first.communicate(timeout=900)
        failed_after = time.time() - t0
    finally:
        if first.poll() is None:
            first.kill()
        server.stop()
    assert first.returncode == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"127.0.0.1:{port}" in last, last
    print(f"failed {failed_after:.0f} s after the server stopped")
    assert list((tmp_path / "runs" / "sweeps" / "down").glob("*"))  # Tune state kept
    server = start_server(tmp_path, port=port)  # the same store, back on the same port
    try:
        second = subprocess.run([*cmd, "--resume"], env=env_for(server.url), cwd=tmp_path,
                                capture_output=True, text=True, timeout=900)  # fmt: skip
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        exp = mlf.get_experiment_by_name("cjepa-ablation")
        runs = mlf.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags.get("cjepa.role") == "trial"]
        assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
        parents = [r for r in runs if r.data.tags.get("cjepa.role") == "sweep"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finally:
        server.stop()
