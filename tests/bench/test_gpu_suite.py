"""bench/gpu_suite.py --quick: runs without Ray/MLflow/Optuna or the simulator and writes every
section's JSON with finite positive figures and every ratio (no timing thresholds)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_suite.py"
#: what the GPU machine lacks; the suite must run with every one of them unimportable
BLOCKED = (
    "ray",
    "mlflow",
    "optuna",
    "pymunk",
    "gym",
    "gymnasium",
    "gym_pusht",
    "pygame",
    "shapely",
)
SECTIONS = ("extraction", "training", "planning", "planning_options")

# sys.modules[name] = None makes `import name` raise ImportError; afterwards check no module of
# a blocked package was imported anyway (by a path that bypassed the block).
WRAPPER = """
import runpy, sys
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None
sys.argv = [{script!r}] + {args!r}
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as exit_:
    if exit_.code not in (0, None):
        raise
leaked = [m for m in sys.modules if m.split(".")[0] in blocked and sys.modules[m] is not None]
assert not leaked, leaked
print("BLOCKED-OK")
"""


def run_suite(out: Path, *args: str) -> subprocess.CompletedProcess:
    code = WRAPPER.format(blocked=BLOCKED, script=str(SCRIPT), args=["--out", str(out), *args])
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    proc = run_suite(out, "--quick")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out, proc


def load(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_runs_with_ray_mlflow_optuna_and_the_simulator_blocked(quick):
    _, proc = quick
    assert "BLOCKED-OK" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_has_finite_positive_figures(quick, section):
    out, _ = quick
    body = load(out, section)
    measured = body["measurements"]
    assert measured, section
    for key, m in measured.items():
        assert "skipped" not in m, (key, m)
        assert m["dtype"] in ("fp32", "bf16")
        assert len(m["repeats_s"]) >= 1
        for value in [m["median_s"], *m["repeats_s"]]:
            assert math.isfinite(value) and value > 0, (key, value)
    dtypes = {m["dtype"] for m in measured.values()}
    assert dtypes == {"fp32", "bf16"}, section


def test_planning_covers_both_arms_batched_and_loop(quick):
    out, _ = quick
    body = load(out, "planning")
    assert set(body["measurements"]) == {
        f"{arm}_{dt}" for arm in ("slots_batched", "slots_loop", "patches_batched")
        for dt in ("fp32", "bf16")
    }  # fmt: skip
    assert "without the simulator" in body["note"] or "no simulator" in body["note"]
    assert body["protocol"]["plans_per_episode"] >= 1
    for v in (x for k, x in body["derived"].items() if k != "how"):
        assert math.isfinite(v) and v > 0
    opts = load(out, "planning_options")["measurements"]
    assert opts["compiled_fp32"]["compile_active"] is False  # CPU: the eager fallback
    assert any("compile=True ignored" in w for w in opts["compiled_fp32"]["warnings"])


def test_frames_and_steps_per_second_are_positive(quick):
    out, _ = quick
    for m in load(out, "extraction")["measurements"].values():
        assert math.isfinite(m["frames_per_s"]) and m["frames_per_s"] > 0
    assert {k.rsplit("_", 1)[0] for k in load(out, "extraction")["measurements"]} == {
        "cnn_slots",
        "dinov2_vits14",
    }
    train = load(out, "training")["measurements"]
    assert {k.rsplit("_", 1)[0] for k in train} == {"pusht", "clevrer"}
    for m in train.values():
        assert m["batch"] >= 1 and m["steps_per_s"] > 0


def test_summary_has_metadata_and_every_ratio(quick):
    out, proc = quick
    summary = load(out, "summary")
    for key in ("device", "device_name", "torch", "commit", "date_utc"):
        assert summary[key], key
    assert len(summary["commit"]) == 40 or summary["commit"] == "unknown"
    assert sorted(summary["sections"]) == sorted(SECTIONS) and summary["skipped"] == []
    ratios = summary["ratios"]
    for dt in ("fp32", "bf16"):
        for key in ("planning_patch_over_slot_per_iteration", "planning_loop_over_batched"):
            assert f"{key}_{dt}" in ratios
    assert "options_eager_fp32_over_compiled_fp32" in ratios
    assert "options_eager_fp32_over_eager_bf16" in ratios
    for key, value in ratios.items():
        assert value is not None and math.isfinite(value) and value > 0, key
        assert f"{key}: " in proc.stdout  # the ratio lines are printed too
    assert all(row["valid"] is False for row in summary["targets"].values())


def test_a_spent_budget_skips_with_notes_and_still_writes_json(tmp_path):
    proc = run_suite(tmp_path, "--quick", "--budget-s", "0", "--sections", "training,planning")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = load(tmp_path, "summary")
    assert summary["skipped"] and all(s.split("/")[0] in ("training", "planning")
                                      for s in summary["skipped"])  # fmt: skip
    for m in load(tmp_path, "training")["measurements"].values():
        assert m["skipped"].startswith("budget")
    assert summary["ratios"]["planning_loop_over_batched_fp32"] is None


def test_the_watchdog_writes_the_json_and_exits_cleanly_mid_measurement(tmp_path):
    proc = run_suite(tmp_path, "--quick", "--hard-stop-s", "0")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "hard stop during" in proc.stdout
    summary = load(tmp_path, "summary")
    assert any("hard stop" in s for s in summary["skipped"])
