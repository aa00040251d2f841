"""PNG figures of a sweep (matplotlib, headless): metric vs budget (with the metric's floors and
ceilings as reference lines), planning success vs time, learning curves per trial. The CLI is
``python -m analysis.plots``; ``python -m analysis.ablation_table`` and ``analysis.report``
write them too."""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.tracking import MlflowClient

from analysis.runs import AnalysisError, Reference, Sweep, group_key
from analysis.table import Table

#: Curves drawn per trial when logged (the step-wise metrics of ``cjepa.train``).
CURVE_METRICS = ("train/loss", "val/future_visible", "val/history")
MAX_PANELS = 48
#: Reference line styles: floors dashed, ceilings dotted.
REFERENCE_STYLE = {"floor": "--", "ceiling": ":"}
#: Planning metrics of ``cjepa.planning.stage.planning_stage`` (``plan/success_rate``,
#: ``plan/plan_wall_s_per_episode``, ``plan/wall_s``), optionally ``plan/<model>/<name>``.
_PLAN = re.compile(
    r"^plan/(?:(?P<model>[^/]+)/)?(?:plan_)?(?P<name>success_rate|wall_s_per_episode|wall_s)$"
)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def metric_vs_budget(table: Table, metric: str, path: Path) -> Path | None:
    """:func:`budget_figure` saved to ``path``; None when no group has a finished value."""
    fig = budget_figure(table, metric)
    if fig is None:
        return None
    fig.savefig(path)
    plt.close(fig)
    return path


def budget_figure(table: Table, metric: str) -> Figure | None:
    """One line per masking unit (and aux/model when they vary): mean ± std over seeds against
    the budget |M|. OC-JEPA (|M| = 0) starts every line it shares aux/model with. The metric's
    floors (dashed) and ceilings (dotted) are labelled horizontal lines, and the y range spans
    them and the error bars, however far apart (a floor far from the models is the point)."""
    lines, oc = budget_points(table, metric)
    if not lines and not oc:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    span: list[float] = []
    for (unit, *rest), points in sorted(lines.items()):
        if tuple(rest) in oc:
            points = [(0, *oc[tuple(rest)]), *points]
        points.sort()
        label = " ".join([unit, *_varying(table, tuple(rest))])
        xs, ys, es = zip(*points, strict=True)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
        span += [y - e for _, y, e in points] + [y + e for _, y, e in points]
    for rest, (mean, std) in oc.items():
        label = " ".join(["OC-JEPA", *_varying(table, rest)])
        ax.errorbar([0], [mean], yerr=[std], fmt="k*", markersize=10, capsize=3, label=label)
        span += [mean - std, mean + std]
    span += _reference_lines(ax, table.references.get(metric, []))
    _finish_budget_axes(ax, metric, table.directions[metric], span)
    fig.tight_layout()
    return fig


def budget_points(table: Table, metric: str) -> tuple[dict, dict]:
    """``({(unit, aux, model, extra): [(budget, mean, std)]}, {(aux, model, extra): (mean,
    std)})``: the masked groups' points per line, and OC-JEPA's point per aux/model/extra."""
    lines: dict[tuple, list[tuple[int, float, float]]] = defaultdict(list)
    oc: dict[tuple, tuple[float, float]] = {}
    for row in table.rows:
        cell = row.cells[metric]
        if not cell.n:
            continue
        rest = (row.key.aux, row.key.model, row.key.extra)
        if row.key.is_oc_jepa:
            oc[rest] = (cell.mean, cell.std)
        else:
            lines[(row.key.unit, *rest)].append((row.key.budget, cell.mean, cell.std))
    return lines, oc


def _reference_lines(ax, refs: list[Reference]) -> list[float]:
    """A labelled horizontal line per floor/ceiling; returns their values (for the y range)."""
    for i, ref in enumerate(refs):
        ax.axhline(
            ref.value,
            linestyle=REFERENCE_STYLE.get(ref.kind, "-."),
            color=f"C{(i + 3) % 10}",  # C0-C2 are the units' lines
            linewidth=1.2,
            label=f"{ref.kind}: {ref.label} ({ref.value:.4g})",
        )
    return [ref.value for ref in refs]


def _finish_budget_axes(ax, metric: str, direction: str, span: list[float]) -> None:
    """The y range over ``span``, axis labels, title, and the legend: models, then references."""
    low, high = min(span), max(span)
    pad = 0.06 * (high - low) or 0.05 * abs(high) or 0.05
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("masking budget |M|")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    arrow = "lower" if direction == "min" else "higher"
    ax.set_ylabel(f"{metric} ({arrow} is better)")
    ax.set_title(f"{metric} vs budget (mean ± std over seeds)")
    handles, labels = ax.get_legend_handles_labels()
    refs = [i for i, label in enumerate(labels) if label.startswith(("floor: ", "ceiling: "))]
    order = [i for i in range(len(labels)) if i not in refs] + refs
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7)


