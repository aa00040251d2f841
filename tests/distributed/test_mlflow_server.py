"""The tracking path as a cluster uses it: a real ``mlflow server`` (SQLite backend, proxied
artifacts), the ``tiny`` ablation logging to it over HTTP, and checks through MLflow's REST API
and a headless Chromium rendering the UI. Slow (``make test-slow``).

One server and one sweep serve the whole module. The server runs in its own process group and
gets SIGTERM in the fixture's finalizer. The browser test needs Debian's ``chromium``
(``apt-get install chromium``); it is skipped, never downloaded, when absent. Its screenshots go
to ``$CJEPA_TEST_ARTIFACTS`` (default ``<repo>/runs/test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRESET = REPO / "experiments" / "configs" / "ablate" / "tiny.yaml"
EXPERIMENT = "cjepa-ablation"
SWEEP_ID = "tiny-server"
TRIALS = ["unit=none,budget=0,seed=0", "unit=object,budget=1,seed=0", "unit=token,budget=1,seed=0"]
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.slow


# --- a real MLflow server -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    artifacts: Path

    def get(self, endpoint: str, **query: str) -> dict:
        return json.loads(self.get_bytes(endpoint, **query))

    def get_bytes(self, endpoint: str, **query: str) -> bytes:
        url = f"{self.url}{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.read()

    def post(self, endpoint: str, body: dict) -> dict:
        req = urllib.request.Request(
            f"{self.url}{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_server(root: Path, *, timeout: float = 90.0, port: int | None = None) -> Server:
    """``mlflow server`` on ``port`` (default: a free loopback port) over ``root``'s store;
    returns once ``/health`` answers."""
    port = port or _free_port()
    log = root / "server.log"
    artifacts = root / "artifacts"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Job execution off: ~5 s and 0.5 GB to start instead of ~10 s and 1.8 GB (ENVIRONMENT.md).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log, artifacts)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"mlflow server exited {proc.returncode}:\n{tail}")
        try:
            if server.get_bytes("/health").strip() == b"OK":
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"mlflow server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class Sweep:
    server: Server
    experiment_id: str
    parent_run_id: str
    seconds: float


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sweep(server, ray_session, tmp_path_factory) -> Sweep:
    """The tiny ablation, in this process on the session's Ray, tracked on ``server``."""
    from cjepa.distributed.pipeline import load_ablation, run_ablation

    root = tmp_path_factory.mktemp("ablate")
    cfg, preset_dir = load_ablation(PRESET, [f"root={root}", f"tracking_uri={server.url}"])
    t0 = time.perf_counter()
    result = run_ablation(cfg, preset_dir, sweep_id=SWEEP_ID)
    seconds = time.perf_counter() - t0
    assert not [r for r in result.rows if r.get("error")], result.rows
    exp = server.get("/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)
    return Sweep(server, exp["experiment"]["experiment_id"], result.parent_run_id, seconds)


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def _artifact_paths(server: Server, run_id: str, path: str = "") -> set[str]:
    listing = server.get("/api/2.0/mlflow/artifacts/list", run_id=run_id, path=path)
    return {f["path"] for f in listing.get("files", [])}


# --- REST checks ----------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_tiny_sweep_tracked_on_mlflow_server(sweep):
    srv = sweep.server
    found = srv.post(
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [sweep.experiment_id], "max_results": 100},
    )["runs"]
    parents = [r for r in found if _tags(r).get("cjepa.role") == "sweep"]
    children = [r for r in found if _tags(r).get("cjepa.role") == "trial"]
    assert len(parents) == 1 and len(children) == len(TRIALS), [r["info"] for r in found]
    parent = parents[0]
    assert parent["info"]["run_id"] == sweep.parent_run_id
    assert parent["info"]["run_name"] == SWEEP_ID
    assert {r["info"]["status"] for r in found} == {"FINISHED"}
    # Artifacts are proxied by the server, so workers need no access to the artifact store.
    assert all(r["info"]["artifact_uri"].startswith("mlflow-artifacts:/") for r in found)
    assert sorted(r["info"]["run_name"] for r in children) == TRIALS
    assert {_tags(c)["mlflow.parentRunId"] for c in children} == {sweep.parent_run_id}
    assert _tags(parent)["cjepa.preset"] == "tiny" and _tags(parent)["cjepa.world"] == "collide"

    for child in children:
        run_id = child["info"]["run_id"]
        params = _params(child)
        assert params["masking.unit"] in {"none", "object", "token"}
        assert params["data.source"] == "slots"
        history = srv.get(
            "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="val/future_visible"
        )["metrics"]
        assert sorted(m["step"] for m in history) == [10, 20]  # eval_every 10, 20 steps
        latest = {m["key"] for m in child["data"]["metrics"]}
        assert {"val/future_visible", "final/future_visible"} <= latest
        assert {"config.yaml", "plots", "checkpoint"} <= _artifact_paths(srv, run_id)
        assert _artifact_paths(srv, run_id, "plots") == {"plots/loss_curve.png"}
        png = srv.get_bytes("/get-artifact", run_id=run_id, path="plots/loss_curve.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
        config = srv.get_bytes("/get-artifact", run_id=run_id, path="config.yaml").decode()
        assert f"unit: {params['masking.unit']}" in config
        # The same file through the proxied-artifact API the UI and clients use.
        listing = srv.get(
            "/api/2.0/mlflow-artifacts/artifacts",
            path=f"{sweep.experiment_id}/{run_id}/artifacts/plots",
        )
        assert [f["path"] for f in listing["files"]] == ["loss_curve.png"]

    assert {"ablation_table.md", "preset.yaml"} <= _artifact_paths(srv, sweep.parent_run_id)
    table = srv.get_bytes(
        "/get-artifact", run_id=sweep.parent_run_id, path="ablation_table.md"
    ).decode()
    assert "| final/future_visible (lower is better) |" in table
    assert "| object \\|M\\|=1 |" in table and "| token \\|M\\|=1 |" in table
    # The server wrote the artifacts under its own --artifacts-destination.
    assert list(srv.artifacts.rglob("loss_curve.png"))
    print(f"\n[mlflow-server] tiny sweep against {srv.url}: {sweep.seconds:.1f} s")


# --- browser check --------------------------------------------------------------------------


def _artifact_dir() -> Path:
    out = Path(os.environ.get("CJEPA_TEST_ARTIFACTS") or REPO / "runs" / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no network of its own (no updates, sync or QUIC)."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",  # let the single-page app fetch and render
        *extra,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@pytest.mark.timeout(900)
def test_mlflow_ui_renders_sweep_in_chromium(sweep, tmp_path):
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} not installed (Debian: apt-get install chromium)")
    base = sweep.server.url
    # MLflow's UI is a React single-page app: the runs table of the experiment shows the
    # parent run (children are folded under it); the parent's page lists its child runs.
    pages = {
        "experiment-runs": f"{base}/#/experiments/{sweep.experiment_id}/runs",
        "parent-run": f"{base}/#/experiments/{sweep.experiment_id}/runs/{sweep.parent_run_id}",
    }
    expected = {"experiment-runs": [SWEEP_ID], "parent-run": [SWEEP_ID, *TRIALS]}
    out = _artifact_dir()
    for name, url in pages.items():
        dumped = _chromium(url, tmp_path / f"profile-{name}", "--dump-dom")
        assert dumped.returncode == 0, dumped.stderr[-2000:]
        text = _visible_text(dumped.stdout)
        (out / f"mlflow-ui-{name}.html").write_text(dumped.stdout)
        assert "MLflow" in text and EXPERIMENT in text, text[:2000]
        missing = [run for run in expected[name] if run not in text]
        assert not missing, f"{url}: {missing} not rendered; page text: {text[:3000]}"

        shot = out / f"mlflow-ui-{name}.png"
        shot.unlink(missing_ok=True)
        taken = _chromium(
            url, tmp_path / f"profile-{name}-shot", f"--screenshot={shot}", "--window-size=1400,900"
        )
        assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
        print(f"\n[mlflow-ui] {name}: {shot}")
