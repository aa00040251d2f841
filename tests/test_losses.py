import pytest
import torch

from cjepa.config import HISTORY_FRAMES, LossConfig
from cjepa.losses import cjepa_loss, history_loss, proprio_loss


def slow_history(pred, target, mask, frames):
    total, count = 0.0, 0
    b, t, n, d = pred.shape
    for i in range(b):
        for j in range(t):
            for k in range(n):
                masked_object = bool(mask[i, 1:, k].any())
                anchor = j == 0 and (
                    frames == "all_anchors" or (frames == "masked_with_anchor" and masked_object)
                )
                if mask[i, j, k] or anchor:
                    total += sum(
                        (pred[i, j, k, c] - target[i, j, k, c]).item() ** 2 for c in range(d)
                    )
                    count += d
    return total / count if count else 0.0


def slow_future(pred, target):
    b, t, n, d = pred.shape
    total = 0.0
    for i in range(b):
        for j in range(t):
            for k in range(n):
                total += sum((pred[i, j, k, c] - target[i, j, k, c]).item() ** 2 for c in range(d))
    return total / (b * t * n * d)


@pytest.mark.parametrize("frames", HISTORY_FRAMES)
def test_loss_matches_slow_reference(frames):
    g = torch.Generator().manual_seed(0)
    th, tp = 4, 3
    pred = torch.randn(3, th + tp, 5, 6, generator=g)
    target = torch.randn(3, th + tp, 5, 6, generator=g)
    mask = torch.rand(3, th, 5, generator=g) < 0.4
    mask[:, 0] = False
    pred_p, prop = torch.randn(3, th + tp, 2, generator=g), torch.randn(3, th + tp, 2, generator=g)
    cfg = LossConfig(
        history_weight=0.7,
        future_weight=1.3,
        proprio_weight=0.5,
        history_frames=frames,
    )
    out = cjepa_loss(pred, target, mask, cfg, pred_proprio=pred_p, proprio=prop)
    hist = slow_history(pred[:, :th], target[:, :th], mask, frames)
    fut = slow_future(pred[:, th:], target[:, th:])
    p = ((pred_p[:, th:] - prop[:, th:]) ** 2).mean().item()
    assert out["history"].item() == pytest.approx(hist, rel=1e-5)
    assert out["future"].item() == pytest.approx(fut, rel=1e-5)
    assert out["proprio"].item() == pytest.approx(p, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.7 * hist + 1.3 * (fut + 0.5 * p), rel=1e-5)


def test_history_loss_is_zero_without_masked_cells_and_keeps_graph():
    pred = torch.randn(2, 4, 3, 5, requires_grad=True)
    loss = history_loss(pred, torch.randn(2, 4, 3, 5), torch.zeros(2, 4, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None and (pred.grad == 0).all()


def test_targets_are_detached():
    target = torch.randn(2, 5, 3, 4, requires_grad=True)
    pred = torch.randn(2, 5, 3, 4, requires_grad=True)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[:, 1:, 0] = True
    cjepa_loss(pred, target, mask, LossConfig())["loss"].backward()
    assert target.grad is None and pred.grad is not None


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ("masked", (12**2 + 22**2) / 2),  # object 1 at t = 1, 2
        ("masked_with_anchor", (2**2 + 12**2 + 22**2) / 3),  # ... and its frame 0
        ("all_anchors", (1**2 + 2**2 + 3**2 + 12**2 + 22**2) / 5),  # ... and every frame 0
    ],
)
def test_history_frames_hand_checked(frames, expected):
    # target[0, t, n] = 10 t + n + 1, prediction 0: each cell's squared error is its value^2.
    target = (10 * torch.arange(3).view(3, 1) + torch.arange(3).view(1, 3) + 1).float()
    target = target.view(1, 3, 3, 1)
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 1:, 1] = True
    loss = history_loss(torch.zeros_like(target), target, mask, frames=frames)
    assert loss.item() == pytest.approx(expected)


def test_masked_with_anchor_scores_no_anchor_without_masked_objects():
    pred = torch.randn(2, 4, 3, 5, requires_grad=True)
    none = torch.zeros(2, 4, 3, dtype=torch.bool)
    assert history_loss(pred, torch.randn(2, 4, 3, 5), none, frames="masked_with_anchor") == 0


def test_old_anchor_option_maps_to_all_anchors():
    assert LossConfig(history_loss_includes_anchor=True).history_frames == "all_anchors"
    assert LossConfig(history_frames="all_anchors").history_loss_includes_anchor is True
    assert LossConfig(history_frames="masked_with_anchor").history_loss_includes_anchor is False
    with pytest.raises(ValueError, match=r"loss\.history_loss_includes_anchor"):
        LossConfig(history_loss_includes_anchor=True, history_frames="masked_with_anchor")
    with pytest.raises(ValueError, match=r"loss\.history_frames"):
        LossConfig(history_frames="anchors")


def test_per_slot_proprio_embedding_loss_tiles_the_target():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 1, 4, 3, generator=g)  # (B, T_p, N, C)
    target = torch.randn(2, 1, 1, 3, generator=g)  # one embedding per frame
    tiled = target.expand(2, 1, 4, 3)
    assert proprio_loss(pred, target).item() == pytest.approx(((pred - tiled) ** 2).mean().item())
