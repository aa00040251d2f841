"""PNG plots of a sweep (``analysis.figures``): metric vs budget with its floors and ceilings,
planning success vs time, learning curves per trial.

    python -m analysis.plots --experiment cjepa-ablation [--sweep ID] [--metric M] [--out DIR]

Also written by ``python -m analysis.ablation_table`` (unless ``--no-plots``). Every plot goes to
``--out`` and, unless ``--no-log``, to the sweep's parent run under ``analysis/plots/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis import cli
from analysis.figures import write_plots
from analysis.store import default_out, log_artifacts


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="default: runs/analysis/<sweep id>/plots")


def main(argv: list[str] | None = None) -> int:
    loaded = cli.run(__doc__, _args, argv)
    if loaded is None:
        return 2
    args, sweep, table = loaded
    out = args.out or default_out(sweep) / "plots"
    plots = write_plots(sweep, table, out)
    if not args.no_log:
        log_artifacts(sweep, plots, "analysis/plots")
    print(f"wrote {len(plots)} plot(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