def _varying(table: Table, rest: tuple) -> list[str]:
    aux, model, extra = rest
    out = [f"aux={aux}"] if table.show_aux else []
    out += [model] if table.show_model and model else []
    return out + [f"{k}={v}" for k, v in extra]


def planning_points(sweep: Sweep) -> dict[str, dict[str, list[float]]]:
    """``{model: {"success_rate": [...], "wall_s_per_episode": [...], "wall_s": [...]}}`` over
    finished trials, from ``plan/<name>`` (model = the trial's model label, else its row label,
    e.g. ``OC-JEPA`` or ``object |M|=2``) or ``plan/<model>/<name>``; ``plan_wall_s_per_episode``
    counts as ``wall_s_per_episode``. Non-finite values are dropped."""
    points: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for trial in sweep.trials:
        if not trial.finished:
            continue
        for metric, value in trial.metrics.items():
            match = _PLAN.match(metric)
            if match and math.isfinite(value):
                model = match["model"] or trial.model or group_key(trial).label()
                points[model][match["name"]].append(value)
    return {m: dict(v) for m, v in points.items()}


def planning_scatter(sweep: Sweep, path: Path) -> Path | None:
    """Push-T success rate against planning time per episode (or per run), one labelled point
    per model with seed error bars; None when the sweep logged no planning metrics."""
    points = planning_points(sweep)
    usable = {m: p for m, p in points.items() if "success_rate" in p and len(p) > 1}
    if not usable:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for model, p in sorted(usable.items()):
        time_key = "wall_s_per_episode" if "wall_s_per_episode" in p else "wall_s"
        x, y = p[time_key], p["success_rate"]
        sx = statistics.stdev(x) if len(x) > 1 else 0.0
        sy = statistics.stdev(y) if len(y) > 1 else 0.0
        mx, my = statistics.fmean(x), statistics.fmean(y)
        ax.errorbar([mx], [my], xerr=[sx], yerr=[sy], fmt="o", capsize=3)
        ax.annotate(model, (mx, my), textcoords="offset points", xytext=(5, 5), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("planning wall time per episode (s, log)")
    ax.set_ylabel("Push-T success rate")
    ax.set_title("Planning: success vs time")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curves(sweep: Sweep, path: Path, metrics: tuple[str, ...] = CURVE_METRICS) -> Path:
    """Small multiples, one panel per trial (first ``MAX_PANELS``), each curve in ``metrics``
    that the trial logged, read with ``MlflowClient.get_metric_history``."""
    client = MlflowClient(tracking_uri=sweep.uri)
    trials = [t for t in sweep.trials if any(m in t.metrics for m in metrics)][:MAX_PANELS]
    if not trials:
        raise AnalysisError(
            f"no trial of sweep {sweep.sweep_id!r} logged any of {list(metrics)}; "
            f"logged metrics: {sweep.metric_names()}"
        )
    cols = min(4, len(trials))
    rows = -(-len(trials) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.4 * rows), dpi=100, squeeze=False, sharex=True
    )
    for ax, trial in zip(axes.flat, trials, strict=False):
        for metric in metrics:
            history = sorted(client.get_metric_history(trial.run_id, metric), key=lambda m: m.step)
            if history:
                ax.plot([m.step for m in history], [m.value for m in history], label=metric)
        ax.set_yscale("log")
        status = "" if trial.finished else f" [{trial.status}]"
        ax.set_title(f"{group_key(trial).label()} seed {trial.seed}{status}", fontsize=8)
        ax.tick_params(which="both", labelsize=7)
    for ax in axes.flat[len(trials) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8)
    fig.supxlabel("step", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.4 * rows)))
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(sweep: Sweep, table: Table, out: Path, *, quiet: bool = False) -> list[Path]:
    """Every plot the sweep's metrics allow, as ``out/*.png``; says which ones it skipped."""
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda _msg: None) if quiet else (lambda msg: print(f"[plots] {msg}"))
    written = []
    for metric in table.metrics:
        if _PLAN.match(metric):
            continue  # planning metrics get their own scatter
        path = metric_vs_budget(table, metric, out / f"budget_{_safe(metric)}.png")
        if path is None:
            say(f"{metric}: no finished values, no budget plot")
        else:
            written.append(path)
    path = planning_scatter(sweep, out / "planning_success_vs_time.png")
    if path is None:
        say(
            f"no planning metrics (plan/success_rate with plan/wall_s*) in sweep "
            f"{sweep.sweep_id!r}; skipping the success-vs-time plot"
        )
    else:
        written.append(path)
    try:
        written.append(learning_curves(sweep, out / "learning_curves.png"))
    except AnalysisError as err:
        say(f"{err}; skipping learning curves")
    return written
