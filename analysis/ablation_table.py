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
column is in bold (lower is better for losses/MSE/errors/wall time, higher for accuracy/success/
AUROC; ``--direction`` overrides). Failed and unfinished trials are listed under the table.
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
    AnalysisError,
    GroupKey,
    Sweep,
    Trial,
    default_out,
    group_key,
    load_sweep,
    log_artifacts,
    metric_direction,
    resolve_uri,
)


@dataclass
class Cell:
    """One metric of one group: the values of its finished trials, and the seeds it lacks."""

    values: list[float]
    missing: list[str]
    expected: int
    best: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

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
class Table:
    """An aggregated table: which row fields vary, the metric columns and their directions."""

    rows: list[Row]
    metrics: list[str]
    directions: dict[str, str]
    show_aux: bool
    show_model: bool
    extra: tuple[str, ...]
    problems: list[Trial]
    expected_seeds: list[str]

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
        directions: ``{metric: "min" | "max"}`` overriding ``metric_direction``.
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
    dirs = {m: metric_direction(m, directions) for m in metrics}
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
    )


def _count(cell: Cell) -> str:
    if not cell.missing:
        return f"n={cell.n}"
    return f"n={cell.n} of {cell.expected}; missing seed {','.join(cell.missing)}"


def _arrow(direction: str) -> str:
    return "↓" if direction == "min" else "↑"


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
    head = table.head_fields() + [f"{m} {_arrow(table.directions[m])}" for m in metrics]
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
    if table.problems:
        notes += ["", f"{len(table.problems)} trial(s) not finished (excluded from the table):"]
        notes += [f"- {t.name} (run {t.run_id}): {t.status}" for t in table.problems]
    return notes


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
    head += [f"{tex_escape(m)} {arrows[table.directions[m]]}" for m in metrics]
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
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_html(table: Table, digits: int = 4) -> str:
    """HTML ``<table>`` s per metric family (for the report); best per column in ``<b>``,
    cells lacking seeds in class ``gap``."""
    blocks = []
    for family, metrics in families(table):
        title = f"<h3>{html.escape(family)}</h3>\n" if len(families(table)) > 1 else ""
        blocks.append(title + _html_block(table, metrics, digits))
    return "\n".join(blocks)


def _html_block(table: Table, metrics: list[str], digits: int) -> str:
    esc = html.escape
    head = table.head_fields() + [f"{m} {_arrow(table.directions[m])}" for m in metrics]
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
