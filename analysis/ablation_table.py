"""Paper-style ablation table of a sweep, from MLflow: mean ± std over seeds per variant.

    python analysis/ablation_table.py --experiment cjepa-ablation          # latest sweep
    python analysis/ablation_table.py --experiment cjepa-ablation --sweep smoke-collide-20261127
    python analysis/ablation_table.py --experiment E --metric final/future_visible \\
        --metric vqa/predictive/per_question --direction cf/score=max --out runs/analysis/x
    python -m analysis.ablation_table --experiment E --no-log --no-plots

Rows group the finished trial runs by (masking unit, budget |M|, aux encoding, model label);
OC-JEPA (no masking) is its own row. There is one table per metric family (``final``, ``vqa``,
``plan``...). A cell shows ``mean ± std (n)`` over the finite values; a group with fewer seeds
than the sweep asked for says ``n=2 of 3`` and lists the missing seeds. The best value of each
column is in bold. Which way is better comes from the parent run's ``metrics.json``, else
``cjepa.metrics``, else a guess from the name (flagged ``?`` with a footnote); ``--direction``
overrides all three. Under each table, one row per floor/ceiling of the metrics shown
(``metrics.json`` or the trials' own reference metrics); then a "vs OC-JEPA" table: each
group's paired-by-seed difference from OC-JEPA with its 95% t interval (``cjepa.stats``).
Failed and unfinished trials are listed under the table.
The Markdown and LaTeX tables (and the plots, unless ``--no-plots``) are written to ``--out``
and logged to the sweep's parent run under ``analysis/`` (unless ``--no-log``).
"""

from __future__ import annotations

