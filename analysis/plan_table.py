"""Planning results side by side: success per seed, mean ± std, and each planner vs the first.

    python -m analysis.plan_table runs/plan/random.json runs/plan/cjepa.json runs/plan/oracle.json
    python -m analysis.plan_table --success public/any_step random=runs/plan/r.json \\
        C-JEPA=runs/plan/c.json --out runs/plan/table.md

Each argument is a JSON written by ``experiments/plan_pusht.py`` (or the planning stage's
``plan.json``), optionally ``LABEL=PATH``. Every file must hold the same protocol (preset,
overrides other than the CEM budget, episode ids per seed): planners are compared on the same
episodes only. Per planner: the success rate of each seed (the episodes of that seed), their
mean ± std, and the paired difference to the FIRST planner (the floor, e.g. random actions) with
a 95% t interval over seeds (``cjepa.stats``); * marks an interval that excludes 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.planning import load, table
from cjepa import cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results", nargs="+", help="[LABEL=]PATH of plan_pusht.py JSONs; first = floor")
    p.add_argument("--success", default=None, help="<block|public>/<final|any_step> "
                   "(default: the first result's headline)")  # fmt: skip
    p.add_argument("--out", default=None, help="also write the Markdown here")
    args = p.parse_args()
    results = [load(a) for a in args.results]
    key = args.success or results[0][1]["protocol"]["headline"]
    text = table(results, key)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    cli.run(main)
