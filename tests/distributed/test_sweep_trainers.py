"""Both sweep trainers (``sweep.trainer``): a trial trained in its own process runs the same loop
as Ray Train and cjepa.train.fit, logs the same MLflow rows, and retries from its checkpoint."""

import pytest

from cjepa.config import load_config
from cjepa.data.sources import load_windows
from cjepa.distributed import tracking
from cjepa.distributed.sweep import run_sweep
from cjepa.sweeps import SweepSpec, apply_trial
from cjepa.train import fit


def smoke():
    return load_config(
        "experiments/configs/smoke.yaml",
        ["train.steps=30", "train.log_every=10", "train.eval_every=10", "train.threads=1"],
    )


@pytest.mark.parametrize("trainer", ["in_trial", "ray_train"])
def test_trainers_reproduce_fit_and_log_every_row(ray_session, tmp_path, trainer):
    base = smoke()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = SweepSpec(grid={"masking.budget": [0, 1]}, trainer=trainer, cpus_per_worker=0.5)
    result = run_sweep(
        base, spec, sweep_id=f"s-{trainer}", storage_path=tmp_path / "sweeps", tracking_uri=uri
    )
    assert len(result.rows) == 2 and not any(r["error"] for r in result.rows)
    mlf = tracking.client(uri)
    trials = {
        r.data.params["masking.budget"]: r
        for r in mlf.search_runs(
            [mlf.get_experiment_by_name("cjepa").experiment_id], "tags.`cjepa.role` = 'trial'"
        )
    }
    assert set(trials) == {"0", "1"}
    for row in result.rows:
        cfg = apply_trial(base.to_dict(), {"masking.budget": row["masking.budget"]})
        train, val = load_windows(cfg.data)
        ref = fit(
            cfg,
            train,
            val,
            out_dir=tmp_path / "ref",
            resume=False,
            progress=False,
            log=lambda *_: None,
        )
        assert row["val/loss"] == pytest.approx(ref.history[-1]["val/loss"], rel=1e-5)
        run = trials[str(row["masking.budget"])]
        assert run.info.status == "FINISHED"
        history = mlf.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in history] == [10, 20, 30]
        assert [m.value for m in history] == pytest.approx(
            [r["train/loss"] for r in ref.history], rel=1e-5
        )
        assert "final/future_visible" in run.data.metrics


def test_in_trial_needs_one_worker():
    with pytest.raises(ValueError, match=r"sweep\.workers_per_trial"):
        SweepSpec(trainer="in_trial", workers_per_trial=2)
    with pytest.raises(ValueError, match=r"sweep\.trainer"):
        SweepSpec(trainer="threads")


def test_a_refused_grid_leaves_no_mlflow_run(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = SweepSpec(grid={"masking.budget": [0, 9]})  # the smoke world has 4 slots
    with pytest.raises(ValueError, match=r"masking\.budget"):
        run_sweep(smoke(), spec, sweep_id="bad", storage_path=tmp_path / "s", tracking_uri=uri)
    mlf = tracking.client(uri)
    exp = mlf.get_experiment_by_name("cjepa")
    assert exp is None or mlf.search_runs([exp.experiment_id]) == []
    assert not (tmp_path / "s" / "bad").exists()
