"""C-JEPA losses (SPEC section 6): L = w_h L_history + w_f (L_future + w_p L_proprio).

Both terms are plain mean squared errors against the frozen encoder's slots, detached: there is
no EMA target and nothing flows into the targets.
"""

from __future__ import annotations

import torch

from cjepa.config import HISTORY_FRAMES, LossConfig


def history_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, frames: str = "masked"
) -> torch.Tensor:
    """MSE over selected history cells (``LossConfig.history_frames``).

    Args:
        pred, target: (B, T_h, N, D).
        mask: (B, T_h, N) bool, True = hidden.
        frames: ``"masked"`` (the paper): the hidden cells only. ``"masked_with_anchor"`` (the
            official code, which scores every history frame of its masked objects): the hidden
            cells plus frame 0 of every slot hidden at some step of its sample.
            ``"all_anchors"``: the hidden cells plus frame 0 of every slot.

    Returns:
        Scalar: the mean over selected cells and features; exactly zero when no cell is selected
        (|M| = 0, the OC-JEPA baseline, under the first two selections).
    """
    if frames not in HISTORY_FRAMES:
        raise ValueError(f"history frames must be one of {list(HISTORY_FRAMES)}, got {frames!r}")
    cells = mask.clone()
    if frames == "all_anchors":
        cells[:, 0] = True
    elif frames == "masked_with_anchor":
        cells[:, 0] = mask[:, 1:].any(dim=1)  # (B, N): slots hidden at some t >= 1
    count = cells.sum()
    if count == 0:
        return pred.sum() * 0.0  # keeps the graph (and DDP's gradient hooks) intact
    sq = (pred - target.detach()).pow(2).mean(dim=-1)  # (B, T_h, N)
    return (sq * cells).sum() / count


def future_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over every slot of the future steps. pred, target: (B, T_p, N, D)."""
    return (pred - target.detach()).pow(2).mean()


def proprio_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the predicted proprio at the future steps.

    pred, target: (B, T_p, P) raw proprio, or embeddings (``proprio_target="embedding"``):
    (B, T_p, W) for the entity token, or per-slot (B, T_p, N, C) against (B, T_p, 1, C) for
    appended concat features (the target broadcast over slots, as the official code tiles it).
    """
    return (pred - target.detach()).pow(2).mean()


def cjepa_loss(
    pred_slots: torch.Tensor,
    slots: torch.Tensor,
    mask: torch.Tensor,
    cfg: LossConfig,
    *,
    pred_proprio: torch.Tensor | None = None,
    proprio: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted total and its terms.

    Args:
        pred_slots: (B, T_h + T_p, N, D) predictor output.
        slots: (B, T_h + T_p, N, D) encoder slots of the window (targets).
        mask: (B, T_h, N) history mask.
        pred_proprio, proprio: (B, T_h + T_p, ...) predicted proprio and its target (raw, or
            embeddings: see ``proprio_loss``), scored at the future steps when both given.

    Returns:
        ``{"loss", "history", "future", "proprio"}`` scalars (proprio is 0 when absent).
    """
    th = mask.shape[1]
    hist = history_loss(pred_slots[:, :th], slots[:, :th], mask, frames=cfg.history_frames)
    fut = future_loss(pred_slots[:, th:], slots[:, th:])
    prop = torch.zeros((), device=pred_slots.device)
    if pred_proprio is not None and proprio is not None:
        prop = proprio_loss(pred_proprio[:, th:], proprio[:, th:])
    total = cfg.history_weight * hist + cfg.future_weight * (fut + cfg.proprio_weight * prop)
    return {"loss": total, "history": hist, "future": fut, "proprio": prop}
