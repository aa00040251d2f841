import pytest

from cjepa.distributed import tracking


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    return uri, tracking.client(uri)


def test_parent_child_hierarchy_and_reuse(store, tmp_path):
    uri, mlf = store
    exp = tracking.get_or_create_experiment(mlf, "t")
    assert tracking.get_or_create_experiment(mlf, "t") == exp
    parent, created = tracking.get_or_create_run(mlf, exp, key={"cjepa.sweep_id": "s"}, name="s")
    assert created
    child, created = tracking.get_or_create_run(
        mlf,
        exp,
        key={"cjepa.sweep_id": "s", "cjepa.trial_id": "t1"},
        name="trial",
        parent_id=parent,
    )
    assert created
    again, created = tracking.get_or_create_run(
        mlf,
        exp,
        key={"cjepa.sweep_id": "s", "cjepa.trial_id": "t1"},
        name="trial",
        parent_id=parent,
    )
    assert (again, created) == (child, False)  # a retried trial reuses its run

    tr = tracking.MlflowTracker(uri, child)
    tr.log_params({"a.b": 1, "c": "x" * 7000})
    tr.log_params({"a.b": 1})  # resume: logging the same params again is harmless
    tr.log_metrics({"val/future": 0.5, "train/loss": 1.0}, step=10)
    tr.log_metrics({"val/future": 0.25}, step=20)
    (tmp_path / "a.txt").write_text("hi")
    tr.log_artifact(tmp_path / "a.txt", "files")
    tr.log_text("| table |", "table.md")
    tracking.end_run(mlf, child)

    run = mlf.get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["a.b"] == "1" and len(run.data.params["c"]) == 6000
    assert [m.value for m in mlf.get_metric_history(child, "val/future")] == [0.5, 0.25]
    assert run.info.status == "FINISHED"
    assert {a.path for a in mlf.list_artifacts(child)} == {"files", "table.md"}
    assert len(mlf.search_runs([exp])) == 2


def test_resolve_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert tracking.resolve_uri(cwd=tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns.db"
    assert tracking.resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////x/y.db")
    assert tracking.resolve_uri() == "sqlite:////x/y.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    with pytest.raises(RuntimeError, match="MLFLOW_TRACKING_URI"):
        tracking.resolve_uri()


def test_environment_tags_record_code_and_versions():
    tags = tracking.environment_tags()
    assert tags["cjepa.version.torch"].startswith("2.13")
    assert tags["cjepa.git_commit"]
