"""Planning results side by side: success per seed, mean ± std, and each planner vs the first.

    python analysis/plan_table.py runs/plan/random.json runs/plan/cjepa.json runs/plan/oracle.json
    python analysis/plan_table.py --success public/any_step random=runs/plan/r.json \\
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
import json
from pathlib import Path
from typing import Any

from cjepa import cli
from cjepa.stats import paired_difference, summarise


def per_seed(result: dict[str, Any], key: str) -> dict[int, float]:
    """{seed: success rate} for ``key`` ("public/any_step", ...) from a result's episodes."""
    column = "success_" + key.replace("/", "_")
    rows: dict[int, list[float]] = {}
    for ep in result["episodes"]:
        if column not in ep:
            raise ValueError(f"episode rows have no {column!r} (success must be <def>/<when>)")
        rows.setdefault(int(ep["seed"]), []).append(float(ep[column]))
    return {s: sum(v) / len(v) for s, v in sorted(rows.items())}


def load(arg: str) -> tuple[str, dict[str, Any]]:
    label, _, path = arg.rpartition("=")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"planning result {path!r}: no such file")
    try:
        result = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"planning result {path}: not JSON ({e})") from e
    if not {"episodes", "protocol", "planner"} <= set(result):
        raise ValueError(f"planning result {path}: not a plan_pusht.py result")
    return label or str(result["protocol"]["planner"].get("model") or result["planner"]), result


def same_episodes(results: list[tuple[str, dict[str, Any]]]) -> None:
    first_label, first = results[0]
    for label, r in results[1:]:
        if r["protocol"]["episode_ids"] != first["protocol"]["episode_ids"]:
            raise ValueError(
                f"{label!r} planned other episodes than {first_label!r} (protocol.episode_ids "
                "differ): compare results of one protocol, episode count and seeds"
            )


def table(results: list[tuple[str, dict[str, Any]]], key: str) -> str:
    same_episodes(results)
    seeds = sorted(per_seed(results[0][1], key))
    base_label, base = results[0][0], per_seed(results[0][1], key)
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"| planner ({key}) | {head} | mean ± std | vs {base_label} [95% CI] | plan s / episode |",
        "|---|" + "---|" * (len(seeds) + 3),
    ]
    for label, r in results:
        v = per_seed(r, key)
        diff = "-" if label == base_label else paired_difference(v, base).text(2)
        cells = " | ".join(f"{v[s]:.2f}" for s in seeds)
        label = label.replace("|", "\\|")  # a Markdown cell
        lines.append(
            f"| {label} | {cells} | {summarise(list(v.values())).text(2)} | {diff} | "
            f"{r['plan_wall_s_per_episode']:.1f} |"
        )
    p = results[0][1]["protocol"]
    lines.append("")
    lines.append(
        f"Protocol {p.get('preset', '?')} (overrides {p.get('overrides', {})}); "
        f"{len(results[0][1]['episodes'])} episodes over seeds {seeds}; * = the interval "
        "excludes 0."
    )
    return "\n".join(lines)


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
