"""Every bench script still runs: ``--quick`` in a subprocess exits 0 and prints its ratio lines
with finite numbers (the figures themselves are not checked: no timing thresholds)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
NUM = r"([-+0-9.naif]+)"  # a printed float, nan and inf included (then rejected as not finite)

# script -> the lines its full run prints with the figures, each with the numbers to check
RATIO_LINES = {
    "plan_object_vs_patch.py": [rf"patch / slot planning time: {NUM}x"],
    "plan_batched_vs_loop.py": [
        rf"speed-up \(loop / batched\): wall {NUM}x, process CPU time {NUM}x"
    ],
    "extract_scaling.py": [rf"ray x2 / ray x1: x{NUM}", r"outputs equal: True"],
    "train_overhead.py": [
        rf"Ray Train, in-loop +{NUM} steps/s +ratio {NUM}",
        rf"Ray Train, fit\(\) +{NUM} steps/s .* ratio {NUM}",
        r"same final loss: True",
    ],
    "cem_diagnosis.py": [
        rf"best random / true median {NUM}",
        rf"base 128/16/10 +plan <= true {NUM} \| plan/true {NUM} \| best sampled/true {NUM}",
    ],
    "model_ranking.py": [
        rf"all candidates: spearman {NUM}, pick passes {NUM}",
        rf"the same cost on the true end states: spearman {NUM}, pick passes {NUM}",
    ],
    "train_step.py": [
        rf"train step, loop / foreach Adam: {NUM}x",
        r"foreach weights equal the loop's: True",
    ],
    "smoke_wall.py": [rf"^total +{NUM}$", rf"^trial wall +{NUM} ", r"^dominant stage: "],
}
# Ray start-up (ray.init, Train/Data actors, or the whole tiny sweep) makes these tens of
# seconds to minutes on 2 cores: `make test-slow` runs them.
SLOW = {"extract_scaling.py", "train_overhead.py", "smoke_wall.py"}


def test_every_bench_script_is_covered():
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts - {"gpu_suite.py"} == set(RATIO_LINES)


@pytest.mark.parametrize(
    "script",
    [pytest.param(s, marks=[pytest.mark.slow] if s in SLOW else []) for s in RATIO_LINES],
)
def test_quick_run_prints_finite_ratios(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        cwd=BENCH.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    if out.startswith("SKIP:"):
        pytest.skip(out.strip())
    for pattern in RATIO_LINES[script]:
        match = re.search(pattern, out, re.MULTILINE)
        assert match, f"{script} --quick printed no line matching {pattern!r}:\n{out[-3000:]}"
        for value in match.groups():
            assert math.isfinite(float(value)), f"{script}: {match.group(0)!r}"
