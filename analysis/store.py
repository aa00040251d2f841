"""Reading sweeps from an MLflow store (and logging the analysis back to the parent run).

``load_sweep`` builds an ``analysis.runs.Sweep`` from the parent run, its trial runs and the
parent's ``metrics.json``; ``resolve_uri`` picks the store as the training side does.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from analysis.runs import METRICS_JSON, AnalysisError, Sweep, Trial, group_key, seed_order

#: Same default store as ``cjepa.distributed.tracking.resolve_uri`` (not imported on purpose).
DEFAULT_DB = "mlruns.db"
REPO = Path(__file__).resolve().parents[1]
#: Where a trial may carry a model label (planning baselines: C-JEPA, OC-JEPA, patch, ...).


def resolve_uri(flag: str | None = None) -> str:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > ``sqlite:///<cwd>/mlruns.db`` (the project
    default, as in ``tracking.resolve_uri``), falling back to ``<repo>/mlruns.db`` when the
    working directory has no store but the repository root does."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    local = Path.cwd().resolve() / DEFAULT_DB
    if not local.exists() and (REPO / DEFAULT_DB).exists():
        local = REPO / DEFAULT_DB
    return f"sqlite:///{local}"


def connect(uri: str) -> MlflowClient:
    """A client for ``uri``; a SQLite file that does not exist is an error (MLflow would
    silently create an empty store and every search would find nothing)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.exists():
            raise AnalysisError(
                f"no MLflow store at {path}; run a sweep first (make run) or pass "
                "--tracking-uri / set MLFLOW_TRACKING_URI"
            )
    return MlflowClient(tracking_uri=uri)


def _search(client: MlflowClient, exp_id: str, query: str, order: list[str]) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp_id], filter_string=query, max_results=1000, order_by=order, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_experiment(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise AnalysisError(f"no experiment {name!r} in the store; known experiments: {known}")
    return exp.experiment_id


def list_sweeps(client: MlflowClient, experiment: str) -> list[Run]:
    """Parent runs of ``experiment``, newest first."""
    exp_id = find_experiment(client, experiment)
    return _search(client, exp_id, "tags.`cjepa.role` = 'sweep'", ["attributes.start_time DESC"])


def load_sweep(uri: str, experiment: str, sweep: str | None = None) -> Sweep:
    """The sweep ``sweep`` (a ``cjepa.sweep_id`` or a parent run id) of ``experiment``, or its
    latest sweep, with every trial run (finished or not)."""
    client = connect(uri)
    exp_id = find_experiment(client, experiment)
    parents = list_sweeps(client, experiment)
    if not parents:
        raise AnalysisError(
            f"no sweep runs (tag cjepa.role = 'sweep') in experiment {experiment!r}"
        )
    if sweep is None:
        parent = parents[0]
    else:
        hits = [
            p
            for p in parents
            if sweep in (p.data.tags.get("cjepa.sweep_id"), p.info.run_id, p.info.run_name)
        ]
        if not hits:
            known = [p.data.tags.get("cjepa.sweep_id", p.info.run_id) for p in parents]
            raise AnalysisError(
                f"no sweep {sweep!r} in experiment {experiment!r}; known sweeps: {known}"
            )
        parent = hits[0]
    by_id: dict[str, Run] = {}
    sweep_id = parent.data.tags.get("cjepa.sweep_id")
    queries = [f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"]
    if sweep_id:
        queries.append(f"tags.`cjepa.sweep_id` = '{sweep_id}' and tags.`cjepa.role` = 'trial'")
    for query in queries:
        for run in _search(client, exp_id, query, ["attributes.start_time ASC"]):
            by_id.setdefault(run.info.run_id, run)
    trials = [
        Trial(
            run_id=r.info.run_id,
            name=r.info.run_name or r.info.run_id,
            status=r.info.status,
            params=dict(r.data.params),
            tags=dict(r.data.tags),
            metrics=dict(r.data.metrics),
            start_ms=r.info.start_time,
            end_ms=r.info.end_time,
        )
        for r in by_id.values()
    ]
    trials.sort(key=lambda t: (group_key(t), seed_order(t.seed), t.start_ms or 0))
    return Sweep(uri, experiment, exp_id, parent, trials, _metrics_json(client, parent))


_PROGRESS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def _metrics_json(client: MlflowClient, parent: Run) -> dict | None:
    """The parent's ``metrics.json`` artifact, or None when it has none (older sweeps)."""
    run_id = parent.info.run_id
    if METRICS_JSON not in {f.path for f in client.list_artifacts(run_id)}:
        return None
    before = os.environ.get(_PROGRESS)
    os.environ[_PROGRESS] = "false"  # no progress bar on stderr for one small file
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(client.download_artifacts(run_id, METRICS_JSON, tmp))
            text = path.read_text(encoding="utf-8")
    finally:
        if before is None:
            os.environ.pop(_PROGRESS, None)
        else:
            os.environ[_PROGRESS] = before
    try:
        doc = json.loads(text)  # NaN (an unavailable reference value) is valid here
    except ValueError as err:
        raise AnalysisError(f"{METRICS_JSON} of run {run_id} is not JSON: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics", {}), dict):
        raise AnalysisError(
            f"{METRICS_JSON} of run {run_id}: expected an object with 'metrics' (name -> "
            f"{{direction, references}}) and 'controls', got: {text[:200]!r}"
        )
    return doc


def log_artifacts(sweep: Sweep, files: list[Path], artifact_path: str) -> None:
    """Attach ``files`` to the sweep's parent run under ``artifact_path``."""
    client = MlflowClient(tracking_uri=sweep.uri)
    for path in files:
        client.log_artifact(sweep.parent_id, str(path), artifact_path)


def default_out(sweep: Sweep) -> Path:
    """``runs/analysis/<sweep id>`` under the working directory (``runs/`` is git-ignored)."""
    return Path("runs") / "analysis" / sweep.sweep_id
