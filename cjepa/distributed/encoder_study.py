"""Encoder quality vs what object masking buys (issue N): the C-JEPA minus OC-JEPA difference on
the intervention and causal metrics, paired by seed with its 95% t interval
(``cjepa.stats.paired_difference``), against the encoder's FG-ARI, oracle slots right-most.

:func:`run_study` runs one ablation per encoder (``experiments/encoder_quality.py``), keeping one
:func:`point` per finished encoder in ``points.json``; :func:`study_table` and
:func:`study_figure` read those points.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cjepa import metrics as metric_registry
from cjepa.stats import paired_difference, summarise

#: What the study compares: C-JEPA's gain on the object-naming stages' headline metrics.
STUDY_METRICS = ("causal/auroc", "cf/slot_error_after_contact", "cf/collide/acc")
#: Where the oracle sits on the FG-ARI axis (it has no masks to score: slot k is object k).
ORACLE_X = 1.0


def by_seed(rows: list[dict[str, Any]], budget: int, metric: str) -> dict[int, float]:
    """``{seed: value}`` of ``metric`` over the complete trials at masking budget ``budget``."""
    return {
        int(r["train.seed"]): float(r[metric])
        for r in rows
        if r.get("complete") and int(r.get("masking.budget", -1)) == budget and metric in r
    }


def point(
    label: str, quality: dict[str, float], rows: list[dict[str, Any]], budget: int
) -> dict[str, Any]:
    """One encoder's row of the study: its quality, and per metric both models' mean ± std and
    the paired difference (C-JEPA at ``budget`` minus OC-JEPA)."""
    out: dict[str, Any] = {"encoder": label, "quality": dict(quality), "metrics": {}}
    for metric in STUDY_METRICS:
        cj, oc = by_seed(rows, budget, metric), by_seed(rows, 0, metric)
        d = paired_difference(cj, oc)
        out["metrics"][metric] = {
            "cjepa": vars(summarise(list(cj.values()))),
            "ocjepa": vars(summarise(list(oc.values()))),
            "difference": {**vars(d), "significant": d.significant, "text": d.text()},
        }
    return out


def x_of(p: dict[str, Any]) -> float:
    return ORACLE_X if p["encoder"] == "oracle" else p["quality"].get("encoder/fg_ari", math.nan)


def study_table(points: list[dict[str, Any]], budget: int) -> str:
    """A markdown table: one row per encoder (by FG-ARI, oracle last), one column per metric
    with the paired difference and its interval (``*``: the interval excludes 0)."""
    head = "| encoder | FG-ARI | alignment: mean IoU / complete frames | " + " | ".join(
        f"{m} ({metric_registry.direction(m) or '?'}): object \\|M\\|={budget} - OC-JEPA"
        for m in STUDY_METRICS
    )
    lines = [head + " |", "|" + "---|" * (3 + len(STUDY_METRICS))]
    for p in sorted(points, key=x_of):
        q = p["quality"]
        fg = "oracle" if p["encoder"] == "oracle" else f"{q.get('encoder/fg_ari', math.nan):.3f}"
        align = (
            "- (slot k is object k)"
            if p["encoder"] == "oracle"
            else f"{q['encoder/align_mean_iou']:.3f} / {q['encoder/align_complete']:.1%}"
        )
        cells = [p["metrics"][m]["difference"]["text"] for m in STUDY_METRICS]
        lines.append(f"| {p['encoder']} | {fg} | {align} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_figure(points: list[dict[str, Any]], path: Path, budget: int) -> Path:
    """One panel per metric: the difference (mean, 95% interval) against FG-ARI, the oracle as
    the right-most point, and the no-gain line at 0 (the floor of the comparison)."""
    pts = sorted(points, key=x_of)
    fig, axes = plt.subplots(1, len(STUDY_METRICS), figsize=(5 * len(STUDY_METRICS), 4), dpi=110)
    for ax, metric in zip(axes, STUDY_METRICS, strict=True):
        for p in pts:
            d = p["metrics"][metric]["difference"]
            x, oracle = x_of(p), p["encoder"] == "oracle"
            if not math.isfinite(d["mean"]):
                continue
            low = d["mean"] - d["low"] if math.isfinite(d["low"]) else 0.0
            high = d["high"] - d["mean"] if math.isfinite(d["high"]) else 0.0
            ax.errorbar([x], [d["mean"]], yerr=[[low], [high]], fmt="s" if oracle else "o",
                        color="tab:red" if oracle else "tab:blue", capsize=4)  # fmt: skip
            ax.annotate(p["encoder"].rsplit("encoder-", 1)[-1], (x, d["mean"]),
                        textcoords="offset points",
                        xytext=(4, 4), fontsize=7)  # fmt: skip
        ax.axhline(0.0, ls="--", color="grey", lw=1, label="no gain (floor of the comparison)")
        better = metric_registry.direction(metric)
        ax.set_title(f"{metric} ({'higher' if better == 'max' else 'lower'} is better)", fontsize=9)
        ax.set_xlabel("encoder FG-ARI on held-out episodes (oracle at 1)")
        ax.set_ylabel(f"object |M|={budget} - OC-JEPA (95% CI, paired by seed)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


WORLD = "collide"  # the world with instance masks and the simulator the stages need


def sweep_overrides(budget: int, seeds: list[int]) -> list[str]:
    """``--sweep-set`` items: OC-JEPA and object masking at ``budget``, at ``seeds``."""
    return [f"seeds=[{','.join(map(str, seeds))}]", f"grid.masking.budget=[0,{budget}]",
            "grid.masking.unit=[object]"]  # fmt: skip


def label(encoder: str) -> str:
    """A short name for sweep ids and the table: the checkpoint's folder and stem."""
    if encoder == "oracle":
        return "oracle"
    p = Path(encoder)
    return f"{p.parent.name}-{p.stem}"


