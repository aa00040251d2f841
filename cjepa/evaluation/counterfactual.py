"""Direct intervention test on collide (no reader): remove an object in the latent, roll out, and
compare with the simulator's exact counterfactual (SPEC section 10).

For a val episode and an object X whose first object contact is at frame c, the history window
ends at ``end = c - 1`` (the last frame the counterfactual provably shares: a removed object is
a ghost that changes nothing before its first contact, ``cjepa.worlds.collide``). Then

- factual rollout: the window with all N slots, ``steps = ceil(horizon / f)`` steps;
- intervened rollout: the same window with X's slot *dropped* (N - 1 slots). SlotPredictor has
  no slot-index code (only a time embedding; the masked-token query is phi of the object's own
  anchor), so it is permutation-equivariant over slots and takes any N;
- truth: ``simulate(scene, remove={X})`` (scene from the episode meta via ``episode_scene``),
  rendered and encoded with ``ctx.encoder``, the spec that made ``cfg.data.slot_dir``.

Kept slots are matched to the counterfactual's slots once per intervention, by the Hungarian
algorithm on the squared distance at frame ``end`` (where truth agrees with the input; an exact
tie keeps the slot's own index), never on the predictions being scored. Errors are per-slot MSE
over the rolled-out steps (all after the contact) and the kept slots:

- ``slot_error_after_contact``: intervened rollout vs counterfactual slots;
- ``slot_error_factual``: factual rollout vs factual slots on the same slots (reference);
- ``slot_error_ignore``: factual rollout vs counterfactual slots (a model that ignores the
  intervention); ``effect``: factual vs counterfactual slots (how much the removal changes);
- ``..._affected``: the same over slots the removal changes (effect > 1e-8);
- ``control/...``: removing an object that never touches another object (window ending at the
  last frame that fits): truth is unchanged, so a model whose predictions for the others do not
  depend on a non-interacting object gives ``slot_error == slot_error_factual``.

"Do Y and Z collide": positions decoded by a ridge probe slots -> (x, y) fitted on train
episodes' encoder slots; a pair collides when the decoded centre distance falls below
``contact_distance`` at some rolled-out step (0: calibrated on train episodes' decoded encoder
slots over windows of the same span); truth: collisions starting in (end, end + f steps] of the
counterfactual. Pairs: objects other than X present at ``end``; learned slots: ``aligned_slots``.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from cjepa.config import ExperimentConfig
from cjepa.data.episode import EpisodeData
from cjepa.evaluation import aligned_slots as al
from cjepa.evaluation.rollouts import (
    EvalEpisode,
    Probe,
    load_split,
    recover,
    require_collide,
    ridge_fit,
    window,
)
from cjepa.evaluation.stage import (
    StageContext,
    StageSpec,
    check_at_least,
    model_from_state,
    parse_options,
)
from cjepa.evaluation.videos import write_intervention_videos
from cjepa.metrics import MetricFamily, MetricInfo, Reference


@dataclass
class CounterfactualOptions:
    max_episodes: int = 0  # val episodes read (0 = all)
    per_episode: int = 2  # removals of colliding objects per episode
    horizon: int = 16  # frames rolled out after the window
    ridge: float = 1e-2  # probe's L2 penalty
    contact_distance: float = 0.0  # 0 = calibrate on train episodes
    videos: int = 0  # removals rendered as GIFs (cjepa.evaluation.videos)
    alignment: al.AlignmentOptions = field(default_factory=al.AlignmentOptions)  # learned slots

    def __post_init__(self) -> None:
        check_at_least("stages.counterfactual.max_episodes", self.max_episodes, 0)
        check_at_least("stages.counterfactual.per_episode", self.per_episode, 1)
        check_at_least("stages.counterfactual.horizon", self.horizon, 1)
        check_at_least("stages.counterfactual.ridge", self.ridge, 0.0)
        check_at_least("stages.counterfactual.contact_distance", self.contact_distance, 0.0)
        check_at_least("stages.counterfactual.videos", self.videos, 0)
        al.check_alignment("stages.counterfactual.alignment", self.alignment)


def fit_probe(episodes: list[EvalEpisode], ridge: float, stride: int = 2) -> Probe:
    """Ridge regression from slot k to object k's (x, y) over present objects (aligned slots)."""
    xs, ys = [], []
    for ep in episodes:
        present = ep.states[::stride, :, 5] > 0  # (T', K)
        xs.append(ep.slots[::stride, : ep.states.shape[1]][present])
        ys.append(ep.states[::stride, :, :2][present])
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    return Probe(*ridge_fit(x, y, ridge))


