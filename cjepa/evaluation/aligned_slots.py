"""Learned slots in the collide stages that name objects, through slot-object alignment.

The counterfactual (intervention test and collision probe) and causal stages read slot k as
object k. That holds for the oracle encoder, whose slots are left exactly as they are; for a
learned encoder a stage builds a :class:`StageAlignment`: every episode it reads is aligned
per frame (``cjepa.evaluation.alignment``) from the encoder's slot masks on the episode's
frames and the simulator's instance masks, episodes below the quality thresholds are dropped,
and each object is read through its matched slot at the frame that anchors a window or a
removal (objects without a slot there are dropped too). The stage logs how much it dropped and
the alignment quality as ``<prefix>/align/...`` metrics and writes one record per episode.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cjepa.config import ExperimentConfig
from cjepa.data.shards import iter_episode_shard, read_shard_metadata
from cjepa.data.splits import list_shards
from cjepa.evaluation.alignment import (
    MASK_SOURCES,
    Alignment,
    align,
    object_slots,
    slot_labels,
)
from cjepa.evaluation.rollouts import EvalEpisode, slots_are_aligned
from cjepa.evaluation.stage import StageContext, check_choice

#: Dropped-item counters of the counterfactual stage (``cf/align/n_dropped_<name>``).
CF_DROPS = ("interventions", "controls", "pairs")
#: ... and of the causal stage: (window, hidden object) queries and (query, candidate) pairs.
CAUSAL_DROPS = ("queries", "pairs")


@dataclass
class AlignmentOptions:
    """``stages.<stage>.alignment``: used only on learned slots (oracle slots are aligned).

    min_iou: a slot-object pair below this mask IoU is no match. min_mean_iou, min_complete:
    an episode whose mean matched IoU, or share of frames with every visible object matched,
    is below these is dropped. masks: the slot masks (``decoder``: the decoder's alpha masks,
    which align better on ``cnn_collide.yaml``: complete frames 0.73 vs 0.64 at min_iou 0.5;
    ``attention``: slot attention). pixels: ``foreground`` (IoU over the objects'
    pixels: a slot's share of the background is ignored, as FG-ARI ignores it) or ``all``."""

    min_iou: float = 0.5
    min_mean_iou: float = 0.0
    min_complete: float = 0.0
    masks: str = "decoder"
    pixels: str = "foreground"


def check_alignment(name: str, opts: AlignmentOptions) -> None:
    """ValueErrors that name ``<name>.<field>`` (``name``: ``stages.<stage>.alignment``)."""
    if not 0.0 < opts.min_iou <= 1.0:
        raise ValueError(f"{name}.min_iou must be in (0, 1], got {opts.min_iou!r}")
    for field in ("min_mean_iou", "min_complete"):
        value = getattr(opts, field)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}.{field} must be in [0, 1], got {value!r}")
    check_choice(f"{name}.masks", opts.masks, MASK_SOURCES)
    check_choice(f"{name}.pixels", opts.pixels, ("foreground", "all"))


