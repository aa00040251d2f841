"""System metrics per trial run (MLflow's monitor, psutil): logged while a block runs, at least
one point for a block shorter than the sampling interval, nothing without psutil or a run.
psutil is a dependency (pyproject.toml), so the sampling tests run everywhere."""

import time

import pytest

from cjepa.distributed import tracking
from cjepa.distributed.train import system_metrics

CPU, MEMORY = "system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('sysmetrics') / 'mlruns.db'}"
    mlf = tracking.client(uri)
    return uri, mlf, tracking.get_or_create_experiment(mlf, "sys")


def _history(mlf, run_id: str, key: str) -> list[float]:
    return [m.value for m in mlf.get_metric_history(run_id, key)]


def test_samples_cpu_and_memory_into_the_run_while_the_block_runs(store):
    uri, mlf, exp = store
    run_id = mlf.create_run(exp).info.run_id
    with tracking.system_metrics(uri, run_id, interval_s=0.2) as sampling:
        time.sleep(1.0)
    assert sampling
    cpu, memory = _history(mlf, run_id, CPU), _history(mlf, run_id, MEMORY)
    assert len(cpu) >= 2 and all(0 <= v <= 100 for v in cpu)
    assert memory and all(v > 0 for v in memory)
    steps = [m.step for m in mlf.get_metric_history(run_id, CPU)]
    assert steps == sorted(set(steps))


def test_a_block_shorter_than_one_interval_still_logs_a_point(store):
    uri, mlf, exp = store
    run_id = mlf.create_run(exp).info.run_id
    with system_metrics({"uri": uri, "run_id": run_id}) as sampling:  # the Train worker's path
        pass
    assert sampling and len(_history(mlf, run_id, MEMORY)) == 1


def test_without_psutil_or_a_run_nothing_is_sampled(store, monkeypatch):
    uri, mlf, exp = store
    run_id = mlf.create_run(exp).info.run_id
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    assert not tracking.system_metrics_available()
    with tracking.system_metrics(uri, run_id, interval_s=0.1) as sampling:
        time.sleep(0.3)
    assert sampling is False
    assert not [k for k in mlf.get_run(run_id).data.metrics if k.startswith("system/")]
    with system_metrics(None) as sampling:
        assert sampling is False
