"""How well a learned slot encoder separates a world's objects, on that world's own episodes.

The paper names encoder quality as what caps C-JEPA; a table on learned slots is read with it.
:func:`encoder_quality` scores a video slot checkpoint on the held-out episodes of an episode
directory (the split the predictor is validated on): FG-ARI of its slot-attention and decoder
masks (``cjepa.encoders.train.evaluate_fg_ari``, as ``pretrain_encoder.py`` reports it) and
the slot-object alignment the object-naming stages read through
(``cjepa.evaluation.alignment``): mean matched IoU, the share of frames at which every visible
object has a slot, and the share of visible object-frames without one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cjepa.data.shards import iter_episode_shard
from cjepa.data.splits import list_shards, split_of

#: The metrics :func:`encoder_quality` returns (MLflow keys on the sweep's parent run).
QUALITY_KEYS = (
    "encoder/fg_ari",
    "encoder/fg_ari_decoder",
    "encoder/fg_ari_video",
    "encoder/align_mean_iou",
    "encoder/align_complete",
    "encoder/align_missing",
)


def held_out_episodes(episode_dir: str | Path, val_fraction: float, limit: int) -> list[Any]:
    """The first ``limit`` episodes of the val split of ``episode_dir`` (stored order) that
    have instance masks."""
    found = []
    for path in list_shards(episode_dir, "episodes"):
        for ep in iter_episode_shard(path):
            if split_of(ep.episode_id, val_fraction) == "val" and ep.masks is not None:
                found.append(ep)
                if len(found) == limit:
                    return found
    return found


def encoder_quality(
    encoder: str | Path,
    episode_dir: str | Path,
    *,
    val_fraction: float = 0.15,
    episodes: int = 8,
    frames: int = 32,
    min_iou: float = 0.5,
    masks: str = "decoder",
) -> dict[str, float]:
    """:data:`QUALITY_KEYS` of the checkpoint ``encoder`` on up to ``episodes`` held-out
    episodes of ``episode_dir`` (their first ``frames`` frames), plus
    ``encoder/quality_episodes``. Empty when there is nothing to score: an encoder without slot
    masks (the patch baseline) or no held-out episode with instance masks (Push-T)."""
    import torch

    from cjepa.encoders import load_encoder
    from cjepa.encoders.train import evaluate_fg_ari
    from cjepa.encoders.video import VideoSlotModel
    from cjepa.evaluation.alignment import align, slot_labels

    enc = load_encoder(str(encoder))
    eps = held_out_episodes(episode_dir, val_fraction, episodes)
    if not eps or not isinstance(getattr(enc, "model", None), VideoSlotModel):
        return {}
    with torch.inference_mode():
        fg = evaluate_fg_ari(enc.model, eps, frames, enc.device)
    ious, complete, missing, visible = [], [], 0, 0
    for ep in eps:
        labels = slot_labels(enc, ep.frames[:frames], masks)
        a = align(labels, ep.masks[:frames], enc.n_slots, ep.states.shape[1], min_iou)
        if not math.isnan(a.mean_iou):
            ious.append(a.mean_iou)
        complete.append(a.complete)
        missing, visible = missing + a.n_missing, visible + a.n_visible
    return {
        "encoder/fg_ari": fg["fg_ari"],
        "encoder/fg_ari_decoder": fg["fg_ari_decoder"],
        "encoder/fg_ari_video": fg["fg_ari_video"],
        "encoder/align_mean_iou": float(np.mean(ious)) if ious else math.nan,
        "encoder/align_complete": float(np.mean(complete)),
        "encoder/align_missing": missing / visible if visible else math.nan,
        "encoder/quality_episodes": float(len(eps)),
    }


def quality_line(encoder: str, quality: dict[str, float], min_iou: float = 0.5) -> str:
    """One line for the ablation table: the encoder and its :func:`encoder_quality`."""
    q = quality
    return (
        f"Encoder: {encoder}; on {int(q['encoder/quality_episodes'])} held-out episodes "
        f"FG-ARI {q['encoder/fg_ari']:.3f} (decoder masks {q['encoder/fg_ari_decoder']:.3f}); "
        f"slot-object alignment (IoU >= {min_iou:g}): mean IoU {q['encoder/align_mean_iou']:.3f}, "
        f"every object matched in {q['encoder/align_complete']:.1%} of frames, "
        f"{q['encoder/align_missing']:.1%} of visible object-frames without a slot."
    )
