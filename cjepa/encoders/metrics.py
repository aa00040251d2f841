"""FG-ARI: the adjusted Rand index of predicted slot masks over foreground pixels only.

The standard SAVi / VideoSAUR metric (as in the multi_object_datasets segmentation metrics):
hard-assign each pixel to its argmax slot, drop pixels whose true label is background (0), and
compare the two partitions with ARI from the contingency table (Hubert & Arabie 1985):

    ARI = (sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E),
    E   = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2).

If both partitions are a single cluster the formula is 0/0 and the score is 1 (a perfect
match), as in the reference. Samples with fewer than two foreground pixels give NaN and are
skipped by ``mean_fg_ari``. For *video* FG-ARI flatten time into the pixel axis: a slot must
then keep its object over time to score well.

Shapes: B samples, P pixels (any trailing dims are flattened), N slots.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _comb2(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2.0


def ari(true: np.ndarray, pred: np.ndarray) -> float:
    """ARI of two integer labelings of the same points (1-D, equal length >= 2)."""
    _, t = np.unique(true, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    n = t.size
    table = np.bincount(t * (p.max() + 1) + p, minlength=(t.max() + 1) * (p.max() + 1))
    sum_ij = _comb2(table.astype(np.float64)).sum()
    sum_a = _comb2(np.bincount(t).astype(np.float64)).sum()
    sum_b = _comb2(np.bincount(p).astype(np.float64)).sum()
    expected = sum_a * sum_b / _comb2(float(n))
    denom = (sum_a + sum_b) / 2.0 - expected
    if denom == 0.0:  # both partitions trivial (one cluster each, or all singletons)
        return 1.0
    return float((sum_ij - expected) / denom)


def fg_ari(true_masks: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-sample FG-ARI.

    Args:
        true_masks: (B, ...) integer instance labels, 0 = background (ignored).
        pred: (B, ...) integer predicted labels of the same shape, or soft / one-hot masks
            (B, N, ...) that are argmax-ed over N.

    Returns:
        (B,) float64, NaN where a sample has fewer than two foreground pixels.
    """
    true_masks = np.asarray(true_masks)
    pred = np.asarray(pred)
    b = true_masks.shape[0]
    true_flat = true_masks.reshape(b, -1)
    if pred.ndim == true_masks.ndim + 1:
        pred = pred.reshape(b, pred.shape[1], -1).argmax(axis=1)
    pred_flat = pred.reshape(b, -1)
    if pred_flat.shape != true_flat.shape:
        raise ValueError(f"pred {pred.shape} does not match true masks {true_masks.shape}")
    out = np.full(b, np.nan)
    for i in range(b):
        fg = true_flat[i] != 0
        if fg.sum() >= 2:
            out[i] = ari(true_flat[i][fg], pred_flat[i][fg])
    return out


def mean_fg_ari(true_masks: np.ndarray, pred: np.ndarray) -> float:
    """Mean FG-ARI over samples that have foreground (NaN if none has)."""
    scores = fg_ari(true_masks, pred)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def upsample_masks(
    masks: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Soft masks (..., N, h * w) on an h x w grid -> hard labels (..., H, W): bilinear, argmax."""
    lead, n = masks.shape[:-2], masks.shape[-2]
    x = masks.reshape(-1, n, *grid).float()
    if tuple(grid) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.argmax(dim=1).reshape(*lead, *size)
