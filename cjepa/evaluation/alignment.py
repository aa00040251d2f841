"""Slot-object alignment: which slot of a learned encoder holds which ground-truth object.

Shape legend (``cjepa/types.py``): T frames, N slots, K objects, D slot dim, H x W pixels.

An oracle encoder's slot k is object k by construction; a learned encoder's slots are
exchangeable, so the evaluation stages that name objects (the intervention test, its collision
probe, causal validation) first match slots to objects. Per frame:

1. slot masks: every pixel goes to its argmax slot (the encoder's slot-attention masks, or its
   decoder's alpha masks, upsampled to the frame as FG-ARI does, ``cjepa.encoders.metrics``);
2. object masks: the simulator's instance masks (0 background, k + 1 for object k); object k is
   *visible* at a frame when it owns at least one pixel (a present but fully hidden object
   cannot be matched from pixels and is not counted as missing);
3. IoU matrix (N, K), by default over the foreground (a slot's mask is its pixels on objects:
   slot encoders share the background out among all slots, as FG-ARI, which ignores it,
   allows; over all pixels a slot that holds exactly one object still scores low IoU, e.g. a
   median best IoU of 0.13 against 0.96 over the foreground for ``cnn_collide.yaml`` at FG-ARI
   0.81), entries below ``min_iou`` set to 0, then the Hungarian algorithm
   (``scipy.optimize.linear_sum_assignment``, maximising the summed IoU); a matched pair whose
   IoU is below ``min_iou`` is no match. Slots left over are background or empty; a visible
   object left over is *missing* at that frame.

An episode's quality: ``mean_iou`` (mean IoU over its matched object-frames) and ``complete``
(the share of frames at which every visible object has a slot). :func:`object_slots` gathers a
learned episode's slots into object order for the probes that read slot k as object k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

MASK_SOURCES = ("attention", "decoder")


def iou_matrix(
    pred: np.ndarray, true: np.ndarray, n_slots: int, n_objects: int, foreground: bool = False
) -> np.ndarray:
    """IoU of every slot mask with every object mask, per frame.

    Args:
        pred: (T, H, W) integer slot labels in [0, N).
        true: (T, H, W) integer instance labels: 0 background, k + 1 for object k < K.
        foreground: count only a slot's pixels on objects (its background pixels are ignored).

    Returns:
        (T, N, K) float64 IoU (0 where both masks are empty).
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(f"slot labels {pred.shape} and instance masks {true.shape} must be "
                         "the same (T, H, W)")  # fmt: skip
    if pred.size and (pred.min() < 0 or pred.max() >= n_slots):
        raise ValueError(f"slot labels must lie in [0, {n_slots}), got [{pred.min()}, "
                         f"{pred.max()}]")  # fmt: skip
    if true.size and (true.min() < 0 or true.max() > n_objects):
        raise ValueError(f"instance mask labels must lie in [0, {n_objects}] (K={n_objects} "
                         f"objects), got [{true.min()}, {true.max()}]")  # fmt: skip
    t, c = pred.shape[0], n_objects + 1
    flat = (np.arange(t)[:, None] * n_slots + pred.reshape(t, -1)) * c + true.reshape(t, -1)
    table = np.bincount(flat.ravel(), minlength=t * n_slots * c).reshape(t, n_slots, c)
    inter = table[:, :, 1:].astype(np.float64)  # (T, N, K)
    slot_area = table[:, :, 1:].sum(2) if foreground else table.sum(2)  # (T, N)
    union = slot_area[:, :, None] + table.sum(1)[:, None, 1:] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_frame(iou: np.ndarray, min_iou: float) -> np.ndarray:
    """(K,) slot matched to each object (-1: none) from one frame's (N, K) IoU matrix."""
    if not 0.0 < min_iou <= 1.0:
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    gain = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    out = np.full(iou.shape[1], -1, dtype=np.int64)
    ok = gain[rows, cols] > 0
    out[cols[ok]] = rows[ok]
    return out