import argparse
import html
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python analysis/ablation_table.py`: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.runs import (
    OC_JEPA,
    AnalysisError,
    GroupKey,
    Reference,
    Sweep,
    Trial,
    default_out,
    group_key,
    load_sweep,
    log_artifacts,
    resolve_uri,
)
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
    ``guessed``), their references, and the comparisons with OC-JEPA."""

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
        metrics: metric names (default: ``sweep.default_metrics()``); a name that no trial
            logged raises AnalysisError listing the logged ones.
        directions: ``{metric: "min" | "max"}`` overriding :meth:`Sweep.direction`.
        extra: further params to group by (e.g. ``optim.lr`` for an Optuna sweep).
    """
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
    overrides = directions or {}
    found = {
        m: (overrides[m], "--direction") if m in overrides else sweep.direction(m) for m in metrics
    }
    dirs = {m: d for m, (d, _) in found.items()}
    expected = sweep.expected_seeds()
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
    for m in metrics:
        means = [r.cells[m].mean for r in rows if r.cells[m].n]
        if means:
            best = min(means) if dirs[m] == "min" else max(means)
            for r in rows:
                r.cells[m].best = bool(r.cells[m].n) and r.cells[m].mean == best
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
    )


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


def _count(cell: Cell) -> str:
    if not cell.missing:
        return f"n={cell.n}"
    return f"n={cell.n} of {cell.expected}; missing seed {','.join(cell.missing)}"


def _arrow(direction: str) -> str:
    return "↓" if direction == "min" else "↑"


def _head(table: Table, metric: str) -> str:
    """A column header: the name, ↓/↑, and ``?`` when the direction is a guess."""
    mark = GUESSED if table.direction_from.get(metric) == "guessed" else ""
    return f"{metric} {_arrow(table.directions[metric])}{mark}"


def reference_rows(table: Table, metrics: list[str]) -> list[tuple[str, str, dict[str, float]]]:
    """``(kind, label, {metric: value})`` per distinct floor/ceiling of ``metrics``: floors
    first, each in the order the metrics list them."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for m in metrics:
        for ref in table.references.get(m, []):
            rows.setdefault((ref.kind, ref.label), {})[m] = ref.value
    order = sorted(rows, key=lambda k: k[0] != "floor")  # stable: floors, then ceilings
    return [(kind, label, rows[(kind, label)]) for kind, label in order]


def versus_text(diff: Difference, digits: int) -> str:
    """``Difference.text`` with n: ``-0.1000 [-0.1200, -0.0800] * (n=3)``."""
    if not diff.n:
        return "-"
    text = diff.text(digits)
    return text if diff.n < 2 or diff.degenerate else f"{text} (n={diff.n})"


def families(table: Table) -> list[tuple[str, list[str]]]:
    """Metric columns split by family (``final``, ``vqa``, ``plan``...: the name up to the
    first ``/``), in column order, so that no single table gets too wide to read."""
    out: dict[str, list[str]] = {}
    for m in table.metrics:
        out.setdefault(m.split("/", 1)[0] if "/" in m else "", []).append(m)
    return list(out.items())


def to_markdown(table: Table, digits: int = 4) -> str:
    """GitHub Markdown, one table per metric family; the best mean per column in bold."""
    lines: list[str] = []
    groups = families(table)
    for family, metrics in groups:
        if len(groups) > 1:
            lines += ([""] if lines else []) + [f"**{family or 'other'}**", ""]
        lines += _md_block(table, metrics, digits)
    return "\n".join(lines + _notes(table))


def _md_block(table: Table, metrics: list[str], digits: int) -> list[str]:
    head = table.head_fields() + [_head(table, m) for m in metrics]
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        out = []
        for m in metrics:
            c = row.cells[m]
            if not c.n:
                out.append(f"- ({_count(c)})")
                continue
            value = f"{c.mean:.{digits}f} ± {c.std:.{digits}f}"
            out.append(f"{f'**{value}**' if c.best else value} ({_count(c)})")
        lines.append("| " + " | ".join([_md(f) for f in table.row_fields(row)] + out) + " |")
    blank = [""] * (len(table.head_fields()) - 1)
    for kind, label, values in reference_rows(table, metrics):
        out = [f"{values[m]:.{digits}f}" if m in values else "" for m in metrics]
        lines.append("| " + " | ".join([f"*{kind}: {_md(label)}*", *blank, *out]) + " |")
    return lines + _md_versus(table, metrics, digits)


def _md_versus(table: Table, metrics: list[str], digits: int) -> list[str]:
    shown = [v for v in table.versus if any(v.diffs[m].n for m in metrics)]
    if not shown:
        return []
    head = table.head_fields() + [f"{m} − {OC_JEPA}" for m in metrics]
    lines = ["", f"*{VERSUS_CAPTION}*", ""]
    lines += ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for v in shown:
        out = [versus_text(v.diffs[m], digits) for m in metrics]
        lines.append("| " + " | ".join([_md(f) for f in table.row_fields(v.row)] + out) + " |")
    return lines


def _md(text: str) -> str:
    """A Markdown table cell: ``|`` (as in ``|M|``) would end the cell."""
    return text.replace("|", "\\|")


def _notes(table: Table) -> list[str]:
    notes = [
        "",
        f"mean ± std over seeds {', '.join(table.expected_seeds)} (sample std; n = finished "
        "trials); "
        "↓ lower is better, ↑ higher is better; best per column in bold.",
    ]
    notes += _direction_notes(table)
    if any(table.references.get(m) for m in table.metrics):
        notes += ["", REFERENCES_NOTE]
    if table.problems:
        notes += ["", f"{len(table.problems)} trial(s) not finished (excluded from the table):"]
        notes += [f"- {t.name} (run {t.run_id}): {t.status}" for t in table.problems]
    return notes


def _direction_notes(table: Table) -> list[str]:
    if not table.guessed:
        return []
    return [
        "",
        f"{GUESSED} direction guessed from the name (not in the sweep's metrics.json nor in "
        f"cjepa.metrics): {', '.join(table.guessed)}; set it with --direction METRIC=min|max.",
    ]


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
_TEX |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(table: Table, digits: int = 3) -> str:
    """Booktabs ``tabular`` s, one per metric family; the best mean per column in ``\\textbf``."""
    blocks = [f"% {family}\n" + _tex_block(table, m, digits) for family, m in families(table)]
    return "\n".join(blocks)


def _tex_block(table: Table, metrics: list[str], digits: int) -> str:
    head = [tex_escape(h).replace("|M|", "$|M|$") for h in table.head_fields()]
    arrows = {"min": r"$\downarrow$", "max": r"$\uparrow$"}
    guess = {m: GUESSED if m in table.guessed else "" for m in metrics}
    head += [f"{tex_escape(m)} {arrows[table.directions[m]]}{guess[m]}" for m in metrics]
    lines = [
        r"\begin{tabular}{" + "l" * len(table.head_fields()) + "c" * len(metrics) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        out = []
        for m in metrics:
            c = row.cells[m]
            if not c.n:
                out.append(f"-- {{\\scriptsize (n=0/{c.expected})}}")
                continue
            value = f"{c.mean:.{digits}f} $\\pm$ {c.std:.{digits}f}"
            value = f"\\textbf{{{value}}}" if c.best else value
            if c.missing:
                miss = ",".join(c.missing)
                value += f" {{\\scriptsize (n={c.n}/{c.expected}; no seed {tex_escape(miss)})}}"
            out.append(value)
        lines.append(" & ".join([tex_escape(f) for f in table.row_fields(row)] + out) + r" \\")
    refs = reference_rows(table, metrics)
    lines += [r"\midrule"] if refs else []
    span = len(table.head_fields())
    for kind, label, values in refs:
        name = rf"\multicolumn{{{span}}}{{l}}{{\textit{{{kind}: {tex_escape(label)}}}}}"
        out = [f"{values[m]:.{digits}f}" if m in values else "" for m in metrics]
        lines.append(" & ".join([name, *out]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n" + _tex_versus(table, metrics, digits)


def _tex_versus(table: Table, metrics: list[str], digits: int) -> str:
    shown = [v for v in table.versus if any(v.diffs[m].n for m in metrics)]
    if not shown:
        return ""
    head = [tex_escape(h).replace("|M|", "$|M|$") for h in table.head_fields()]
    head += [f"{tex_escape(m)} $-$ {OC_JEPA}" for m in metrics]
    caption = VERSUS_CAPTION.translate(
        {ord("−"): "-", ord("·"): "*", ord("√"): "sqrt ", ord("±"): "+-"}
    )
    lines = [
        f"% {caption}",
        r"\begin{tabular}{" + "l" * len(table.head_fields()) + "c" * len(metrics) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for v in shown:
        out = [_tex_difference(v.diffs[m], digits) for m in metrics]
        lines.append(" & ".join([tex_escape(f) for f in table.row_fields(v.row)] + out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex_difference(diff: Difference, digits: int) -> str:
    if not diff.n:
        return "--"
    if diff.n < 2:
        return f"${diff.mean:+.{digits}f}$ {{\\scriptsize (n=1, no CI)}}"
    if diff.degenerate:
        return (
            f"${diff.mean:+.{digits}f}$ {{\\scriptsize (n={diff.n}, equal on every seed: no CI)}}"
        )
    star = "$^{*}$" if diff.significant else ""
    ci = f"[${diff.low:+.{digits}f}$, ${diff.high:+.{digits}f}$]"
    return f"${diff.mean:+.{digits}f}$ {ci}{star} {{\\scriptsize (n={diff.n})}}"


def to_html(table: Table, digits: int = 4) -> str:
    """HTML ``<table>`` s per metric family (for the report); best per column in ``<b>``,
    cells lacking seeds in class ``gap``, reference rows in class ``ref``, then the
    "vs OC-JEPA" table (significant differences in class ``sig``)."""
    blocks = []
    for family, metrics in families(table):
        title = f"<h3>{html.escape(family)}</h3>\n" if len(families(table)) > 1 else ""
        blocks.append(title + _html_block(table, metrics, digits))
    return "\n".join(blocks)


def _html_block(table: Table, metrics: list[str], digits: int) -> str:
    esc = html.escape
    head = table.head_fields() + [_head(table, m) for m in metrics]
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for row in table.rows:
        tds = [f"<td>{esc(f)}</td>" for f in table.row_fields(row)]
        for m in metrics:
            c = row.cells[m]
            count = f" <small>({esc(_count(c))})</small>"
            if not c.n:
                tds.append(f"<td><em>-</em>{count}</td>")
                continue
            value = f"{c.mean:.{digits}f} ± {c.std:.{digits}f}"
            value = f"<b>{value}</b>" if c.best else value
            cls = ' class="gap"' if c.missing else ""
            tds.append(f"<td{cls}>{value}{count}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    span = len(table.head_fields())
    for kind, label, values in reference_rows(table, metrics):
        tds = [f'<td colspan="{span}"><em>{esc(kind)}: {esc(label)}</em></td>']
        tds += [f"<td>{values[m]:.{digits}f}</td>" if m in values else "<td></td>" for m in metrics]
        out.append('<tr class="ref">' + "".join(tds) + "</tr>")
    return "\n".join([*out, "</table>"]) + _html_versus(table, metrics, digits)


def _html_versus(table: Table, metrics: list[str], digits: int) -> str:
    esc = html.escape
    shown = [v for v in table.versus if any(v.diffs[m].n for m in metrics)]
    if not shown:
        return ""
    head = table.head_fields() + [f"{m} − {OC_JEPA}" for m in metrics]
    out = [
        f'\n<p class="caption">{esc(VERSUS_CAPTION)}</p>',
        "<table>",
        "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>",
    ]
    for v in shown:
        tds = [f"<td>{esc(f)}</td>" for f in table.row_fields(v.row)]
        for m in metrics:
            d = v.diffs[m]
            cls = ' class="sig"' if d.significant else ""
            tds.append(f"<td{cls}>{esc(versus_text(d, digits))}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    return "\n".join([*out, "</table>"])


def parse_directions(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        metric, sep, direction = item.rpartition("=")
        if not sep or direction not in ("min", "max"):
            raise AnalysisError(f"--direction {item!r}: expected METRIC=min or METRIC=max")
        out[metric] = direction
    return out


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``ablation_table.py`` and ``report.py``."""
    parser.add_argument("--experiment", default="cjepa-ablation", help="MLflow experiment name")
    parser.add_argument("--sweep", help="cjepa.sweep_id or parent run id (default: the latest)")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        help="metric column (repeat; 'all' = every evaluation metric)",
    )
    parser.add_argument(
        "--direction", action="append", default=[], metavar="METRIC=min|max", help="override"
    )
    parser.add_argument("--group-by", action="append", default=[], help="extra param to group by")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or ./mlruns.db")
    parser.add_argument("--no-log", action="store_true", help="do not log to the parent run")


def sweep_and_table(args: argparse.Namespace) -> tuple[Sweep, Table]:
    """The sweep and its table for the flags of :func:`add_common_args`."""
    sweep = load_sweep(resolve_uri(args.tracking_uri), args.experiment, args.sweep)
    table = build_table(
        sweep,
        args.metric or None,
        directions=parse_directions(args.direction),
        extra=tuple(args.group_by),
    )
    return sweep, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--out", type=Path, help="default: runs/analysis/<sweep id>")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    try:
        sweep, table = sweep_and_table(args)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or default_out(sweep)
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table)
    title = f"# {sweep.experiment} / {sweep.sweep_id} ({len(sweep.trials)} trial runs)\n\n"
    (out / "ablation_table.md").write_text(title + markdown + "\n")
    (out / "ablation_table.tex").write_text(to_latex(table))
    print(title + markdown)
    files = [out / "ablation_table.md", out / "ablation_table.tex"]
    plots: list[Path] = []
    if not args.no_plots:
        from analysis.plots import write_plots

        plots = write_plots(sweep, table, out / "plots")
    if not args.no_log:
        log_artifacts(sweep, files, "analysis")
        log_artifacts(sweep, plots, "analysis/plots")
    where = "" if args.no_log else f" and to run {sweep.parent_id} under analysis/"
    print(f"\nwrote {len(files)} table(s) and {len(plots)} plot(s) to {out}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
