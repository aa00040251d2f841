"""What sweep trials reserve (issue 17): an unplaceable plan is refused before the sweep starts,
a trial stopped early by ASHA gives its Train worker group back at once (it used to keep it until
the driver exited, and the next trial waited forever), and a trial that cannot be placed is
reported and then failed with what it waited for."""

import time
from pathlib import Path

import pytest
import ray

from cjepa.config import load_config
from cjepa.distributed import sweep as sweep_module
from cjepa.distributed import tracking
from cjepa.distributed.pipeline import load_ablation, run_ablation
from cjepa.distributed.resources import cluster_state
from cjepa.distributed.sweep import plan_resources, run_sweep
from cjepa.sweeps import SweepSpec, load_sweep


def smoke():
    return load_config(
        "experiments/configs/smoke.yaml",
        ["train.steps=20", "train.log_every=10", "train.eval_every=10", "train.threads=1"],
    )


def free_cpu_returns_to(expected: float, timeout: float = 20.0) -> float:
    """The cluster's free CPU once it is back to ``expected`` (or after ``timeout``)."""
    deadline = time.time() + timeout
    while True:
        free = ray.available_resources().get("CPU", 0.0)
        if abs(free - expected) < 1e-6 or time.time() > deadline:
            return free
        time.sleep(0.5)


def test_plan_counts_what_a_trial_reserves_and_refuses_what_no_node_holds():
    # 1 CPU per worker + the trial's own 0.01: one trial at a time on 2 CPUs, not two
    assert plan_resources(SweepSpec(), {"CPU": 2})[1] == 1
    assert plan_resources(SweepSpec(cpus_per_worker=0.66), {"CPU": 2})[1] == 2
    assert plan_resources(SweepSpec(trainer="in_trial", cpus_per_worker=0.9), {"CPU": 2})[1] == 2
    two_small = [{"CPU": 1.0}, {"CPU": 1.0}]
    with pytest.raises(ValueError) as err:
        plan_resources(SweepSpec(cpus_per_worker=1.5), {"CPU": 2.0}, two_small)
    message = str(err.value)
    assert "sweep.workers_per_trial x sweep.cpus_per_worker = 1 x {CPU: 1.5}" in message
    assert "largest node {CPU: 1}" in message and "cluster {CPU: 2}" in message
    assert "\n" not in message  # one line, as cli.run prints it
    # two 1-CPU workers do fit two 1-CPU nodes (PACK spreads when it must)
    plan_resources(SweepSpec(workers_per_trial=2, cpus_per_worker=0.99), {"CPU": 2}, two_small)
    with pytest.raises(ValueError, match="cannot be placed"):  # 4 GPU workers, 2 GPUs
        plan_resources(SweepSpec(workers_per_trial=4), {"CPU": 16, "GPU": 2})
    # an autoscaler may add nodes: max_concurrent set, no refusal
    plan_resources(SweepSpec(cpus_per_worker=1.5, max_concurrent=2), {"CPU": 2.0}, two_small)


def test_a_refused_plan_leaves_no_mlflow_run(ray_session, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "node_resources", lambda: [{"CPU": 1.0}, {"CPU": 1.0}])
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = SweepSpec(grid={"masking.budget": [0]}, cpus_per_worker=1.5)
    with pytest.raises(ValueError, match=r"sweep\.cpus_per_worker"):
        run_sweep(smoke(), spec, sweep_id="big", storage_path=tmp_path / "s", tracking_uri=uri)
    exp = tracking.client(uri).get_experiment_by_name("cjepa")
    assert exp is None or tracking.client(uri).search_runs([exp.experiment_id]) == []


