"""The reference table a sweep prints: per model, mean ± std over seeds, the paired difference
from OC-JEPA with its 95% interval, and the metric's floors and ceilings as reference rows.

Plain Python (no torch, no MLflow): rows are the sweep's trial rows (``masking.unit``,
``masking.budget``, ``train.seed`` and metric values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cjepa import metrics as registry
from cjepa.stats import paired_difference, summarise

BASELINE = ("none", 0)


def _groups(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[tuple[str, int], dict]:
    """(unit, budget) -> {seed: value} for finished rows that hold ``metric``."""
    out: dict[tuple[str, int], dict] = {}
    for row in rows:
        if row.get("error") or metric not in row:
            continue
        key = (str(row.get("masking.unit", "none")), int(row.get("masking.budget", 0)))
        out.setdefault(key, {})[row.get("train.seed", 0)] = float(row[metric])
    return out


def label(unit: str, budget: int) -> str:
    return "OC-JEPA (\\|M\\|=0)" if (unit, budget) == BASELINE else f"{unit} \\|M\\|={budget}"


def _fmt(v: float, digits: int) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def reference_values(
    rows: Sequence[Mapping[str, Any]], controls: Mapping[str, float]
) -> dict[str, float]:
    """Values the references resolve against: the controls, and each trial metric's mean over
    finished trials (references such as ``final/copy_last_present`` are the same in every trial:
    same val windows, same cells)."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        if row.get("error"):
            continue
        for k, v in row.items():
            if "/" in k and isinstance(v, int | float) and math.isfinite(v):
                sums.setdefault(k, []).append(float(v))
    values = {k: sum(v) / len(v) for k, v in sums.items()}
    # Model-free references a stage logs beside its metrics (e.g. vqa/majority/...) also come
    # from the controls, for stages that ran only as controls.
    for prefix in ("control/copy_last/", "control/true_slots/"):
        for k, v in controls.items():
            if k.startswith(prefix):
                values.setdefault(k.removeprefix(prefix), v)
    values.update(controls)
    return values


def control_table(metric_names: Sequence[str], values: Mapping[str, float], digits: int = 4) -> str:
    """Markdown: for metrics no trial holds, their references alone (stages run only as
    controls), one column per reference."""
    rows = []
    for metric in metric_names:
        info = registry.METRICS.get(metric)
        if not info:
            continue
        cells = [(f"{r.kind}: {r.label}", registry.resolve(r, values)) for r in info.references]
        measured = [
            registry.resolve(r, values) for r in info.references if isinstance(r.source, str)
        ]
        if any(math.isfinite(v) for v in measured):
            rows.append((metric, cells))
    if not rows:
        return ""
    lines = ["| controls only (no trial ran this stage) | references |", "|---|---|"]
    for metric, cells in rows:
        refs = "; ".join(f"{name} {_fmt(v, digits)}" for name, v in cells if math.isfinite(v))
        lines.append(f"| {metric} | {refs} |")
    return "\n".join(lines)


def metric_table(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    values: Mapping[str, float],
    digits: int = 4,
) -> str:
    """Markdown: one row per (unit, budget), then the metric's reference rows."""
    groups = _groups(rows, metric)
    if not groups:
        return ""
    direction = registry.direction(metric)
    better = {"min": "lower is better", "max": "higher is better"}.get(
        direction, "direction unknown"
    )
    base = groups.get(BASELINE, {})
    order = sorted(groups, key=lambda k: (k != BASELINE, k[0], k[1]))
    lines = [
        f"| {metric} ({better}) | mean ± std (n) | vs OC-JEPA, paired by seed [95% CI] |",
        "|---|---|---|",
    ]
    for key in order:
        seeds = groups[key]
        cell = summarise(list(seeds.values())).text(digits)
        diff = "-" if key == BASELINE or not base else paired_difference(seeds, base).text(digits)
        lines.append(f"| {label(*key)} | {cell} | {diff} |")
    info = registry.METRICS.get(metric)
    for ref in info.references if info else ():
        lines.append(
            f"| *{ref.kind}: {ref.label}* | {_fmt(registry.resolve(ref, values), digits)} | |"
        )
    return "\n".join(lines)


def learning_bar(rows: Sequence[Mapping[str, Any]], factor: float = 0.5) -> str:
    """One line: how many finished trials meet the learning bar on present objects
    (``final/future_present`` <= ``factor`` x copy-last and below constant velocity, on the same
    cells), with the range of future / copy-last; "" when no trial has these metrics."""
    keys = ("final/future_present", "final/copy_last_present", "final/linear_present")
    done = [r for r in rows if not r.get("error") and all(k in r for k in keys)]
    if not done:
        return ""
    ratios = [r[keys[0]] / r[keys[1]] for r in done]
    met = sum(
        ratio <= factor and r[keys[0]] < r[keys[2]] for r, ratio in zip(done, ratios, strict=True)
    )
    return (
        f"Learning bar (final/future_present <= {factor:g} x copy-last and < constant velocity): "
        f"{met}/{len(done)} trials meet it; future / copy-last {min(ratios):.3f}-{max(ratios):.3f}."
    )


def reference_tables(
    rows: Sequence[Mapping[str, Any]],
    metric_names: Sequence[str],
    controls: Mapping[str, float],
) -> str:
    """Every table of ``metric_names`` that the rows hold, with a legend."""
    values = reference_values(rows, controls)
    tables = [t for m in metric_names if (t := metric_table(rows, m, values))]
    in_trials = {k for row in rows for k in row}
    if extra := control_table([m for m in metric_names if m not in in_trials], values, digits=3):
        tables.append(extra)
    legend = (
        "CI: mean of the per-seed differences (model - OC-JEPA, same seed) ± t(0.975, n-1) sd/√n;"
        " * = the interval excludes 0 (never for a difference equal on every seed). Reference"
        " rows: *floor* = a trivial baseline, *ceiling* = true slots or the simulator, on the"
        " same cells."
    )
    return "\n\n".join([*tables, legend]) if tables else ""
