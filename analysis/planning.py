"""Planning results side by side (the library of ``python -m analysis.plan_table``): success
per seed, mean ± std, and each planner's paired difference to the first, on the same episodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
