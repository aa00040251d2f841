"""The encoder-quality study's arithmetic and outputs on rows with known differences."""

from __future__ import annotations

import math

import pytest

from cjepa.distributed.encoder_study import STUDY_METRICS, point, study_figure, study_table


def rows(gain: float, noise: tuple[float, float, float]) -> list[dict]:
    """Three seeds of OC-JEPA (budget 0) and C-JEPA (budget 4); C-JEPA = OC-JEPA + gain + noise."""
    out = []
    for seed, eps in enumerate(noise):
        base = {m: 0.5 + 0.1 * seed for m in STUDY_METRICS}
        out.append({"train.seed": seed, "masking.budget": 0, "complete": True, **base})
        out.append({"train.seed": seed, "masking.budget": 4, "complete": True,
                    **{m: v + gain + eps for m, v in base.items()}})  # fmt: skip
    out.append({"train.seed": 9, "masking.budget": 4, "complete": False, "causal/auroc": 99.0})
    return out


def test_point_pairs_by_seed_and_ignores_incomplete_trials():
    p = point("enc-a", {"encoder/fg_ari": 0.4}, rows(0.1, (0.0, 0.01, -0.01)), budget=4)
    d = p["metrics"]["causal/auroc"]["difference"]
    assert d["mean"] == pytest.approx(0.1) and d["n"] == 3 and d["significant"]
    assert d["low"] < 0.1 < d["high"]
    assert p["metrics"]["causal/auroc"]["cjepa"]["n"] == 3  # the incomplete trial is left out
    flat = point("enc-b", {"encoder/fg_ari": 0.1}, rows(0.0, (0.02, -0.02, 0.0)), budget=4)
    assert not flat["metrics"]["causal/auroc"]["difference"]["significant"]
    missing = point("enc-c", {}, [r for r in rows(0.1, (0, 0, 0)) if r["masking.budget"]], 4)
    assert missing["metrics"]["causal/auroc"]["difference"]["n"] == 0


def test_table_orders_by_fg_ari_with_the_oracle_last_and_the_figure_is_written(tmp_path):
    quality = {"encoder/align_mean_iou": 0.7, "encoder/align_complete": 0.5}
    points = [
        point("oracle", {}, rows(0.2, (0.0, 0.01, -0.01)), 4),
        point("late", {**quality, "encoder/fg_ari": 0.8}, rows(0.1, (0.0, 0.01, -0.01)), 4),
        point("early", {**quality, "encoder/fg_ari": 0.1}, rows(0.0, (0.0, 0.01, -0.01)), 4),
    ]
    table = study_table(points, 4).splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| early", "| late", "| oracle"]
    assert "+0.1000 [" in table[3] and table[3].count("*") == len(STUDY_METRICS)
    assert "| 0.800 | 0.700 / 50.0% |" in table[3]
    png = study_figure(points, tmp_path / "q.png", 4)
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    assert not math.isnan(points[0]["metrics"]["cf/collide/acc"]["difference"]["mean"])