@dataclass
class Alignment:
    """Per-frame slot-object matches of one episode.

    Attributes:
        slot_of: (T, K) int64, the slot matched to object k at frame t (-1: none).
        iou: (T, K) float64 IoU of that match (NaN: none).
        visible: (T, K) bool, object k owns a pixel of frame t.
    """

    slot_of: np.ndarray
    iou: np.ndarray
    visible: np.ndarray

    @property
    def n_visible(self) -> int:
        return int(self.visible.sum())

    @property
    def n_missing(self) -> int:
        """Visible object-frames without a slot."""
        return int((self.visible & (self.slot_of < 0)).sum())

    @property
    def mean_iou(self) -> float:
        """Mean IoU over matched object-frames (NaN when nothing matched)."""
        matched = self.iou[self.slot_of >= 0]
        return float(matched.mean()) if matched.size else math.nan

    @property
    def complete(self) -> float:
        """Share of frames at which every visible object has a slot."""
        return float((~(self.visible & (self.slot_of < 0))).all(axis=1).mean())

    def record(self) -> dict[str, Any]:
        """The episode's quality as plain JSON values."""
        return {"frames": int(self.slot_of.shape[0]), "mean_iou": self.mean_iou,
                "complete": self.complete, "n_visible": self.n_visible,
                "n_missing": self.n_missing}  # fmt: skip


def align(
    pred: np.ndarray,
    true: np.ndarray,
    n_slots: int,
    n_objects: int,
    min_iou: float,
    foreground: bool = True,
) -> Alignment:
    """:class:`Alignment` of slot labels (T, H, W) to instance masks (T, H, W) (module doc);
    ``foreground``: IoU over the objects' pixels only (:func:`iou_matrix`)."""
    iou = iou_matrix(pred, true, n_slots, n_objects, foreground)  # (T, N, K)
    t = len(iou)
    visible = np.stack([np.bincount(m.ravel(), minlength=n_objects + 1)[1:] > 0 for m in true])
    slot_of = np.stack([match_frame(f, min_iou) for f in iou]).reshape(t, n_objects)
    frames, objects = np.nonzero(slot_of >= 0)
    matched = np.full(slot_of.shape, np.nan)
    matched[frames, objects] = iou[frames, slot_of[frames, objects], objects]
    return Alignment(slot_of, matched, visible.reshape(t, n_objects))


def filled(slot_of: np.ndarray) -> np.ndarray:
    """(T, K) matches with gaps filled from the last matched frame (before the first match:
    the first); -1 only for objects never matched."""
    out = slot_of.copy()
    for k in range(out.shape[1]):
        hits = np.flatnonzero(out[:, k] >= 0)
        if hits.size:
            last = np.maximum.accumulate(np.where(out[:, k] >= 0, np.arange(len(out)), -1))
            out[:, k] = out[np.maximum(last, hits[0]), k]
    return out


def object_slots(slots: np.ndarray, alignment: Alignment) -> np.ndarray:
    """(T, K, D) slots in object order: object k's matched slot at each frame (gaps filled by
    :func:`filled`; zeros for an object never matched). ``slots`` (T, N, D)."""
    idx = filled(alignment.slot_of)  # (T, K)
    out = np.take_along_axis(slots, np.maximum(idx, 0)[:, :, None], axis=1)
    out[idx < 0] = 0.0
    return out


@torch.no_grad()
def slot_labels(encoder: Any, frames: np.ndarray, source: str, time_chunk: int = 16) -> np.ndarray:
    """(T, H, W) int64 argmax-slot label per pixel of uint8 ``frames`` (T, H, W, 3) from a
    ``CheckpointEncoder`` video slot model: its slot-attention masks (``attention``) or its
    decoder's alpha masks (``decoder``), upsampled to the frames."""
    from cjepa.encoders.base import CheckpointEncoder
    from cjepa.encoders.metrics import upsample_masks
    from cjepa.encoders.video import VideoSlotModel

    if source not in MASK_SOURCES:
        raise ValueError(f"slot mask source must be one of {list(MASK_SOURCES)}, got {source!r}")
    if not (isinstance(encoder, CheckpointEncoder) and isinstance(encoder.model, VideoSlotModel)):
        raise ValueError(
            f"slot-object alignment needs a video slot encoder with slot masks, got "
            f"{type(getattr(encoder, 'model', encoder)).__name__}"
        )
    size = tuple(frames.shape[1:3])
    slots, attn = encoder.encode_video(frames[None], masks=True)  # (1, T, N, D), (1, T, N, M)
    if source == "attention":
        grid = (encoder.model.grid,) * 2
        return upsample_masks(torch.from_numpy(attn[0]), grid, size).numpy().astype(np.int64)
    out = []
    for t0 in range(0, slots.shape[1], time_chunk):
        chunk = torch.from_numpy(slots[0, t0 : t0 + time_chunk]).to(encoder.device)
        _, alpha = encoder.model.decoder(chunk)  # (t, N, S * S or P)
        side = math.isqrt(alpha.shape[-1])
        out.append(upsample_masks(alpha.float().cpu(), (side, side), size).numpy())
    return np.concatenate(out).astype(np.int64)