def run_study(
    preset: Path,
    encoders: list[str],
    out: Path,
    *,
    budget: int = 4,
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The ``preset`` ablation on ``WORLD`` for each encoder (a checkpoint path or ``oracle``),
    in order; ``out/points.json`` keeps each finished encoder's point (a rerun skips a
    checkpoint whose sha256 is unchanged). Returns (the points of ``encoders``, failed trials).
    Every preset and encoder is checked before the first ablation starts."""
    from cjepa.distributed.pipeline import check_ablation, load_ablation, run_ablation
    from cjepa.encoders.base import file_sha256

    sweep_set, overrides = sweep_overrides(budget, seeds or [0, 1, 2]), list(overrides or [])
    configs = {e: load_ablation(preset, [*overrides, f"encoder={e}"]) for e in encoders}
    for cfg, preset_dir in configs.values():
        check_ablation(cfg, preset_dir, world=WORLD, sweep_overrides=sweep_set)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "points.json"
    done = json.loads(store.read_text()) if store.is_file() else {}
    keys, failed = [], 0
    for enc, (cfg, preset_dir) in configs.items():
        key = enc if enc == "oracle" else f"{enc}@{file_sha256(enc)[:16]}"
        keys.append(key)
        if key in done:
            print(f"[encoder-quality] {label(enc)}: kept from {store}", flush=True)
            continue
        sweep_id = f"{cfg.name}-{WORLD}-{label(enc)}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = run_ablation(cfg, preset_dir, world=WORLD, sweep_id=sweep_id,
                              sweep_overrides=sweep_set)  # fmt: skip
        failed += sum(1 for r in result.rows if r.get("error"))
        quality = result.encoder_quality  # scored once by run_ablation, on its held-out split
        done[key] = {**point(label(enc), quality, result.rows, budget), "sweep": sweep_id,
                     "parent_run_id": result.parent_run_id}  # fmt: skip
        store.write_text(json.dumps(done, indent=1) + "\n")
    return [done[k] for k in keys], failed