def min_distances(xy: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(P,) smallest distance over time between the two objects of each pair; xy (T, K, 2)."""
    return np.array([np.hypot(*(xy[:, i] - xy[:, j]).T).min() for i, j in pairs])


def calibrate_contact(
    probe: Probe, episodes: list[EvalEpisode], span: int, frameskip: int
) -> float:
    """Decoded-distance threshold with the best accuracy at "collide within the window" on
    windows of ``span`` frames of ``episodes`` (their encoder slots, aligned)."""
    dists, labels = [], []
    for ep in episodes:
        k = ep.states.shape[1]
        pairs_at = {
            (i, j): [c[0] for c in ep.info["collisions"] if c[1:] == [i, j]]
            for i, j in itertools.combinations(range(k), 2)
        }
        for end in range(0, ep.n_frames - span, span):
            live = np.flatnonzero(ep.states[end, :, 5] > 0)
            pairs = list(itertools.combinations(live.tolist(), 2))
            if not pairs:
                continue
            xy = probe(ep.slots[end + frameskip : end + span + 1 : frameskip, :k])
            dists.append(min_distances(xy, pairs))
            labels += [any(end < f <= end + span for f in pairs_at[p]) for p in pairs]
    d, y = np.concatenate(dists), np.array(labels)
    grid = np.linspace(0.02, 0.5, 97)
    acc = [((d < g) == y).mean() for g in grid]
    return float(grid[int(np.argmax(acc))])


def match(kept: np.ndarray, target: np.ndarray, kept_index: list[int]) -> np.ndarray:
    """Hungarian match of kept slots (M, D) to target slots (N, D) at one frame; exact ties go
    to the slot's own index. Returns (M,) target indices."""
    cost = ((kept[:, None] - target[None]) ** 2).sum(-1)  # (M, N)
    cost = cost + 1e-9 * (np.asarray(kept_index)[:, None] != np.arange(len(target))[None])
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def choose_removals(
    ep: EvalEpisode, history: int, f: int, steps: int, per_episode: int, rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """(X, end, kind): up to ``per_episode`` colliders (kind "collider", end = first contact - 1)
    whose window and rollout fit, and one never-touching object (kind "control")."""
    first: dict[int, int] = {}
    for c, i, j in ep.info["collisions"]:
        for x in (i, j):
            first[x] = min(first.get(x, c), c)
    fits = lambda end: end >= f * (history - 1) and end + f * steps < ep.n_frames  # noqa: E731
    colliders = sorted(x for x, c in first.items() if fits(c - 1))
    picked = [colliders[i] for i in rng.permutation(len(colliders))[:per_episode]]
    out = [(x, first[x] - 1, "collider") for x in sorted(picked)]
    end = ep.n_frames - 1 - f * steps
    quiet = [x for x in range(ep.states.shape[1]) if x not in first and ep.states[end, x, 5] > 0]
    if quiet and fits(end):
        out.append((quiet[int(rng.integers(len(quiet)))], end, "control"))
    return out


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(S, M, D) x2 -> (M,) per-slot mean squared error."""
    return ((a - b) ** 2).mean(axis=(0, 2))


def _episode_rows(model, ep: EvalEpisode, removals, enc, cfg, steps, probe, contact, objects=None):
    """Roll out factual and intervened windows of one episode and score them (module doc);
    ``objects`` (T, K): each object's slot per frame (learned slots), None: slot k = object k."""
    f, th = cfg.data.frameskip, cfg.data.history
    sims, encoded = _resimulate(ep, removals, enc, cfg)
    z = torch.from_numpy(ep.slots)
    rows = []
    for (x, end, kind), sim, z_cf in zip(removals, sims[1:], encoded[1:], strict=True):
        of = np.arange(ep.states.shape[1]) if objects is None else objects[end]  # (K,) slots
        keep = [k for k in range(z.shape[1]) if k != of[x]]
        hist = window(z, end, th, f).unsqueeze(0)  # (1, T_h, N, D)
        dev = next(model.parameters()).device
        pred_f = model.rollout(hist.to(dev), steps)[0][0, :, keep].cpu().numpy()  # (S, N-1, D)
        pred_cf = model.rollout(hist[:, :, keep].to(dev), steps)[0][0].cpu().numpy()
        frames = [end + f * j for j in range(1, steps + 1)]
        m = match(ep.slots[end, keep], z_cf[end], keep)
        true_f, true_cf = ep.slots[frames][:, keep], z_cf[frames][:, m]
        errs = {
            "cf": _mse(pred_cf, true_cf),
            "factual": _mse(pred_f, true_f),
            "ignore": _mse(pred_f, true_cf),
            "effect": _mse(true_f, true_cf),
        }
        hit = errs["effect"] > 1e-8
        row: dict[str, Any] = {"episode_id": ep.episode_id, "object": x, "end": end, "kind": kind}
        row.update({} if objects is None else {"slot": int(of[x])})
        row.update({k: float(v.mean()) for k, v in errs.items()})
        row.update(
            {
                f"{k}_affected": float(v[hit].mean()) if hit.any() else math.nan
                for k, v in errs.items()
                if k != "effect"
            }
        )
        if probe is not None and kind == "collider":
            slots = (keep, of, None if objects is None else m)
            row["pairs"] = _pairs(
                ep, sim, x, end, frames, slots, probe, contact, pred_f, pred_cf, z_cf
            )
        rows.append(row)
    return rows


def _resimulate(ep: EvalEpisode, removals, enc, cfg) -> tuple[list, list[np.ndarray]]:
    """The episode re-simulated as is, then once per removal without the removed object, and
    each encoded with ``enc``; the as-is encoding must reproduce the episode's stored slots."""
    from cjepa.worlds.collide import simulate

    scene, _ = recover(ep)
    size = int(ep.meta.get("size", 64))
    sims = [simulate(scene, ep.n_frames, size=size)]
    sims += [simulate(scene, ep.n_frames, remove={x}, size=size) for x, _, _ in removals]
    encoded = enc.encode_episodes(
        [
            EpisodeData(
                f"{ep.episode_id}-cf{n}",
                "collide",
                s.frames,
                s.states,
                masks=s.masks,
                info={"objects": ep.info.get("objects", [])},
                meta=ep.meta,
            )
            for n, s in enumerate(sims)
        ]
    )
    if not np.allclose(encoded[0], ep.slots, atol=1e-4):
        raise ValueError(
            f"StageContext.encoder does not reproduce the slots of "
            f"{ep.episode_id!r} in data.slot_dir={cfg.data.slot_dir}"
        )
    return sims, encoded


def _pairs(ep, sim, x, end, frames, slots, probe, contact, pred_f, pred_cf, z_cf) -> list[dict]:
    """Collision readings for pairs of present objects other than x that have a slot; ``slots``:
    kept slots, (K,) each object's slot at ``end``, counterfactual slot of each kept one."""
    keep, of, m = slots
    live = [k for k in range(len(of)) if k != x and ep.states[end, k, 5] > 0 and of[k] >= 0]
    pairs = list(itertools.combinations(live, 2))
    if not pairs:
        return []
    pos = {k: i for i, k in enumerate(keep)}
    lo, hi = end, frames[-1]
    truth = lambda cols: {tuple(c[1:]) for c in cols if lo < c[0] <= hi}  # noqa: E731
    true_f, true_cf = truth(ep.info["collisions"]), truth(sim.collisions)
    idx = [(pos[of[i]], pos[of[j]]) for i, j in pairs]
    cf_idx = pairs if m is None else [(m[a], m[b]) for a, b in idx]
    reads = {
        "pred_cf": min_distances(probe(pred_cf), idx) < contact,
        "pred_f": min_distances(probe(pred_f), idx) < contact,
        "encoder_cf": min_distances(probe(z_cf[frames]), cf_idx) < contact,
    }
    return [
        {
            "pair": list(p),
            "true_cf": p in true_cf,
            "true_f": p in true_f,
            **{k: bool(v[n]) for k, v in reads.items()},
        }
        for n, p in enumerate(pairs)
    ]


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if not math.isnan(r[key])]
    return float(np.mean(vals)) if vals else math.nan


def summarise(rows: list[dict]) -> dict[str, float]:
    """Flat ``cf/...`` metrics from per-intervention rows (module doc)."""
    col = [r for r in rows if r["kind"] == "collider"]
    ctl = [r for r in rows if r["kind"] == "control"]
    out = {
        "cf/n_interventions": float(len(col)),
        "cf/n_controls": float(len(ctl)),
        "cf/slot_error_after_contact": _mean(col, "cf"),
        "cf/effect": _mean(col, "effect"),
    }
    for key in ("factual", "ignore"):
        out[f"cf/slot_error_{key}"] = _mean(col, key)
    for key in ("cf", "factual", "ignore"):
        name = "after_contact" if key == "cf" else key
        out[f"cf/slot_error_affected_{name}"] = _mean(col, f"{key}_affected")
    out["cf/control/slot_error"] = _mean(ctl, "cf")
    out["cf/control/slot_error_factual"] = _mean(ctl, "factual")
    gaps = [abs(r["cf"] - r["factual"]) for r in ctl]
    out["cf/control/gap"] = float(np.mean(gaps)) if gaps else math.nan
    pairs = [p for r in col for p in r.get("pairs", [])]
    changed = [p for p in pairs if p["true_cf"] != p["true_f"]]
    acc = lambda ps, a, b: float(np.mean([p[a] == p[b] for p in ps])) if ps else math.nan  # noqa: E731
    out.update(
        {
            "cf/collide/n_pairs": float(len(pairs)),
            "cf/collide/n_changed": float(len(changed)),
            "cf/collide/acc": acc(pairs, "pred_cf", "true_cf"),
            "cf/collide/acc_changed": acc(changed, "pred_cf", "true_cf"),
            "cf/collide/acc_factual": acc(pairs, "pred_f", "true_f"),
            "cf/collide/acc_encoder": acc(pairs, "encoder_cf", "true_cf"),
            "cf/collide/acc_no_change": acc(pairs, "true_f", "true_cf"),
        }
    )
    return out


def counterfactual_stage(
    cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
) -> dict[str, float]:
    """Run the intervention test on val episodes (module doc). Writes ``cf_interventions.json``
    (one row per removal) and ``videos`` removal GIFs (``videos/``) into ``ctx.out_dir``;
    returns ``cf/...`` metrics, with ``cf/contact_distance`` and ``cf/seconds``."""
    opts = parse_options("counterfactual", CounterfactualOptions, ctx.options)
    require_collide(cfg, "counterfactual")
    if ctx.encoder is None:
        raise ValueError(
            "stages.counterfactual needs StageContext.encoder (the spec that made "
            "data.slot_dir) to encode the re-simulated scenes"
        )
    from cjepa.encoders import load_encoder

    t0 = time.perf_counter()
    f = cfg.data.frameskip
    steps = math.ceil(opts.horizon / f)
    enc = load_encoder(ctx.encoder, device=ctx.device)
    model = model_from_state(cfg, state, ctx.device)
    val = load_split(cfg, ctx.episode_dir, "val", limit=opts.max_episodes or None)
    train = load_split(cfg, ctx.episode_dir, "train")
    align = al.for_stage("counterfactual", opts.alignment, cfg, ctx, al.CF_DROPS)  # module doc
    val, train = align.keep(val, "val"), align.views(train, "train")
    probe, contact = None, math.nan
    if train:
        probe = fit_probe(train, opts.ridge)
        contact = opts.contact_distance or calibrate_contact(probe, train, f * steps, f)
    rng = np.random.default_rng(ctx.seed)
    rows = []
    for ep in val:
        removals = choose_removals(ep, cfg.data.history, f, steps, opts.per_episode, rng)
        removals, objects = align.removals(ep, removals, probe is not None)
        if removals:
            rows += _episode_rows(model, ep, removals, enc, cfg, steps, probe, contact, objects)
    (ctx.out_dir / "cf_interventions.json").write_text(json.dumps(rows, indent=1))
    write_intervention_videos(cfg, model, val, rows, ctx, opts.videos, steps)
    out = summarise(rows)
    out["cf/contact_distance"] = float(contact)
    out.update(align.metrics("cf", ctx.out_dir / "cf_alignment.json"))
    out["cf/seconds"] = time.perf_counter() - t0
    return out


CF_METRICS = MetricFamily(
    "cf",
    metrics={
        "cf/slot_error_after_contact": MetricInfo(
            "min",
            (
                Reference(
                    "ignore the intervention",
                    "floor",
                    "control/ignore/cf/slot_error_after_contact",
                ),
                Reference("copy-last", "floor", "control/copy_last/cf/slot_error_after_contact"),
                Reference("true counterfactual", "ceiling", 0.0),
            ),
            "intervened rollout vs the re-simulated scene without the object (slot MSE)",
        ),
        "cf/collide/acc": MetricInfo(
            "max",
            (
                Reference("no change", "floor", "cf/collide/acc_no_change"),
                Reference(
                    "encoder on the true counterfactual", "ceiling", "cf/collide/acc_encoder"
                ),
            ),
            "'do Y and Z still collide' after removing X",
        ),
    },
    patterns=(
        *al.align_patterns("cf"),
        ("cf/slot_error*", "min"),
        ("cf/control/*", "min"),
        ("cf/effect", "min"),
        ("cf/collide/acc*", "max"),
    ),
    headline=(
        "cf/slot_error_after_contact",
        "cf/slot_error_ignore",
        "cf/effect",
        "cf/collide/acc",
        "cf/collide/acc_changed",
    ),
    what="rollouts after removing an object vs the re-simulated scene",
)
SPEC = StageSpec(counterfactual_stage, CounterfactualOptions, (CF_METRICS,))
