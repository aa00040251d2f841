"""Directions and references from the parent's metrics.json, the paired comparison with OC-JEPA,
reference lines in the plots, and sweeps that predate metrics.json."""

from __future__ import annotations

import math
import statistics

import matplotlib.pyplot as plt
import pytest
from mlflow.tracking import MlflowClient

from analysis import figures
from analysis.formats import to_html, to_latex, to_markdown
from analysis.page import render
from analysis.runs import GroupKey, Reference, Sweep, metric_direction
from analysis.store import load_sweep
from analysis.table import VERSUS_CAPTION, Cell, Row, Table, build_table

#: Student-t quantiles t(0.975, df), from a printed table (not from scipy, which stats uses).
T975 = {1: 12.706204736174705, 2: 4.302652729911275}


def _row(table, unit, budget=None):
    return next(r for r in table.rows if r.key.unit == unit and budget in (None, r.key.budget))


def _versus(table, unit, budget=1):
    return next(v for v in table.versus if (v.row.key.unit, v.row.key.budget) == (unit, budget))


def _refs(table, metric):
    return [(r.kind, r.label, r.value, r.origin) for r in table.references[metric]]


def test_reference_rows_come_from_metrics_json_controls_and_agreeing_trials(synthetic_sweep):
    table = build_table(load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment))
    assert _refs(table, "final/future_visible") == [
        ("floor", "copy-last", 0.40, "metrics.json"),
        ("ceiling", "true slots", 0.0, "metrics.json"),
    ]
    # NaN in metrics.json: the trials' final/linear_visible agree (0.95); final/noisy_ref
    # differs by seed, so that reference is left out rather than averaged.
    assert _refs(table, "final/history") == [("floor", "constant velocity", 0.95, "trials")]
    assert _refs(table, "vqa/d/per_question") == [
        ("floor", "majority answer", 0.3333, "metrics.json"),
        ("ceiling", "reader on true slots", 0.9, "controls"),
    ]
    md = to_markdown(table)
    assert "| *floor: copy-last* |  | 0.4000 |  |" in md
    assert "| *floor: constant velocity* |  |  | 0.9500 |" in md
    assert "| *ceiling: true slots* |  | 0.0000 |  |" in md
    assert "| *floor: majority answer* |  | 0.3333 |" in md
    assert "| *ceiling: reader on true slots* |  | 0.9000 |" in md
    assert "noisy" not in md
    # Reference rows sit under their family's model rows, floors before ceilings.
    final = md.split("**vqa**")[0].splitlines()
    order = [i for i, line in enumerate(final) if line.startswith("| ")]
    labels = [final[i].split(" | ")[0] for i in order]
    assert labels.index("| token") < labels.index("| *floor: copy-last*")
    assert labels.index("| *floor: constant velocity*") < labels.index("| *ceiling: true slots*")
    tex = to_latex(table)
    assert r"\multicolumn{2}{l}{\textit{floor: copy-last}} & 0.400 &  \\" in tex
    assert r"\multicolumn{2}{l}{\textit{ceiling: reader on true slots}} & 0.900 \\" in tex
    page = to_html(table)
    assert '<tr class="ref"><td colspan="2"><em>floor: copy-last</em></td><td>0.4000</td>' in page
    assert "direction guessed" not in md  # every direction is recorded or known


def test_directions_come_from_metrics_json_not_the_name(synthetic_sweep):
    metric = "causal/precision_drop"
    assert metric_direction(metric) == "max"  # what the name guess would say
    mlf = MlflowClient(tracking_uri=synthetic_sweep.uri)
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    values = {"none": 0.1, "object": 0.3, "token": 0.2}
    for trial in sweep.trials:
        if trial.finished:
            mlf.log_metric(trial.run_id, metric, values[trial.unit])
    sweep = load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment)
    table = build_table(sweep, [metric, "vqa/d/per_question"])
    assert table.directions == {metric: "min", "vqa/d/per_question": "max"}
    assert table.direction_from[metric] == "metrics.json"
    assert _row(table, "none").cells[metric].best  # lowest, as recorded
    assert not _row(table, "object").cells[metric].best
    md = to_markdown(table)
    assert f"{metric} ↓ |" in md and "guessed" not in md
    # --direction still wins over metrics.json.
    table = build_table(sweep, [metric], directions={metric: "max"})
    assert table.directions[metric] == "max" and table.direction_from[metric] == "--direction"
    assert _row(table, "object").cells[metric].best