class StageAlignment:
    """Alignments of the episodes one stage run reads, and what it dropped for poor alignment.

    Args:
        drops: the names of the stage's dropped-item counters (``n_dropped_<name>``), logged
            even when zero.
    """

    def __init__(
        self,
        stage: str,
        opts: AlignmentOptions,
        cfg: ExperimentConfig,
        ctx: StageContext,
        drops: tuple[str, ...],
    ) -> None:
        if ctx.encoder is None:
            raise ValueError(
                f"stages.{stage} on learned slots needs StageContext.encoder (the checkpoint "
                f"that made data.slot_dir={cfg.data.slot_dir}) for its slot masks"
            )
        from cjepa.encoders import load_encoder

        self.encoder = load_encoder(ctx.encoder, device=ctx.device)
        made = read_shard_metadata(list_shards(cfg.data.slot_dir, "slots")[0])["encoder_hash"]
        if self.encoder.hash != made:
            raise ValueError(
                f"stages.{stage}: StageContext.encoder={ctx.encoder} (hash "
                f"{self.encoder.hash[:12]}) did not make data.slot_dir={cfg.data.slot_dir} "
                f"(hash {made[:12]})"
            )
        self.stage, self.opts, self.episode_dir = stage, opts, ctx.episode_dir
        self.by_id: dict[str, Alignment] = {}
        self.records: list[dict[str, Any]] = []
        self.dropped = dict.fromkeys(drops, 0)

    def _good(self, a: Alignment) -> bool:
        mean_ok = self.opts.min_mean_iou == 0.0 or a.mean_iou >= self.opts.min_mean_iou
        return mean_ok and a.complete >= self.opts.min_complete

    def keep(self, episodes: list[EvalEpisode], split: str) -> list[EvalEpisode]:
        """Align ``episodes`` (frames and masks from the episode shards) and return those of
        good enough quality, in order; every one gets a record."""
        want = {ep.episode_id: ep for ep in episodes}
        for path in list_shards(self.episode_dir, "episodes"):
            for data in iter_episode_shard(path):
                ep = want.get(data.episode_id)
                if ep is None:
                    continue
                if data.masks is None:
                    raise ValueError(f"{path}: episode {data.episode_id!r} has no instance "
                                     f"masks; stages.{self.stage} aligns learned slots on "
                                     "them")  # fmt: skip
                labels = slot_labels(self.encoder, data.frames, self.opts.masks)  # (T, H, W)
                n, k = self.encoder.n_slots, ep.states.shape[1]
                fg = self.opts.pixels == "foreground"
                self.by_id[ep.episode_id] = align(labels, data.masks, n, k, self.opts.min_iou, fg)
        kept = []
        for ep in episodes:
            a = self.by_id[ep.episode_id]
            good = self._good(a)
            self.records.append({"episode_id": ep.episode_id, "split": split, **a.record(),
                                 "kept": good})  # fmt: skip
            if good:
                kept.append(ep)
            else:
                del self.by_id[ep.episode_id]
        return kept

    def views(self, episodes: list[EvalEpisode], split: str) -> list[EvalEpisode]:
        """The kept ``episodes`` in object order (:func:`object_view`), for the probes."""
        return [object_view(ep, self.by_id[ep.episode_id]) for ep in self.keep(episodes, split)]

    def drop(self, what: str, n: int = 1) -> None:
        self.dropped[what] += n

    def slot_of(self, episode_id: str) -> np.ndarray:
        """(T, K) slot of each object per frame (-1: none) of a kept episode."""
        return self.by_id[episode_id].slot_of

    def removals(self, ep: EvalEpisode, removals: list, pairs: bool) -> tuple[list, np.ndarray]:
        return usable_removals(self, ep, removals, pairs)

    def window(self, w: dict[str, Any], episode_id: str, frames: list[int]) -> dict | None:
        return aligned_window(self, w, episode_id, frames)

    def metrics(self, prefix: str, path: Path) -> dict[str, float]:
        """``<prefix>/align/...``: quality over the val episodes read (mean of their mean
        matched IoU, mean share of complete frames), their count, and the dropped counts;
        writes the per-episode records (quality, split, kept) to ``path`` (JSON)."""
        path.write_text(json.dumps(self.records, indent=1))
        val = [r for r in self.records if r["split"] == "val"]
        ious = [r["mean_iou"] for r in val if not math.isnan(r["mean_iou"])]
        out = {
            f"{prefix}/align/mean_iou": float(np.mean(ious)) if ious else math.nan,
            f"{prefix}/align/complete": float(np.mean([r["complete"] for r in val])),
            f"{prefix}/align/n_episodes": float(len(val)),
            f"{prefix}/align/n_dropped_episodes": float(sum(not r["kept"] for r in val)),
        }
        train = [r for r in self.records if r["split"] == "train"]
        if train:
            out[f"{prefix}/align/n_dropped_train_episodes"] = float(
                sum(not r["kept"] for r in train)
            )
        out.update({f"{prefix}/align/n_dropped_{k}": float(v) for k, v in self.dropped.items()})
        return out


