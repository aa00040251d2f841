"""Causal validation (SPEC section 10): does the predictor attend to the objects that actually
influence a hidden object?

For every val window (the model's T_h + T_p frames at its frameskip, starts every ``stride``
frames) and every object k present at the window's frame 0, object k is hidden at history steps
t >= 1 (the object-masking intervention, |M| = 1) and the model runs with ``need_weights``. The
attention mass of k on object j is: the attention weights from k's hidden history tokens
(queries t = 1..T_h-1) to all of j's tokens (keys at every frame of the window), summed over
those keys, averaged over heads and queries; per layer, and averaged over layers for the
pooled score (so it lies in [0, 1], the share of k's attention that goes to j).

Label of (k, j): j touched k (an object contact, ``interaction_graph``) at a frame in
(s, s + f (T_h - 1)] for ``graph_window: history`` (the contacts that shape the hidden history),
or (s, s + f (T_h + T_p - 1)] for ``window``. Candidates j: other objects present in some frame
of the window. Scores pooled over all (window, k, j) give ``causal/auroc`` (exact, ties count
1/2); ``causal/auroc_per_query`` averages the AUROC within each (window, k) that has both
labels (free of the scale differences between scenes with few and many objects);
``causal/auroc_layer<i>`` per layer; ``causal/auroc_proximity`` scores the same pairs by minus
the true centre distance at frame 0 (what "attend to what is near" would give).

Reads slot k as object k, as the object-aligned (oracle) encoder's slots are. A learned
encoder's slots go through slot-object alignment (``cjepa.evaluation.aligned_slots``): object k
is its matched slot at the first frame of the window where it has one; a candidate without a
slot in the window is dropped (``causal/align/n_dropped_pairs``), and so is a query whose hidden
object has none or that is left without candidates (``causal/align/n_dropped_queries``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cjepa.config import ExperimentConfig
from cjepa.evaluation import aligned_slots as al
from cjepa.evaluation.rollouts import load_split, recover, require_collide
from cjepa.evaluation.stage import (
    StageContext,
    StageSpec,
    check_at_least,
    check_choice,
    model_from_state,
    parse_options,
)
from cjepa.metrics import MetricFamily, MetricInfo, Reference
from cjepa.predictor import SlotPredictor
from cjepa.worlds.questions import interaction_graph

#: The metrics of a learned-slot run whose every window was dropped for poor alignment.
NO_SCORES = {
    **dict.fromkeys(("causal/auroc", "causal/auroc_per_query", "causal/auroc_proximity"), math.nan),
    **dict.fromkeys(("causal/n_pos", "causal/n_neg", "causal/n_queries_with_both"), 0.0),
}


@dataclass
class CausalOptions:
    stride: int = 4  # frames between window starts
    max_episodes: int = 0  # val episodes read (0 = all)
    graph_window: str = "history"  # or "window"
    batch_size: int = 256
    alignment: al.AlignmentOptions = field(default_factory=al.AlignmentOptions)  # learned slots

    def __post_init__(self) -> None:
        check_at_least("stages.causal.stride", self.stride, 1)
        check_at_least("stages.causal.max_episodes", self.max_episodes, 0)
        check_choice("stages.causal.graph_window", self.graph_window, ("history", "window"))
        check_at_least("stages.causal.batch_size", self.batch_size, 1)
        al.check_alignment("stages.causal.alignment", self.alignment)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact area under the ROC curve: P(score of a positive > score of a negative), ties 1/2
    (Mann-Whitney U with mid-ranks). NaN when a class is empty."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in shape")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s))
    start = 0
    while start < len(s):  # mid-rank of every run of equal scores
        stop = start + 1
        while stop < len(s) and sorted_s[stop] == sorted_s[start]:
            stop += 1
        ranks[order[start:stop]] = (start + stop + 1) / 2  # mean of 1-based ranks start+1..stop
        start = stop
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def attention_mass(model: SlotPredictor, slots: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Share of each hidden object's attention that lands on each entity (module doc).

    Args:
        slots: (B, T_h, N, D) history windows.
        hidden: (B,) long, the object hidden (t >= 1) in each window.

    Returns:
        (depth, B, N) attention mass per layer, summed over each entity's tokens at all frames.
    """
    b, th, n, _ = slots.shape
    mask = torch.zeros(b, th, n, dtype=torch.bool, device=slots.device)
    mask[:, 1:] = torch.nn.functional.one_hot(hidden, n).bool()[:, None]
    out = model(slots, mask, need_weights=True)
    e = n + model.n_aux_tokens
    t = th + model.n_future
    layers = []
    for w in out.attentions:  # (B, heads, L, L), L = T * E time-major
        w = w.mean(1).reshape(b, t, e, t, e)  # (B, Tq, Eq, Tk, Ek)
        rows = w[torch.arange(b), 1:th, hidden]  # (B, T_h - 1, Tk, Ek): hidden k's queries
        layers.append(rows.sum(2).mean(1)[:, :n])  # (B, N)
    return torch.stack(layers)