@pytest.mark.timeout(600)
def test_an_asha_stopped_trial_gives_its_workers_back(ray_session, tmp_path):
    """lr 1e-9 learns nothing in 10 steps, so ASHA (rung 1) stops it; the trial after it needs
    the same CPU, so it only runs if the stopped trial's worker group was removed."""
    total = ray.cluster_resources()["CPU"]
    before = free_cpu_returns_to(total)
    assert before == pytest.approx(total), f"{total - before} CPU still reserved before the test"
    spec = SweepSpec(
        grid={"optim.lr": [1e-3, 1e-9, 3e-3]},
        asha=True,
        grace_period=1,
        reduction_factor=2,
        pending_warn_s=30,
        pending_fail_s=120,  # a leak fails the third trial instead of hanging the test
    )
    result = run_sweep(smoke(), spec, sweep_id="asha", storage_path=tmp_path, tracking_uri=None)
    rows = {row["optim.lr"]: row for row in result.rows}
    state = cluster_state()  # what a failure below should be read with
    assert len(rows) == 3 and not any(r["error"] for r in rows.values()), (rows, state)
    assert not rows[1e-9]["complete"]  # stopped early by the scheduler
    assert rows[1e-3]["complete"]
    assert "val/future_visible" in rows[3e-3]  # the trial after the stop was placed and trained
    assert result.released >= 1, state  # the stopped trial's worker group, removed by the ledger
    assert free_cpu_returns_to(before) == pytest.approx(before)
    assert not [t for t in ray.util.placement_group_table().values() if t["state"] != "REMOVED"]


@pytest.mark.timeout(600)
def test_a_trial_that_cannot_be_placed_is_reported_then_failed(ray_session, tmp_path, capfd):
    """Another user holds 1.5 of the 2 CPUs: the trial's worker group (1 CPU) cannot start."""
    total = ray.cluster_resources()["CPU"]
    start = free_cpu_returns_to(total)
    # Something an earlier test left reserved would keep the holder from starting: say so
    # instead of waiting on it forever.
    assert start == pytest.approx(total), f"{total - start} CPU still reserved before the test"

    @ray.remote(num_cpus=1.5)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    ray.get(holder.ready.remote(), timeout=60)
    spec = SweepSpec(grid={"masking.budget": [1]}, pending_warn_s=2, pending_fail_s=6)
    try:
        t0 = time.time()
        result = run_sweep(
            smoke(), spec, sweep_id="stuck", storage_path=tmp_path, tracking_uri=None
        )
        elapsed = time.time() - t0
    finally:
        ray.kill(holder)
    out = capfd.readouterr().out
    (row,) = result.rows
    assert not row["complete"] and "PendingTimeout" in row["error"], row
    assert "has waited" in row["error"]
    assert "Train worker group (1 x {CPU: 1}, PACK)" in row["error"]
    assert "free {CPU: 0.49" in row["error"]  # 2 - 1.5 held - the trial's 0.01
    assert "[sweep] waiting: trial budget=1,seed=0 has waited" in out, out[-2000:]
    assert "pending placement groups: PACK ['{CPU: 1}']" in out
    assert elapsed < 120  # failed (and retried once by Tune), not waiting forever
    assert free_cpu_returns_to(start) == pytest.approx(start)


SWEEPS = sorted((Path(__file__).resolve().parents[2] / "experiments/configs/sweeps").glob("*.yaml"))
PRESET = Path(__file__).resolve().parents[2] / "experiments/configs/ablate/tiny.yaml"


def short(spec_path: Path) -> list[str]:
    """``--sweep-set`` overrides that keep a shipped spec to a few tiny trials: one grid cell at
    one seed, or four Optuna samples (enough for ASHA to stop one)."""
    spec = load_sweep(spec_path)
    if spec.mode == "optuna":
        return ["num_samples=4"]
    return ["grid.masking.unit=[object]", "grid.masking.budget=[1]", "seeds=[0]", "blocks=[]"]


@pytest.fixture(scope="module")
def ablation_root(tmp_path_factory):
    """Shared by the specs below: each world's data and slots are made once."""
    return tmp_path_factory.mktemp("ablate")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("spec_path", SWEEPS, ids=lambda p: p.stem)
def test_every_shipped_sweep_runs_with_the_tiny_preset(ray_session, ablation_root, spec_path):
    world = "pusht" if "pusht" in spec_path.stem else "collide"  # Push-T cells: 3 slots
    uri = f"sqlite:///{ablation_root / 'mlruns.db'}"
    cfg, preset_dir = load_ablation(
        PRESET, [f"root={ablation_root}", f"sweep={spec_path}", f"tracking_uri={uri}"]
    )
    start = free_cpu_returns_to(ray.cluster_resources()["CPU"])
    result = run_ablation(cfg, preset_dir, world=world, sweep_overrides=short(spec_path))
    assert not any(r["error"] for r in result.rows), result.rows
    assert result.finished >= 1 and result.ended == result.total
    if load_sweep(spec_path).asha:
        stopped = [r for r in result.rows if not r["complete"]]
        assert stopped, "ASHA stopped no trial"
    assert free_cpu_returns_to(start) == pytest.approx(start)