class OracleAlignment:
    """The oracle's slots are object-aligned: everything passes through unchanged."""

    def keep(self, episodes: list[EvalEpisode], split: str) -> list[EvalEpisode]:
        return episodes

    views = keep

    def removals(self, ep: EvalEpisode, removals: list, pairs: bool) -> tuple[list, None]:
        return removals, None

    def window(self, w: dict[str, Any], episode_id: str, frames: list[int]) -> dict[str, Any]:
        return w

    def metrics(self, prefix: str, path: Path) -> dict[str, float]:
        return {}


def for_stage(
    stage: str, opts: AlignmentOptions, cfg: ExperimentConfig, ctx: StageContext, drops
) -> StageAlignment | OracleAlignment:
    """:class:`OracleAlignment` for slots of an object-aligned (oracle) encoder, else a
    :class:`StageAlignment` (``drops``: its dropped-item counters)."""
    if slots_are_aligned(cfg):
        return OracleAlignment()
    return StageAlignment(stage, opts, cfg, ctx, drops)


def align_patterns(prefix: str) -> tuple[tuple[str, str], ...]:
    """Metric directions of ``<prefix>/align/...`` for the stage's ``MetricFamily``."""
    return ((f"{prefix}/align/n_dropped*", "min"), (f"{prefix}/align/*", "max"))


def object_view(ep: EvalEpisode, a: Alignment) -> EvalEpisode:
    """``ep`` with slots (T, K, D) in object order (``alignment.object_slots``) and objects
    without a slot at a frame marked not present there, for code that reads slot k as
    object k (the position probe and its contact calibration)."""
    states = ep.states.copy()
    states[a.slot_of < 0] = 0.0  # absent rows are all zeros (collide convention)
    return replace(ep, states=states, slots=object_slots(ep.slots, a))


def usable_removals(
    sa: StageAlignment, ep: EvalEpisode, removals: list, pairs: bool
) -> tuple[list, np.ndarray]:
    """(removals whose object has a slot at the window's last frame, the episode's (T, K) slot
    of each object); counts the dropped removals and, with ``pairs``, the collision pairs of
    present objects lost because one of them, or the removal, has no slot there."""
    slot_of = sa.slot_of(ep.episode_id)
    kept = []
    for x, end, kind in removals:
        ok = slot_of[end, x] >= 0
        if ok:
            kept.append((x, end, kind))
        else:
            sa.drop("interventions" if kind == "collider" else "controls")
        if pairs and kind == "collider":
            present = [k for k in range(len(slot_of[end])) if k != x and ep.states[end, k, 5] > 0]
            live = [k for k in present if slot_of[end, k] >= 0] if ok else []
            sa.drop("pairs", _n_pairs(len(present)) - _n_pairs(len(live)))
    return kept, slot_of


def _n_pairs(n: int) -> int:
    return n * (n - 1) // 2


def aligned_window(
    sa: StageAlignment, w: dict[str, Any], episode_id: str, frames: list[int]
) -> dict[str, Any] | None:
    """A causal window read through the alignment: each object is its slot at the first of the
    window's ``frames`` where it has one; ``slot`` (the hidden object's) and ``cand_slots`` are
    added. A candidate without a slot, or whose slot another object of the window already
    holds, is dropped (counted as ``pairs``), and the whole query (``queries``) when the hidden
    object has no slot or no candidate is left."""
    seen = sa.slot_of(episode_id)[frames]  # (T_w, K)

    def first(j: int) -> int:
        hits = seen[:, j][seen[:, j] >= 0]
        return int(hits[0]) if hits.size else -1

    hidden, keep, taken = first(w["k"]), [], set()
    for i, j in enumerate(w["cand"]):
        slot = first(j)
        if hidden >= 0 and slot >= 0 and slot != hidden and slot not in taken:
            keep.append(i)
            taken.add(slot)
    sa.drop("pairs", len(w["cand"]) - len(keep))
    if not keep:
        sa.drop("queries")
        return None
    out = {key: [w[key][i] for i in keep] for key in ("cand", "labels", "proximity")}
    cand_slots = [first(j) for j in out["cand"]]
    return {**w, **out, "slot": hidden, "cand_slots": cand_slots}
