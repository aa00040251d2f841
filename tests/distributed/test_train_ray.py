"""Ray Train runs the same loop as cjepa.train: one worker reproduces fit(); two workers DDP."""

import pytest

from cjepa.config import load_config
from cjepa.data.sources import load_windows
from cjepa.distributed import tracking
from cjepa.distributed.sweep import plan_resources
from cjepa.distributed.train import Scaling, load_trained, make_trainer
from cjepa.sweeps import SweepSpec
from cjepa.train import fit


def smoke(*extra):
    return load_config(
        "experiments/configs/smoke.yaml",
        ["train.steps=30", "train.log_every=10", "train.eval_every=10", *extra],
    )


def test_one_worker_matches_single_process(ray_session, tmp_path):
    cfg = smoke("predictor.dropout=0.1")
    state = load_trained(make_trainer(cfg, name="one", storage_path=str(tmp_path)).fit())
    train, val = load_windows(cfg.data)
    ref = fit(cfg, train, val, out_dir=tmp_path / "ref", progress=False, log=lambda *_: None)
    assert state["step"] == 30
    ray_curve = [r["train/loss"] for r in state["history"]]
    assert ray_curve == pytest.approx([r["train/loss"] for r in ref.history], rel=1e-5)


def test_two_worker_ddp_trains_and_logs_once(ray_session, tmp_path):
    cfg = smoke()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlf = tracking.client(uri)
    run_id, _ = tracking.get_or_create_run(
        mlf, tracking.get_or_create_experiment(mlf, "ddp"), key={"k": "ddp"}, name="ddp"
    )
    trainer = make_trainer(
        cfg,
        name="two",
        storage_path=str(tmp_path),
        scaling=Scaling(num_workers=2, cpus_per_worker=0.5),
        mlflow={"uri": uri, "run_id": run_id},
    )
    state = load_trained(trainer.fit())
    losses = [r["train/loss"] for r in state["history"]]
    assert state["step"] == 30 and losses[-1] < losses[0]
    history = mlf.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [10, 20, 30]  # rank 0 only: one value per report


def test_resources_fill_the_cluster():
    spec = SweepSpec()
    # a ray_train trial reserves 0.01 CPU beside its 1-CPU worker: two do not fit in 2 CPUs
    assert plan_resources(spec, {"CPU": 2})[1] == 1
    assert plan_resources(spec, {"CPU": 4})[1] == 3
    scaling, n = plan_resources(SweepSpec(workers_per_trial=2), {"CPU": 2})
    assert (scaling.num_workers, n) == (2, 1)
    scaling, n = plan_resources(spec, {"CPU": 64, "GPU": 16})
    assert scaling.use_gpu and n == 16
    assert plan_resources(SweepSpec(max_concurrent=3), {"CPU": 16})[1] == 3
    with pytest.raises(ValueError, match="use_gpu"):
        plan_resources(SweepSpec(use_gpu="yes"), {"CPU": 2})
    # autoscaling GPU workers (min 0): trials wait for GPUs instead of falling back to CPUs
    scaling, n = plan_resources(SweepSpec(use_gpu="yes", max_concurrent=4), {"CPU": 2})
    assert scaling.use_gpu and n == 4
