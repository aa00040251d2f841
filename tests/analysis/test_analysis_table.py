"""Aggregation, missing seeds and bold-best of the ablation table on a synthetic sweep."""

from __future__ import annotations

import math
import statistics

import pytest
from mlflow.tracking import MlflowClient

from analysis.formats import to_latex, to_markdown
from analysis.runs import AnalysisError, metric_direction
from analysis.store import load_sweep
from analysis.table import build_table


def _row(table, unit):
    return next(r for r in table.rows if r.key.unit == unit)


def test_latest_sweep_is_the_default(synthetic_sweep):
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    assert sweep.sweep_id == synthetic_sweep.sweep_id
    assert len(sweep.trials) == 9
    assert sweep.expected_seeds() == ["0", "1", "2"]


def test_means_stds_and_n_match_the_logged_values(synthetic_sweep):
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment, synthetic_sweep.sweep_id)
    table = build_table(sweep)
    assert table.metrics == ["final/future_visible", "final/history", "vqa/d/per_question"]
    assert [r.key.label() for r in table.rows] == ["OC-JEPA", "object |M|=1", "token |M|=1"]
    for row in table.rows:
        for metric, cell in row.cells.items():
            want = [
                v[metric] for (u, _, _), v in synthetic_sweep.final.items() if u == row.key.unit
            ]
            assert cell.n == len(want)
            assert math.isclose(cell.mean, statistics.fmean(want))
            assert math.isclose(cell.std, statistics.stdev(want))
    assert math.isclose(_row(table, "none").cells["final/future_visible"].std, 0.02)


def test_missing_seed_and_failed_trial_are_reported(synthetic_sweep):
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    table = build_table(sweep)
    token = _row(table, "token").cells["final/future_visible"]
    assert (token.n, token.expected, token.missing) == (2, 3, ["2"])
    assert _row(table, "object").cells["final/future_visible"].missing == []
    assert [t.run_id for t in table.problems] == [synthetic_sweep.failed_run_id]
    md = to_markdown(table)
    assert "n=2 of 3; missing seed 2" in md
    assert "FAILED" in md and synthetic_sweep.failed_run_id in md
    assert "n=2/3; no seed 2" in to_latex(table)


def test_best_per_column_is_bold_in_markdown_and_latex(synthetic_sweep):
    table = build_table(load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment))
    md = to_markdown(table)
    assert "**final**" in md and "**vqa**" in md  # one table per metric family
    md_rows: dict[str, str] = {}
    for line in md.splitlines():
        if line.startswith("| ") and " | " in line:
            key = line.split(" | ")[0].lstrip("| ")
            md_rows[key] = md_rows.get(key, "") + line
    # object wins future MSE (min) and VQA (max, 0.8 vs 0.65); token wins history MSE (min).
    assert "**0.2200 ± 0.0200**" in md_rows["object"]
    assert "**0.8000 ± 0.0000**" in md_rows["object"]
    assert "**0.2000 ± 0.1414**" in md_rows["token"]
    assert md_rows["OC-JEPA"].count("**") == 0
    assert sum(line.count("**") for line in md_rows.values()) == 2 * 3
    tex = to_latex(table)
    assert r"\textbf{0.220 $\pm$ 0.020}" in tex
    assert r"\textbf{0.800 $\pm$ 0.000}" in tex
    assert r"\textbf{0.200 $\pm$ 0.141}" in tex
    assert tex.count(r"\textbf") == 3
    assert r"final/future\_visible $\downarrow$" in tex and r"\uparrow" in tex


def test_direction_override_moves_the_bold(synthetic_sweep):
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    table = build_table(sweep, ["final/future_visible"], directions={"final/future_visible": "max"})
    assert _row(table, "none").cells["final/future_visible"].best
    assert not _row(table, "object").cells["final/future_visible"].best


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("final/future_visible", "min"),
        ("train/loss", "min"),
        ("plan/wall_s_per_episode", "min"),
        ("vqa/counterfactual/per_option", "max"),
        ("vqa/majority/predictive/per_question", "max"),
        ("plan/success_rate", "max"),
        ("causal/auroc", "max"),
    ],
)
def test_metric_direction(metric, direction):
    assert metric_direction(metric) == direction


def test_errors_name_what_is_missing(synthetic_sweep):
    with pytest.raises(AnalysisError, match=r"no experiment 'nope'.*analysis-test"):
        load_sweep(synthetic_sweep.uri, "nope")
    with pytest.raises(AnalysisError, match=r"no sweep 'x' in experiment 'analysis-test'.*tiny"):
        load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment, "x")
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    with pytest.raises(AnalysisError, match=r"\['plan/success_rate'\] not logged.*final/history"):
        build_table(sweep, ["plan/success_rate"])


def test_counts_are_not_default_columns_and_nan_counts_as_missing(synthetic_sweep):
    mlf = MlflowClient(tracking_uri=synthetic_sweep.uri)
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    oc_seed0 = next(t for t in sweep.trials if t.unit == "none" and t.seed == "0")
    mlf.log_metric(oc_seed0.run_id, "causal/auroc", float("nan"))
    mlf.log_metric(oc_seed0.run_id, "vqa/n_questions", 12.0)
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    assert "vqa/n_questions" not in sweep.default_metrics()
    assert "causal/auroc" in sweep.default_metrics()
    cell = _row(build_table(sweep), "none").cells["causal/auroc"]
    assert (cell.n, cell.missing) == (0, ["0", "1", "2"]) and not cell.best
