"""Paper-style ablation table of a sweep, from MLflow: mean ± std over seeds per variant.

    python -m analysis.ablation_table --experiment cjepa-ablation          # latest sweep
    python -m analysis.ablation_table --experiment cjepa-ablation --sweep smoke-collide-20261127
    python -m analysis.ablation_table --experiment E --metric final/future_visible \\
        --metric vqa/predictive/per_question --direction cf/score=max --out runs/analysis/x
    python -m analysis.ablation_table --experiment E --no-log --no-plots

Rows group the finished trial runs by (masking unit, budget |M|, aux encoding, model label);
OC-JEPA (no masking) is its own row. There is one table per metric family (``final``, ``vqa``,
``plan``...: the families the stages declare, as the sweep recorded them). A cell shows
``mean ± std (n)`` over the finite values; a group with fewer seeds than the sweep asked for
says ``n=2 of 3`` and lists the missing seeds. The best value of each column is in bold. Which
way is better comes from the parent run's ``metrics.json``, else ``cjepa.metrics``, else a guess
from the name (flagged ``?`` with a footnote); ``--direction`` overrides all three. Under each
table, one row per floor/ceiling of the metrics shown; then a "vs OC-JEPA" table: each group's
paired-by-seed difference from OC-JEPA with its 95% t interval (``cjepa.stats``). Failed and
unfinished trials are listed under the table. The Markdown and LaTeX tables (and the plots,
unless ``--no-plots``) are written to ``--out`` and logged to the sweep's parent run under
``analysis/`` (unless ``--no-log``). The library: ``analysis.table`` and ``analysis.formats``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis import cli
from analysis.figures import write_plots
from analysis.formats import to_latex, to_markdown
from analysis.store import default_out, log_artifacts


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="default: runs/analysis/<sweep id>")
    parser.add_argument("--no-plots", action="store_true", help="tables only")


def main(argv: list[str] | None = None) -> int:
    loaded = cli.run(__doc__, _args, argv)
    if loaded is None:
        return 2
    args, sweep, table = loaded
    out = args.out or default_out(sweep)
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table)
    title = f"# {sweep.experiment} / {sweep.sweep_id} ({len(sweep.trials)} trial runs)\n\n"
    (out / "ablation_table.md").write_text(title + markdown + "\n")
    (out / "ablation_table.tex").write_text(to_latex(table))
    print(title + markdown)
    files = [out / "ablation_table.md", out / "ablation_table.tex"]
    plots = [] if args.no_plots else write_plots(sweep, table, out / "plots")
    if not args.no_log:
        log_artifacts(sweep, files, "analysis")
        log_artifacts(sweep, plots, "analysis/plots")
    where = "" if args.no_log else f" and to run {sweep.parent_id} under analysis/"
    print(f"\nwrote {len(files)} table(s) and {len(plots)} plot(s) to {out}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
