"""A sweep's trials grouped into table rows, each metric aggregated over seeds, with its
direction, references and the paired difference from OC-JEPA (the library behind
``python -m analysis.ablation_table`` and ``python -m analysis.report``)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from analysis.runs import AnalysisError, GroupKey, Reference, Sweep, Trial, group_key
from cjepa.stats import Difference, paired_difference

#: Caption of every "vs OC-JEPA" table.
VERSUS_CAPTION = (
    "vs OC-JEPA: row − OC-JEPA, the mean per-seed difference [95% CI, paired by seed, Student-t: "
    "mean ± t(0.975, n−1)·sd/√n]; n = seeds finished in both the row and OC-JEPA; * = the CI "
    "excludes 0; n=1, or the same difference on every seed: no CI."
)
GUESSED = "?"
REFERENCES_NOTE = (
    "Reference rows: *floor* = a trivial baseline any model must beat (copy-last, constant "
    "velocity, majority answer, ...), *ceiling* = true slots or the simulator, on the same cells."
)


@dataclass
class Cell:
    """One metric of one group: the values of its finished trials, and the seeds it lacks."""

    values: list[float]
    missing: list[str]
    expected: int
    best: bool = False
    seeds: list[str] = field(default_factory=list)  # the seed of each value

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def by_seed(self) -> dict[str, float]:
        return dict(zip(self.seeds, self.values, strict=True))

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.values) if self.n > 1 else 0.0


@dataclass
class Row:
    key: GroupKey
    cells: dict[str, Cell]
    trials: list[Trial] = field(default_factory=list)


@dataclass
class Versus:
    """A group's paired difference from the OC-JEPA group of the same aux/model/extra."""

    row: Row
    baseline: Row
    diffs: dict[str, Difference]


@dataclass
class Table:
    """An aggregated table: which row fields vary, the metric columns, their directions (and
    where each came from: ``--direction``, ``metrics.json``, ``cjepa.metrics`` or
    ``guessed``), their references, the comparisons with OC-JEPA and each metric's stage
    family (``Sweep.family``)."""

    rows: list[Row]
    metrics: list[str]
    directions: dict[str, str]
    show_aux: bool
    show_model: bool
    extra: tuple[str, ...]
    problems: list[Trial]
    expected_seeds: list[str]
    direction_from: dict[str, str] = field(default_factory=dict)
    references: dict[str, list[Reference]] = field(default_factory=dict)
    versus: list[Versus] = field(default_factory=list)
    family_of: dict[str, str] = field(default_factory=dict)  # "" = no stage family

    @property
    def guessed(self) -> list[str]:
        return [m for m in self.metrics if self.direction_from.get(m) == "guessed"]

    def row_fields(self, row: Row) -> list[str]:
        fields = [
            "OC-JEPA" if row.key.is_oc_jepa else row.key.unit,
            "0" if row.key.is_oc_jepa else str(row.key.budget),
        ]
        fields += [row.key.aux] if self.show_aux else []
        fields += [row.key.model or "-"] if self.show_model else []
        return fields + [v for _, v in row.key.extra]

    def head_fields(self) -> list[str]:
        head = ["unit", "|M|"] + (["aux"] if self.show_aux else [])
        return head + (["model"] if self.show_model else []) + list(self.extra)


