"""FG-ARI against a slow pair-counting reference and known cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cjepa.encoders.metrics import ari, fg_ari, mean_fg_ari, upsample_masks


def slow_ari(true: list[int], pred: list[int]) -> float:
    """ARI from pair counts (a: together in both, b/c: together in one only, d: apart in both)."""
    a = b = c = d = 0
    for i, j in itertools.combinations(range(len(true)), 2):
        same_t, same_p = true[i] == true[j], pred[i] == pred[j]
        a += same_t and same_p
        b += same_t and not same_p
        c += same_p and not same_t
        d += not same_t and not same_p
    denom = (a + b) * (b + d) + (a + c) * (c + d)
    return 1.0 if denom == 0 else 2.0 * (a * d - b * c) / denom


@pytest.mark.parametrize("seed", range(20))
def test_matches_pair_counting_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    true = rng.integers(0, int(rng.integers(1, 5)), n)
    pred = rng.integers(0, int(rng.integers(1, 5)), n)
    assert ari(true, pred) == pytest.approx(slow_ari(true.tolist(), pred.tolist()), abs=1e-12)


def test_known_cases():
    x = np.array([0, 0, 1, 1, 2, 2, 2])
    assert ari(x, x) == pytest.approx(1.0)
    assert ari(x, np.array([5, 5, 9, 9, 1, 1, 1])) == pytest.approx(1.0)  # relabelled
    assert ari(np.zeros(5, int), np.zeros(5, int)) == 1.0  # one cluster each: perfect
    assert ari(x, np.array([0, 1, 0, 1, 0, 1, 0])) < 0.1
    rng = np.random.default_rng(0)
    big = rng.integers(0, 5, 20000)
    assert abs(ari(big, rng.integers(0, 5, 20000))) < 0.01  # independent -> ~0


def test_background_is_ignored_and_soft_masks_are_argmaxed():
    true = np.array([[0, 0, 0, 1, 1, 2, 2]])
    # Pred disagrees only on background pixels: still perfect.
    pred = np.array([[3, 1, 2, 0, 0, 1, 1]])
    assert fg_ari(true, pred)[0] == pytest.approx(1.0)
    soft = np.eye(4)[pred[0]].T[None]  # (1, N=4, P)
    assert fg_ari(true, soft)[0] == pytest.approx(1.0)
    merged = np.array([[0, 0, 0, 1, 1, 1, 1]])  # two objects in one slot
    assert fg_ari(true, merged)[0] == pytest.approx(0.0)


def test_no_foreground_is_nan_and_skipped():
    true = np.zeros((2, 4, 4), int)
    true[1, :2] = 1
    true[1, 2:] = 2
    pred = true.copy()
    scores = fg_ari(true, pred)
    assert np.isnan(scores[0]) and scores[1] == pytest.approx(1.0)
    assert mean_fg_ari(true, pred) == pytest.approx(1.0)


def test_upsample_masks():
    masks = torch.zeros(2, 3, 4)  # (B, N, h * w) on a 2x2 grid
    masks[:, 0, :2] = 1  # top row -> slot 0
    masks[:, 2, 2:] = 1  # bottom row -> slot 2
    labels = upsample_masks(masks, (2, 2), (4, 4))
    assert labels.shape == (2, 4, 4)
    assert (labels[:, :2] == 0).all() and (labels[:, 2:] == 2).all()
