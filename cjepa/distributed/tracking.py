"""MLflow tracking: the only module of cjepa that imports mlflow.

Layout: one MLflow experiment per ablation (``tracking.experiment``), one parent run per sweep
(tag ``cjepa.sweep_id``), one nested child run per trial (tags ``mlflow.parentRunId``,
``cjepa.sweep_id``, ``cjepa.trial_id``). Runs are found again by those tags, so a retried trial or
a resumed sweep reuses its run instead of creating a duplicate.

Where runs land: ``tracking.uri`` from the config, else ``MLFLOW_TRACKING_URI``, else
``sqlite:///<absolute working dir>/mlruns.db``. A Ray job (``ray job submit --working-dir .``)
runs in a temporary copy of the directory, so there the default would hide the runs in that copy:
inside a job we refuse to use the default and say how to pass the store (see ``resolve_uri``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

# MLflow retries a failing HTTP call 7 times with backoff factor 2 (about 4 minutes per call,
# measured): a tracking server that dies mid-sweep would stall every trial for hours. A few
# seconds of retries ride out a blip; set the variables to keep MLflow's own policy.
for _var, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
):
    os.environ.setdefault(_var, _value)

DEFAULT_DB = "mlruns.db"
_MAX_PARAM = 6000  # MLflow's limit on a param value
_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a job's driver process


def resolve_uri(configured: str | None = None, *, cwd: str | Path | None = None) -> str:
    """The tracking URI: config field > ``MLFLOW_TRACKING_URI`` > local SQLite file."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if _JOB_ENV in os.environ:
        raise RuntimeError(
            "this is a Ray job, which runs in a temporary copy of the working directory: the "
            f"default store ./{DEFAULT_DB} would be lost with it. Pass a store, e.g.\n"
            "  ray job submit --working-dir . --runtime-env-json "
            f'\'{{"env_vars": {{"MLFLOW_TRACKING_URI": "sqlite:///\'$PWD\'/{DEFAULT_DB}"}}}}\' '
            "-- python experiments/ablate_masking.py\n"
            "(or `make submit`), or an MLflow server URI on a cluster."
        )
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / DEFAULT_DB}"


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def artifact_location(uri: str, name: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts: ``<the database's
    folder>/mlruns/<name>``, whatever the working directory of the process that creates it.
    MLflow's own default is ``./mlruns/<id>`` of that process, which under ``ray job submit`` is
    the job's temporary copy of the working directory: checkpoints, plots and registered models
    would vanish with it. None (the server's or MLflow's choice) for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
    return str(folder / "mlruns" / re.sub(r"[^A-Za-z0-9._-]+", "_", name))


def get_or_create_experiment(mlf: MlflowClient, name: str) -> str:
    """Experiment id for ``name``; created by the driver before trials start, because parallel
    trials creating it against a fresh SQLite store race (ENVIRONMENT.md). A new experiment of
    a SQLite store keeps its artifacts beside the database (``artifact_location``)."""
    for attempt in range(5):
        exp = mlf.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return mlf.create_experiment(
                name, artifact_location=artifact_location(mlf.tracking_uri, name)
            )
        except mlflow.exceptions.MlflowException:
            time.sleep(0.2 * (attempt + 1))  # another process created it meanwhile
    raise RuntimeError(f"could not create or find MLflow experiment {name!r}")


def _find_run(mlf: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlf.search_runs(
        [experiment_id], filter_string=query, max_results=2, order_by=["attributes.start_time ASC"]
    )
    return runs[0].info.run_id if runs else None


COMPLETE_TAG = "cjepa.complete"  # set on a trial run once everything of it is logged


def completed_run(mlf: MlflowClient, experiment_id: str, key: dict[str, str]):
    """The run tagged with ``key`` if it FINISHED with everything logged (``COMPLETE_TAG``),
    else None."""
    found = _find_run(mlf, experiment_id, key)
    if found is None:
        return None
    run = mlf.get_run(found)
    if run.info.status == "FINISHED" and run.data.tags.get(COMPLETE_TAG) == "1":
        return run
    return None


def get_or_create_run(
    mlf: MlflowClient,
    experiment_id: str,
    *,
    key: dict[str, str],
    name: str,
    parent_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[str, bool]:
    """The run tagged with ``key`` (reused, marked running again) or a new one.

    Returns:
        (run_id, created).
    """
    found = _find_run(mlf, experiment_id, key)
    if found is not None:
        mlf.update_run(found, status="RUNNING")
        return found, False
    all_tags = {**(tags or {}), **key}
    if parent_id is not None:
        all_tags["mlflow.parentRunId"] = parent_id
    run = mlf.create_run(experiment_id, tags=all_tags, run_name=name)
    return run.info.run_id, True


def end_run(mlf: MlflowClient, run_id: str, *, failed: bool = False, killed: bool = False) -> None:
    """Mark a run FINISHED, FAILED or KILLED (interrupted; ``--resume`` reopens it)."""
    status = RunStatus.KILLED if killed else RunStatus.FAILED if failed else RunStatus.FINISHED
    mlf.set_terminated(run_id, RunStatus.to_string(status))


def end_open_children(mlf: MlflowClient, experiment_id: str, parent_id: str) -> int:
    """Mark the parent's child runs still RUNNING as KILLED (their trials were interrupted);
    returns how many."""
    runs = mlf.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
        ),
    )
    for run in runs:
        end_run(mlf, run.info.run_id, killed=True)
    return len(runs)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line naming ``uri``, when the tracking store cannot be used: an HTTP
    server that does not answer within ``timeout`` seconds, or a SQLite file in a directory that
    does not exist or cannot be written. (MLflow itself retries for minutes.)"""
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
                ok = reply.status == 200
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ConnectionError(
                f"MLflow tracking server {uri} is not reachable: {reason}"
            ) from err
        if not ok:
            raise ConnectionError(
                f"MLflow tracking server {uri} answered /health with {reply.status}"
            )
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise PermissionError(
                f"MLflow store {uri}: folder {folder} does not exist or is not writable"
            )


def _git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CJEPA_GIT_COMMIT", "unknown")
    return commit + ("-dirty" if dirty else "")


def environment_tags() -> dict[str, str]:
    """Code version, library versions and hardware, recorded on every run."""
    tags = {
        "cjepa.git_commit": _git_commit(),
        "cjepa.python": platform.python_version(),
        "cjepa.platform": platform.platform(),
        "cjepa.cpus": str(os.cpu_count()),
    }
    for lib in ("cjepa", "torch", "ray", "mlflow", "optuna", "numpy"):
        try:
            tags[f"cjepa.version.{lib}"] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            tags[f"cjepa.version.{lib}"] = "absent"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # a broken CUDA install must not stop tracking
        gpu = "unknown"
    tags["cjepa.gpu"] = gpu
    return tags


class MlflowTracker:
    """``cjepa.tracking.Tracker`` writing to one MLflow run through the client API (no global
    active-run state, so it is safe in Ray actors and threads)."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id
        self._client = client(uri)
        # (key -> steps already logged), filled lazily for a reused run, so that a resumed or
        # retried run never logs a (metric, step) point twice; None until the first log call.
        self._logged: dict[str, set[int]] | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items()]
        existing = self._client.get_run(self.run_id).data.params
        items = [p for p in items if p.key not in existing]  # params are write-once (resume)
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``, leaving out (metric, step) points the run already has
        (a resumed trial re-runs the steps after its last checkpoint)."""
        if self._logged is None:
            self._logged = {k: None for k in self._client.get_run(self.run_id).data.metrics}
        fresh = {}
        for k, v in metrics.items():
            if k in self._logged:
                if self._logged[k] is None:
                    history = self._client.get_metric_history(self.run_id, k)
                    self._logged[k] = {m.step for m in history}
                if step in self._logged[k]:
                    continue
            fresh[k] = v
        if not fresh:
            return
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in fresh.items()]
        self._client.log_batch(self.run_id, metrics=items)
        for k in fresh:
            steps = self._logged.setdefault(k, set())
            if steps is not None:
                steps.add(step)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_text(self, text: str, name: str) -> None:
        self._client.log_text(self.run_id, text, name)


#: Seconds between system-metric samples (MLflow's ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``
#: overrides it).
SYSTEM_METRICS_INTERVAL_S = 10.0


def system_metrics_available() -> bool:
    """MLflow samples CPU, memory, disk and network through ``psutil`` (GPU memory and
    utilisation also through ``pynvml``, from ``nvidia-ml-py``)."""
    return importlib.util.find_spec("psutil") is not None


@contextlib.contextmanager
def system_metrics(
    uri: str, run_id: str, interval_s: float = SYSTEM_METRICS_INTERVAL_S
) -> Iterator[bool]:
    """Log ``system/...`` metrics (CPU %, system memory MB, GPU memory MB when ``pynvml`` is
    importable, ...) to ``run_id`` every ``interval_s`` while the block runs, plus one last
    sample at its end, so a run shorter than one interval still gets a point. Yields whether
    it is sampling: without ``psutil`` it does nothing (MLflow's monitor needs it)."""
    if not system_metrics_available():
        yield False
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # MLflow announces every start and stop at INFO, once per trial: noise in the sweep's output.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    # resume_logging: a retried trial continues the steps of the run it reopens.
    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=interval_s, resume_logging=True, tracking_uri=uri
    )
    monitor.start()
    try:
        yield True
    finally:
        monitor.finish()
        # The monitor's loop leaves the samples it took since its last publish unlogged.
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