def build_table(
    sweep: Sweep,
    metrics: list[str] | None = None,
    *,
    directions: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> Table:
    """Group the sweep's finished trials and aggregate each metric over seeds.

    Args:
        metrics: metric names (default: ``sweep.default_metrics()``; ``["all"]``: every table
            metric); a name that no trial logged raises AnalysisError listing the logged ones.
        directions: ``{metric: "min" | "max"}`` overriding :meth:`Sweep.direction`.
        extra: further params to group by (e.g. ``optim.lr`` for an Optuna sweep).
    """
    metrics = choose_metrics(sweep, metrics)
    overrides = directions or {}
    found = {
        m: (overrides[m], "--direction") if m in overrides else sweep.direction(m) for m in metrics
    }
    dirs = {m: d for m, (d, _) in found.items()}
    expected = sweep.expected_seeds()
    rows = group_rows(sweep, metrics, expected, extra)
    mark_best(rows, dirs)
    return Table(
        rows=rows,
        metrics=metrics,
        directions=dirs,
        show_aux=len({r.key.aux for r in rows}) > 1,
        show_model=any(r.key.model for r in rows),
        extra=extra,
        problems=[t for t in sweep.trials if not t.finished],
        expected_seeds=expected,
        direction_from={m: origin for m, (_, origin) in found.items()},
        references={m: sweep.references(m) for m in metrics},
        versus=_versus(rows, metrics),
        family_of={m: sweep.family(m) or "" for m in metrics},
    )


def choose_metrics(sweep: Sweep, metrics: list[str] | None) -> list[str]:
    """``metrics``, ``["all"]`` as :meth:`Sweep.all_metrics`, or the sweep's defaults; every
    one logged by some trial (else AnalysisError naming the logged ones)."""
    known = sweep.metric_names()
    if list(metrics or []) == ["all"]:
        metrics = sweep.all_metrics()
    metrics = list(metrics or sweep.default_metrics())
    if not metrics:
        raise AnalysisError(
            f"sweep {sweep.sweep_id!r} of experiment {sweep.experiment!r} has no metrics to "
            f"tabulate ({len(sweep.trials)} trial run(s)); logged metrics: {known}"
        )
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise AnalysisError(
            f"metric(s) {unknown} not logged by any trial of sweep {sweep.sweep_id!r} "
            f"(experiment {sweep.experiment!r}); logged metrics: {known}"
        )
    return metrics


def group_rows(
    sweep: Sweep, metrics: list[str], expected: list[str], extra: tuple[str, ...]
) -> list[Row]:
    """One row per group key (sorted), each metric's finite values over its finished trials."""
    groups: dict[GroupKey, list[Trial]] = {}
    for trial in sweep.trials:
        groups.setdefault(group_key(trial, extra), []).append(trial)
    rows = []
    for key in sorted(groups):
        done = [t for t in groups[key] if t.finished]
        cells = {}
        for m in metrics:
            have = [t for t in done if math.isfinite(t.metrics.get(m, math.nan))]
            seeds = {t.seed for t in have}
            cells[m] = Cell(
                values=[t.metrics[m] for t in have],
                missing=[s for s in expected if s not in seeds],
                expected=len(expected),
                seeds=[t.seed for t in have],
            )
        rows.append(Row(key, cells, groups[key]))
    return rows


def mark_best(rows: list[Row], directions: dict[str, str]) -> None:
    """Flag the best mean of each metric (every row that reaches it)."""
    for m, direction in directions.items():
        means = [r.cells[m].mean for r in rows if r.cells[m].n]
        if means:
            best = min(means) if direction == "min" else max(means)
            for r in rows:
                r.cells[m].best = bool(r.cells[m].n) and r.cells[m].mean == best


def _versus(rows: list[Row], metrics: list[str]) -> list[Versus]:
    """Each non-OC-JEPA row that shares a finished seed with the OC-JEPA row of its aux, model
    and extra params, with ``paired_difference(row, OC-JEPA)`` per metric."""
    base = {(r.key.aux, r.key.model, r.key.extra): r for r in rows if r.key.is_oc_jepa}
    out = []
    for row in rows:
        oc = base.get((row.key.aux, row.key.model, row.key.extra))
        if row.key.is_oc_jepa or oc is None:
            continue
        diffs = {m: paired_difference(row.cells[m].by_seed, oc.cells[m].by_seed) for m in metrics}
        if any(d.n for d in diffs.values()):
            out.append(Versus(row, oc, diffs))
    return out


def reference_rows(table: Table, metrics: list[str]) -> list[tuple[str, str, dict[str, float]]]:
    """``(kind, label, {metric: value})`` per distinct floor/ceiling of ``metrics``: floors
    first, each in the order the metrics list them."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for m in metrics:
        for ref in table.references.get(m, []):
            rows.setdefault((ref.kind, ref.label), {})[m] = ref.value
    order = sorted(rows, key=lambda k: k[0] != "floor")  # stable: floors, then ceilings
    return [(kind, label, rows[(kind, label)]) for kind, label in order]


def families(table: Table) -> list[tuple[str, list[str]]]:
    """Metric columns split by the stage family each belongs to (``final``, ``vqa``, ``plan``
    ..., as the sweep recorded it; ``""`` for metrics of no family), in column order, so that
    no single table gets too wide to read."""
    out: dict[str, list[str]] = {}
    for m in table.metrics:
        out.setdefault(table.family_of.get(m, ""), []).append(m)
    return list(out.items())


def parse_directions(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        metric, sep, direction = item.rpartition("=")
        if not sep or direction not in ("min", "max"):
            raise AnalysisError(f"--direction {item!r}: expected METRIC=min or METRIC=max")
        out[metric] = direction
    return out
