"""Dynamics metrics on hand-made windows: present-only cells, the interaction split, the
constant-velocity baseline, and the trivial predictors that serve as floors."""

import math

import numpy as np
import pytest
import torch

from cjepa.config import ExperimentConfig, from_dict
from cjepa.data.windows import SlotWindows
from cjepa.evaluation.baselines import build_baseline
from cjepa.evaluation.dynamics import (
    DynamicsScore,
    baselines,
    episode_labels,
    labels_for,
    score_windows,
    window_cells,
)


def _states(present: np.ndarray) -> np.ndarray:
    """(L, K, 6) states with the given (L, K) present flags."""
    s = np.zeros((*present.shape, 6), np.float32)
    s[..., 5] = present
    return s


def test_present_cells_need_last_two_history_frames_and_target():
    present = np.ones((8, 2), bool)
    present[5, 0] = False  # object 0 absent at frame 5: the target of future step 1 below
    present[1, 1] = False  # object 1 absent at frame 1: the second-to-last history frame
    labels = episode_labels(_states(present), [], n_slots=3)
    frames = torch.tensor([[0, 1, 2, 3, 4, 5]])  # history 3 (0, 1, 2), future 3, 4, 5
    p, inter = window_cells(labels, frames, history=3)
    assert p.shape == (1, 3, 3)
    assert p[0, :, 0].tolist() == [True, True, False]
    assert p[0, :, 1].tolist() == [False, False, False]
    assert not p[0, :, 2].any()  # slot without an object (background) is never present
    assert not inter.any()


def test_interaction_cells_start_after_the_last_seen_frame():
    present = np.ones((10, 3), bool)
    # collisions: (frame, i, j); one before the window's last history frame (seen), one after
    labels = episode_labels(_states(present), [(1, 0, 1), (4, 1, 2)], n_slots=3)
    frames = torch.tensor([[0, 1, 2, 3, 4, 5]])  # history 3: last seen frame 2
    _, inter = window_cells(labels, frames, history=3)
    # object 1 and 2 touch at frame 4 = future step 1 (frame 4) and stays flagged at step 2
    assert inter[0, :, 0].tolist() == [False, False, False]
    assert inter[0, :, 1].tolist() == [False, True, True]
    assert inter[0, :, 2].tolist() == [False, True, True]


def test_constant_velocity_is_exact_on_straight_lines():
    t = torch.arange(6, dtype=torch.float64).view(1, 6, 1, 1)
    slots = 0.3 + 0.1 * t * torch.ones(1, 6, 2, 4, dtype=torch.float64)  # linear in time
    copy, linear = baselines(slots, history=4)
    assert torch.allclose(linear, slots[:, 4:])
    assert torch.allclose(copy, slots[:, 3:4].expand(-1, 2, -1, -1))
    score = DynamicsScore()
    present = torch.ones(1, 2, 2, dtype=torch.bool)
    score.add(slots[:, 4:], slots, present, torch.zeros_like(present))
    r = score.result()
    assert r["linear_present"] == pytest.approx(0.0, abs=1e-20)
    assert r["future_present"] == 0.0
    assert r["copy_last_present"] == pytest.approx(np.mean([0.01, 0.04]))
    assert math.isnan(r["future_interaction"])  # no interaction cell: undefined, not zero


def test_score_masks_absent_cells():
    slots = torch.zeros(1, 6, 2, 1)
    slots[:, 4:, 1] = 10.0  # slot 1 "enters" in the future: a jump nobody can predict
    present = torch.tensor([[[True, False], [True, False]]])
    score = DynamicsScore()
    score.add(torch.zeros(1, 2, 2, 1), slots, present, torch.zeros_like(present))
    r = score.result()
    assert r["copy_last_present"] == 0.0
    assert r["copy_last_all"] == pytest.approx(50.0)


def _cfg() -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "data": {"source": "synthetic", "synthetic": {"n_objects": 3}, "n_slots": 3,
                     "slot_dim": 4, "history": 3, "n_future": 2},
            "predictor": {"width": 8, "depth": 1, "heads": 2, "head_dim": 4, "mlp_dim": 8},
        },
    )  # fmt: skip


def test_baselines_match_the_metric_baselines_and_zeros_is_worst():
    g = torch.Generator().manual_seed(0)
    eps = [torch.randn(12, 3, 4, generator=g).cumsum(0) for _ in range(3)]  # random walks
    windows = SlotWindows(eps, history=3, n_future=2, frameskip=1)
    present = np.ones((12, 3), bool)
    labels = labels_for(
        [type("E", (), {"states": _states(present), "info": {"collisions": [(6, 0, 1)]}})()] * 3, 3
    )
    cfg = _cfg()
    res = {
        k: score_windows(build_baseline(k, cfg), windows, labels)
        for k in ("copy_last", "linear", "zeros")
    }
    for cells in ("present", "interaction", "free", "all"):
        assert res["copy_last"][f"future_{cells}"] == pytest.approx(
            res["copy_last"][f"copy_last_{cells}"]
        )
        assert res["linear"][f"future_{cells}"] == pytest.approx(res["linear"][f"linear_{cells}"])
        zero = res["zeros"][f"future_{cells}"]
        assert zero > res["zeros"][f"copy_last_{cells}"] and zero > res["zeros"][f"linear_{cells}"]
    assert res["zeros"]["cells_interaction"] > 0


def test_baseline_attention_is_uniform_and_rollout_works():
    cfg = _cfg()
    m = build_baseline("copy_last", cfg)
    x = torch.randn(2, 3, 3, 4)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[:, 1:, 1] = True  # object 1 hidden after the anchor: copy-last repeats frame 0
    out = m(x, mask, need_weights=True)
    future = out.slots[:, 3]  # (B, N, D), first future step
    assert torch.equal(future[:, 1], x[:, 0, 1])  # hidden object: its last visible slot
    assert torch.equal(future[:, [0, 2]], x[:, 2, [0, 2]])
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(2, 2, 15))
    roll, _ = m.rollout(x, 5)
    assert roll.shape == (2, 5, 3, 4) and torch.equal(roll[:, -1], x[:, -1])
    with pytest.raises(ValueError, match="baseline must be one of"):
        build_baseline("oracle", cfg)
