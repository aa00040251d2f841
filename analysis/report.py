"""One self-contained HTML page for a sweep (``analysis.page``): tables, plots, evaluation
protocol, sweep config, code version and every trial's run id and status. Viewable offline.

    python -m analysis.report --experiment cjepa-ablation --out report.html
    python -m analysis.report --experiment cjepa-ablation --sweep ID --metric final/history \\
        --out runs/analysis/report.html --no-log

The page is also logged to the sweep's parent run as ``analysis/report.html`` (unless
``--no-log``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from analysis import cli
from analysis.figures import write_plots
from analysis.page import render
from analysis.store import log_artifacts


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file")


def main(argv: list[str] | None = None) -> int:
    loaded = cli.run(__doc__, _args, argv)
    if loaded is None:
        return 2
    args, sweep, table = loaded
    with tempfile.TemporaryDirectory() as tmp:
        page = render(sweep, table, write_plots(sweep, table, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    if not args.no_log:
        with tempfile.TemporaryDirectory() as tmp:  # logged as report.html whatever --out says
            copy = Path(tmp) / "report.html"
            copy.write_text(page, encoding="utf-8")
            log_artifacts(sweep, [copy], "analysis")
    where = "" if args.no_log else f" (logged to run {sweep.parent_id} as analysis/report.html)"
    print(f"wrote {args.out}, {len(page) / 1024:.0f} KiB{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
