"""The sweep's best trial in the MLflow Model Registry (SQLite store, no Ray): which trial wins,
what the version carries, that it loads with weights_only, and that a resumed sweep does not
register twice."""

import tempfile
from pathlib import Path

import pytest
import torch

from cjepa.distributed import registry, tracking

METRIC = "val/future_visible"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep parent with four trial runs: three complete (``METRIC`` 0.5, 0.2, 0.9, each with
    a checkpoint whose tensor is its index), one incomplete with the lowest value. Shared by
    the tests (a new SQLite store costs seconds): each registers under its own model name."""
    tmp_path = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    mlf = tracking.client(uri)
    exp = mlf.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    key = {"cjepa.sweep_id": "s1"}
    parent, _ = tracking.get_or_create_run(mlf, exp, key={**key, "cjepa.role": "sweep"}, name="s1")
    for i, (value, complete) in enumerate([(0.5, True), (0.2, True), (0.9, True), (0.1, False)]):
        run_id, _ = tracking.get_or_create_run(
            mlf,
            exp,
            key={**key, "cjepa.trial_id": f"t{i}"},
            name=f"trial-{i}",
            parent_id=parent,
        )
        tracker = tracking.MlflowTracker(uri, run_id)
        tracker.log_params({"predictor.width": 32 + i, "trial.masking.unit": "object"})
        tracker.log_metrics({METRIC: value}, 10)
        with tempfile.TemporaryDirectory() as d:
            state = {"model": {"w": torch.full((3,), float(i))}, "config": {"i": i}, "step": 10}
            torch.save(state, Path(d) / "predictor.pt")
            tracker.log_artifact(Path(d) / "predictor.pt", "checkpoint")
        if complete:
            tracker.set_tags({tracking.COMPLETE_TAG: "1"})
    return uri, mlf, exp, parent


def test_best_complete_trial_is_registered_with_its_config_and_loads_weights_only(sweep):
    uri, mlf, exp, parent = sweep
    got = registry.register_best(
        uri, exp, parent, sweep_id="s1", metric=METRIC, direction="min", name="cjepa-t"
    )
    assert (got.name, got.version, got.value, got.uri) == ("cjepa-t", "1", 0.2, "models:/cjepa-t/1")
    version = mlf.get_model_version("cjepa-t", "1")
    assert version.run_id == got.run_id
    assert mlf.get_run(got.run_id).info.run_name == "trial-1"  # not the incomplete trial-3
    tags = version.tags
    assert tags["predictor.width"] == "33" and tags["trial.masking.unit"] == "object"
    assert (tags["cjepa.sweep_id"], tags["cjepa.metric"], tags["cjepa.trial_id"]) == (
        "s1",
        METRIC,
        "t1",
    )
    checkpoint = registry.load_registered(uri, "cjepa-t")
    assert torch.equal(checkpoint["model"]["w"], torch.full((3,), 1.0))
    assert checkpoint["config"] == {"i": 1} and checkpoint["step"] == 10


def test_max_direction_and_default_name(sweep):
    uri, _, exp, parent = sweep
    got = registry.register_best(uri, exp, parent, sweep_id="s9", metric=METRIC, direction="max")
    assert got.name == "cjepa-s9" and got.value == 0.9


def test_a_resumed_sweep_keeps_its_version_and_a_new_sweep_adds_one(sweep):
    uri, mlf, exp, parent = sweep
    kw = {"metric": METRIC, "direction": "min", "name": "cjepa-resumed"}
    first = registry.register_best(uri, exp, parent, sweep_id="s1", **kw)
    again = registry.register_best(uri, exp, parent, sweep_id="s1", **kw)
    assert again.version == first.version == "1"
    assert len(mlf.search_model_versions("name = 'cjepa-resumed'")) == 1
    other = registry.register_best(uri, exp, parent, sweep_id="s2", **kw)
    assert other.version == "2"
    assert registry.load_registered(uri, "cjepa-resumed", 2)["config"] == {"i": 1}


def test_nothing_is_registered_without_the_metric(sweep):
    uri, mlf, exp, parent = sweep
    got = registry.register_best(
        uri, exp, parent, sweep_id="s1", metric="val/absent", direction="min", name="cjepa-none"
    )
    assert got is None
    assert "cjepa-none" not in {m.name for m in mlf.search_registered_models()}
    with pytest.raises(LookupError, match="cjepa-none"):
        registry.load_registered(uri, "cjepa-none")


def test_artifacts_live_beside_the_sqlite_store_whatever_the_working_directory(
    sweep, tmp_path, monkeypatch
):
    # A Ray job runs in a temporary copy of the working directory: MLflow's default
    # ./mlruns/<id> would put checkpoints (and so registered models) there.
    uri, mlf, _, _ = sweep
    monkeypatch.chdir(tmp_path)
    exp = tracking.get_or_create_experiment(mlf, "job experiment")
    run_id = mlf.create_run(exp).info.run_id
    tracking.MlflowTracker(uri, run_id).log_text("x", "note.txt")
    store_dir = Path(uri.removeprefix("sqlite:///")).parent
    assert (store_dir / "mlruns" / "job_experiment" / run_id / "artifacts" / "note.txt").is_file()
    assert not (tmp_path / "mlruns").exists()
