"""analysis/plan_table.py: per-seed success, mean ± std and paired differences vs the floor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.planning import per_seed, table

REPO = Path(__file__).resolve().parents[2]


def result(planner: str, successes: dict[int, list[int]], ids: dict | None = None) -> dict:
    episodes = [
        {"seed": s, "success_public_any_step": v, "success_block_final": 1 - v}
        for s, vals in successes.items()
        for v in vals
    ]
    ids = ids or {str(s): [[f"ep{i}", 3] for i in range(len(v))] for s, v in successes.items()}
    return {
        "planner": planner,
        "episodes": episodes,
        "plan_wall_s_per_episode": 1.5,
        "protocol": {
            "preset": "official",
            "overrides": {},
            "headline": "public/any_step",
            "episode_ids": ids,
            "planner": {"planner": planner},
        },
    }


def test_per_seed_rates_and_paired_difference():
    floor = result("random", {0: [0, 0, 1, 0], 1: [0, 0, 0, 0], 2: [1, 0, 0, 0]})
    model = result("world_model", {0: [1, 1, 1, 0], 1: [1, 1, 0, 0], 2: [1, 1, 1, 1]})
    assert per_seed(model, "public/any_step") == {0: 0.75, 1: 0.5, 2: 1.0}
    assert per_seed(model, "block/final") == {0: 0.25, 1: 0.5, 2: 0.0}
    text = table([("random", floor), ("C-JEPA", model)], "public/any_step")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    # floor 0.25 / 0 / 0.25; differences 0.5, 0.5, 0.75: mean 0.58, t(0.975, 2) = 4.30,
    # sd 0.1443 -> half width 0.3586 -> [+0.2247, +0.9419], significant
    assert "0.75 | 0.50 | 1.00 | 0.75 ± 0.25 (n=3)" in rows["C-JEPA"]
    assert "+0.58 [+0.22, +0.94] *" in rows["C-JEPA"]
    assert "| random | 0.25 | 0.00 | 0.25 |" in text


def test_other_episodes_or_unknown_success_are_refused():
    a = result("random", {0: [0, 1]})
    b = result("oracle", {0: [1, 1]}, ids={"0": [["other", 3], ["ep1", 3]]})
    with pytest.raises(ValueError, match="planned other episodes"):
        table([("random", a), ("oracle", b)], "public/any_step")
    with pytest.raises(ValueError, match="success_public_sometimes"):
        table([("random", a)], "public/sometimes")


def test_cli_one_line_error_and_markdown_out(tmp_path):
    floor, model = tmp_path / "r.json", tmp_path / "m.json"
    floor.write_text(json.dumps(result("random", {0: [0, 1], 1: [0, 0]})))
    model.write_text(json.dumps(result("world_model", {0: [1, 1], 1: [1, 0]})))
    out = tmp_path / "t.md"
    cmd = [
        sys.executable,
        "-m",
        "analysis.plan_table",
        str(floor),
        f"C-JEPA={model}",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "| C-JEPA | 1.00 | 0.50 |" in out.read_text()
    bad = subprocess.run([*cmd[:3], str(tmp_path / "missing.json")], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")
    assert "missing.json" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