def _windows(ep, cfg: ExperimentConfig, stride: int, graph_window: str) -> list[dict]:
    """Per window start and hidden object: candidates, labels and proximity scores."""
    f, th, tp = cfg.data.frameskip, cfg.data.history, cfg.data.n_future
    span = f * (th + tp - 1)
    _, factual = recover(ep)
    k_all = ep.states.shape[1]
    out = []
    for s in range(0, ep.n_frames - span, stride):
        frames = list(range(s, s + span + 1, f))
        last = s + f * (th - 1) if graph_window == "history" else s + span
        adj = interaction_graph(factual, s + 1, last + 1).adjacency()  # (K, K)
        seen = ep.states[frames, :, 5].max(0) > 0  # (K,)
        for k in np.flatnonzero(ep.states[s, :, 5] > 0).tolist():
            cand = [j for j in range(k_all) if j != k and seen[j]]
            if not cand:
                continue
            dist = np.hypot(*(ep.states[s, cand, :2] - ep.states[s, k, :2]).T)
            out.append(
                {
                    "start": s,
                    "frames": frames[:th],
                    "k": k,
                    "cand": cand,
                    "labels": adj[k, cand].tolist(),
                    "proximity": (-dist).tolist(),
                }
            )
    return out


def _queries(cfg: ExperimentConfig, val: list, opts: CausalOptions, align) -> tuple[list, list]:
    """(items, inputs (T_h, N, D) each): one per val window and hidden object that the
    alignment keeps (``cjepa.evaluation.aligned_slots``; the oracle's keeps every one)."""
    d = cfg.data
    span = range(0, d.frameskip * (d.history + d.n_future - 1) + 1, d.frameskip)
    items, inputs = [], []
    for ep in val:
        for w in _windows(ep, cfg, opts.stride, opts.graph_window):
            frames = [w["start"] + t for t in span]
            w = align.window(w, ep.episode_id, frames)  # None: dropped for poor alignment
            if w is not None:
                items.append({"episode_id": ep.episode_id, **w})
                inputs.append(ep.slots[w["frames"]])
    return items, inputs


def causal_stage(
    cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
) -> dict[str, float]:
    """Attention-vs-interaction-graph AUROC on val windows (module doc). Writes
    ``causal_scores.json`` (one row per window and hidden object) into ``ctx.out_dir``, and
    for learned slots ``causal_alignment.json`` (one record per val episode)."""
    opts = parse_options("causal", CausalOptions, ctx.options)
    require_collide(cfg, "causal")
    t0 = time.perf_counter()
    model = model_from_state(cfg, state, ctx.device)
    align = al.for_stage("causal", opts.alignment, cfg, ctx, al.CAUSAL_DROPS)  # module doc
    val = load_split(cfg, ctx.episode_dir, "val", limit=opts.max_episodes or None)
    items, inputs = _queries(cfg, align.keep(val, "val"), opts, align)
    aligned = align.metrics("causal", ctx.out_dir / "causal_alignment.json")
    if not items and aligned:  # learned slots, every window dropped: say so, score nothing
        (ctx.out_dir / "causal_scores.json").write_text("[]")
        return {**NO_SCORES, **aligned, "causal/seconds": time.perf_counter() - t0}
    if not items:
        raise ValueError("stages.causal: no val window holds a present object")
    x = torch.from_numpy(np.stack(inputs)).to(ctx.device)  # (B, T_h, N, D)
    hidden = torch.tensor([it.get("slot", it["k"]) for it in items], device=ctx.device)
    bs = opts.batch_size
    mass = (
        torch.cat(
            [
                attention_mass(model, x[i : i + bs], hidden[i : i + bs])
                for i in range(0, len(items), bs)
            ],
            dim=1,
        )
        .cpu()
        .numpy()
    )  # (depth, B, N)
    for b, it in enumerate(items):
        it["mass"] = mass[:, b, it.get("cand_slots", it["cand"])].tolist()  # (depth, C)
        del it["frames"]
    labels = np.concatenate([it["labels"] for it in items]).astype(bool)
    per_layer = np.concatenate([np.asarray(it["mass"]) for it in items], axis=1)  # (depth, P)
    pooled = per_layer.mean(0)
    per_query = [auroc(np.mean(it["mass"], 0), it["labels"]) for it in items]
    per_query = [a for a in per_query if not math.isnan(a)]
    out = {
        "causal/auroc": auroc(pooled, labels),
        "causal/auroc_per_query": float(np.mean(per_query)) if per_query else math.nan,
        "causal/auroc_proximity": auroc(np.concatenate([it["proximity"] for it in items]), labels),
        "causal/n_pos": float(labels.sum()),
        "causal/n_neg": float((~labels).sum()),
        "causal/n_queries_with_both": float(len(per_query)),
        "causal/mass_pos": float(pooled[labels].mean()) if labels.any() else math.nan,
        "causal/mass_neg": float(pooled[~labels].mean()) if (~labels).any() else math.nan,
    }
    for i, layer in enumerate(per_layer):
        out[f"causal/auroc_layer{i}"] = auroc(layer, labels)
    out.update(aligned)
    (ctx.out_dir / "causal_scores.json").write_text(json.dumps(items))
    out["causal/seconds"] = time.perf_counter() - t0
    return out


CAUSAL_METRICS = MetricFamily(
    "causal",
    metrics={
        "causal/auroc": MetricInfo(
            "max",
            (
                Reference("random attention", "floor", 0.5),
                # distance between objects alone: no learning, yet a strong baseline (0.84-0.94)
                Reference("proximity", "floor", "causal/auroc_proximity"),
                Reference("the simulator's interaction graph", "ceiling", 1.0),
            ),
            "attention mass vs the simulator's interaction graph",
        ),
    },
    patterns=(*al.align_patterns("causal"), ("causal/auroc*", "max"), ("causal/mass_*", "max")),
    headline=("causal/auroc", "causal/auroc_proximity"),
    what="the predictor's attention vs the simulator's interaction graph",
)
SPEC = StageSpec(causal_stage, CausalOptions, (CAUSAL_METRICS,))