@pytest.mark.parametrize(
    ("recorded", "metric", "want"),
    [
        ({"causal/precision_drop": {"direction": "min"}}, "causal/precision_drop", "min"),
        ({"vqa/x/per_question": {"direction": None}}, "vqa/x/per_question", "max"),
        ({"causal/precision_drop": {"direction": None}}, "causal/precision_drop", "max"),
        (None, "final/future_visible", "min"),
        (None, "cf/effect", "min"),
    ],
)
def test_direction_precedence(recorded, metric, want):
    doc = None if recorded is None else {"metrics": recorded}
    sweep = Sweep("sqlite:///x", "e", "0", None, [], doc)  # direction() reads no run
    origin = {
        "causal/precision_drop": "metrics.json" if want == "min" else "guessed",
        "vqa/x/per_question": "cjepa.metrics",
        "final/future_visible": "cjepa.metrics",
        "cf/effect": "cjepa.metrics",
    }[metric]
    assert sweep.direction(metric) == (want, origin)


def test_paired_difference_from_oc_jepa_matches_a_hand_computation(synthetic_sweep, tmp_path):
    # One more group with a single seed: paired on one seed, so no interval.
    mlf = MlflowClient(tracking_uri=synthetic_sweep.uri)
    exp_id = mlf.get_experiment_by_name(synthetic_sweep.experiment).experiment_id
    tags = {"mlflow.parentRunId": synthetic_sweep.parent_id, "cjepa.role": "trial"}
    run = mlf.create_run(exp_id, tags={**tags, "cjepa.seed": "0"}, run_name="object3")
    for key, value in {"masking.unit": "object", "masking.budget": "3", "train.seed": "0"}.items():
        mlf.log_param(run.info.run_id, key, value)
    mlf.log_param(run.info.run_id, "predictor.aux_encoding", "entity")
    mlf.log_metric(run.info.run_id, "vqa/d/per_question", 0.9)
    mlf.set_terminated(run.info.run_id, "FINISHED")
    table = build_table(load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment))
    assert [(v.row.key.unit, v.row.key.budget) for v in table.versus] == [
        ("object", 1),
        ("object", 3),
        ("token", 1),
    ]

    # object |M|=1 - OC-JEPA on VQA, seeds 0, 1, 2: 0.8-0.5, 0.8-0.6, 0.8-0.7.
    d = [0.3, 0.2, 0.1]
    half = T975[2] * statistics.stdev(d) / math.sqrt(3)
    got = _versus(table, "object").diffs["vqa/d/per_question"]
    assert got.n == 3 and got.mean == pytest.approx(0.2)
    assert (got.low, got.high) == pytest.approx((0.2 - half, 0.2 + half))
    assert half == pytest.approx(0.2484, abs=1e-4) and not got.significant

    # token |M|=1 - OC-JEPA on history: only seeds 0 and 1 finished for token.
    d = [0.1 - 0.9, 0.3 - 0.9]
    half = T975[1] * statistics.stdev(d) / math.sqrt(2)
    got = _versus(table, "token").diffs["final/history"]
    assert got.n == 2 and got.mean == pytest.approx(-0.7)
    assert (got.low, got.high) == pytest.approx((-0.7 - half, -0.7 + half))
    assert not got.significant

    # object |M|=1 - OC-JEPA on future MSE: -0.1 on every seed: the interval is a point, which
    # is not evidence (cjepa.stats), so it is not called significant.
    got = _versus(table, "object").diffs["final/future_visible"]
    assert got.mean == pytest.approx(-0.1) and got.degenerate and not got.significant
    single = _versus(table, "object", 3).diffs["vqa/d/per_question"]
    assert (single.n, single.mean) == (1, pytest.approx(0.9 - 0.5))

    md = to_markdown(table)
    assert VERSUS_CAPTION in md
    assert "paired by seed" in VERSUS_CAPTION and "Student-t" in VERSUS_CAPTION
    assert "n = seeds finished in both" in VERSUS_CAPTION
    assert "| final/future_visible − OC-JEPA | final/history − OC-JEPA |" in md
    lo, hi = 0.2 - T975[2] * 0.1 / math.sqrt(3), 0.2 + T975[2] * 0.1 / math.sqrt(3)
    assert f"| object | 1 | +0.2000 [{lo:+.4f}, {hi:+.4f}] (n=3) |" in md
    assert "| object | 3 | +0.4000 (n=1, no CI) |" in md
    assert "-0.1000 (n=3, equal on every seed: no CI)" in md  # a point interval: no star
    assert "OC-JEPA | 0 | -" not in md  # OC-JEPA is not compared with itself
    tex = to_latex(table)
    assert (
        "% vs OC-JEPA: row - OC-JEPA, the mean per-seed difference [95% CI, paired by seed" in tex
    )
    assert r"$-0.100$ {\scriptsize (n=3, equal on every seed: no CI)}" in tex
    page = render(load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment), table, [])
    # the one starred cell before (-0.1 on every seed) is a point interval: no sig class
    assert 'class="sig"' not in page and "equal on every seed: no CI" in page
    assert "paired by seed" in page and '<tr class="ref">' in page


