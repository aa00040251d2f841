import pytest
import torch

from cjepa.config import LossConfig
from cjepa.losses import cjepa_loss, history_loss


def slow_history(pred, target, mask, include_anchor):
    total, count = 0.0, 0
    b, t, n, d = pred.shape
    for i in range(b):
        for j in range(t):
            for k in range(n):
                if mask[i, j, k] or (include_anchor and j == 0):
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


@pytest.mark.parametrize("include_anchor", [False, True])
def test_loss_matches_slow_reference(include_anchor):
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
        history_loss_includes_anchor=include_anchor,
    )
    out = cjepa_loss(pred, target, mask, cfg, pred_proprio=pred_p, proprio=prop)
    hist = slow_history(pred[:, :th], target[:, :th], mask, include_anchor)
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
