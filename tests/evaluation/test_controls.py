"""Controls: every stage run once with the copy-last predictor and the true slots, and a broken
(all-zeros) model scoring worse than every floor on the same cells."""

from __future__ import annotations

import math

import pytest

from cjepa import metrics as registry
from cjepa.evaluation.controls import run_controls
from cjepa.evaluation.stage import StageContext, run_stages
from cjepa.tables import reference_tables, reference_values

STAGES = {
    "final_validation": {},
    "vqa": {"steps": 20, "width": 32, "depth": 1},
    "counterfactual": {"max_episodes": 3},
    "causal": {"max_episodes": 3},
}


@pytest.fixture(scope="module")
def controls(tmp_path_factory, collide_setup):
    root = tmp_path_factory.mktemp("controls")
    cfg, episodes = collide_setup(root, episodes=12, shard_size=6)
    ctx = StageContext(out_dir=root / "out", encoder="oracle:collide", episode_dir=episodes)
    return cfg, ctx, run_controls(cfg, STAGES, ctx)


def test_controls_cover_every_stage(controls):
    _, ctx, out = controls
    for key in (
        "control/copy_last/final/future_present",
        "control/copy_last/cf/slot_error_after_contact",
        "control/ignore/cf/slot_error_after_contact",
        "control/true_slots/vqa/counterfactual/per_question",
        "control/copy_last/vqa/all/per_question",
    ):
        assert key in out and math.isfinite(out[key]), key
    # copy-last scored by the dynamics metrics is exactly the copy-last baseline
    assert out["control/copy_last/final/future_present"] == pytest.approx(
        out["control/copy_last/final/copy_last_present"]
    )
    assert out["control/copy_last/causal/auroc"] == pytest.approx(0.5)  # uniform attention
    assert (ctx.out_dir / "true_slots" / "vqa" / "vqa_answers.json").is_file()


def test_zeros_model_scores_worse_than_every_floor(controls):
    cfg, ctx, out = controls
    zeros = run_stages(
        cfg,
        {"baseline": "zeros", "history": []},
        {"final_validation": {}, "counterfactual": {"max_episodes": 3}},
        ctx,
    )
    values = reference_values([zeros], out)
    for metric in ("final/future_present", "final/future_all", "cf/slot_error_after_contact"):
        floors = [r for r in registry.METRICS[metric].references if r.kind == "floor"]
        assert floors
        for ref in floors:
            floor = registry.resolve(ref, values)
            assert math.isfinite(floor) and zeros[metric] > floor, (metric, ref.label)


def test_reference_rows_in_the_printed_table(controls):
    _, _, out = controls
    rows = [
        {"masking.unit": "none", "masking.budget": 0, "train.seed": s,
         "final/future_present": 0.01 + 0.001 * s, "final/copy_last_present": 0.02}
        for s in range(3)
    ] + [
        {"masking.unit": "object", "masking.budget": 4, "train.seed": s,
         "final/future_present": 0.008 + 0.001 * s + 0.0001 * s * s,
         "final/copy_last_present": 0.02}
        for s in range(3)
    ]  # fmt: skip
    text = reference_tables(rows, ["final/future_present"], out)
    assert "lower is better" in text
    assert "| *floor: copy-last* | 0.0200 |" in text
    assert "| *ceiling: true slots* | 0.0000 |" in text
    d = [-0.002, -0.0019, -0.0016]  # object - OC-JEPA per seed
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2)
    assert f"| {mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}] * |" in text