def test_budget_plots_draw_labelled_reference_lines(synthetic_sweep):
    table = build_table(load_sweep(synthetic_sweep.uri, synthetic_sweep.experiment))
    fig = figures.budget_figure(table, "final/future_visible")
    ax = fig.axes[0]
    refs = {
        ln.get_label(): ln for ln in ax.get_lines() if ln.get_label().startswith(("floor", "ceil"))
    }
    assert set(refs) == {"floor: copy-last (0.4)", "ceiling: true slots (0)"}
    assert refs["floor: copy-last (0.4)"].get_linestyle() == "--"
    assert refs["ceiling: true slots (0)"].get_linestyle() == ":"
    assert list(refs["floor: copy-last (0.4)"].get_ydata()) == [0.4, 0.4]
    low, high = ax.get_ylim()
    assert low < 0.0 and high > 0.40
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "floor: copy-last (0.4)" in legend and "ceiling: true slots (0)" in legend
    plt.close(fig)


def test_budget_plot_spans_far_apart_references():
    """The case that motivated it: models within 0.0968-0.0977, floor 0.096, ceiling 0.009."""
    metric = "final/future_present"
    rows = [
        Row(GroupKey(0, "none", 0, "entity", ""), {metric: Cell([0.0977, 0.0975], [], 2)}),
        Row(GroupKey(1, "object", 2, "entity", ""), {metric: Cell([0.0968, 0.0970], [], 2)}),
    ]
    refs = [
        Reference("copy-last", "floor", "final/copy_last_present", 0.096, "metrics.json"),
        Reference("true slots", "ceiling", 0.0, 0.009, "metrics.json"),
    ]
    table = Table(rows, [metric], {metric: "min"}, False, False, (), [], ["0", "1"])
    table.references = {metric: refs}
    fig = figures.budget_figure(table, metric)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low < 0.009 and high > 0.0977
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines()}
    assert styles["floor: copy-last (0.096)"] == "--"
    assert styles["ceiling: true slots (0.009)"] == ":"
    plt.close(fig)


def test_old_sweep_without_metrics_json_still_works(synthetic_sweep, tmp_path):
    sweep = load_sweep(
        synthetic_sweep.uri, synthetic_sweep.experiment, synthetic_sweep.old_sweep_id
    )
    assert sweep.metrics_json is None and sweep.controls() == {}
    table = build_table(sweep)
    assert table.metrics == ["final/future_visible", "final/copy_last", "causal/precision_drop"]
    assert table.direction_from == {
        "final/future_visible": "cjepa.metrics",
        "final/copy_last": "cjepa.metrics",
        "causal/precision_drop": "guessed",
    }
    # References from cjepa.metrics; the value from the trials' own final/copy_last.
    assert _refs(table, "final/future_visible") == [("floor", "copy-last", 8.5, "trials")]
    assert table.versus == []  # no OC-JEPA group
    md = to_markdown(table)
    assert "| *floor: copy-last* |  | 8.5000 |  |" in md
    assert "causal/precision_drop ↑? |" in md
    assert "? direction guessed from the name" in md and "causal/precision_drop;" in md
    assert "vs OC-JEPA" not in md
    assert r"causal/precision\_drop $\uparrow$?" in to_latex(table)
    written = figures.write_plots(sweep, table, tmp_path / "plots", quiet=True)
    assert "budget_final_future_visible.png" in {p.name for p in written}
