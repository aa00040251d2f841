"""What the analysis CLIs share: their common flags, the sweep and table those flags name, and
the one-line error they print for a sweep, experiment or metric the store does not have."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from analysis.runs import AnalysisError, Sweep
from analysis.store import load_sweep, resolve_uri
from analysis.table import Table, build_table, parse_directions


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``analysis.ablation_table``, ``analysis.plots`` and ``analysis.report``."""
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


def run(
    doc: str, add_args: Callable[[argparse.ArgumentParser], None], argv: list[str] | None
) -> tuple[argparse.Namespace, Sweep, Table] | None:
    """Parse ``argv`` (common flags plus ``add_args``'), load the sweep and its table; None
    after printing ``error: ...`` when the store lacks what the flags name."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_common_args(parser)
    add_args(parser)
    args = parser.parse_args(argv)
    try:
        sweep, table = sweep_and_table(args)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    return args, sweep, table
