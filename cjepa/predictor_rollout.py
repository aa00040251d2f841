"""Autoregressive inference with a ``SlotPredictor``: a sliding window over predicted frames.

Shape legend: B batch, k observed frames, N slots, D slot dim, A action, P proprio, T_h history
window, T_p frames predicted per call. ``SlotPredictor.rollout`` calls ``rollout`` (SPEC
section 4, inference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from cjepa.predictor import PredictorOutput, SlotPredictor


def rollout(
    model: SlotPredictor,
    history: torch.Tensor,
    steps: int,
    *,
    actions: torch.Tensor | None = None,
    proprio: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Autoregressive prediction with a sliding window (SPEC section 4, inference).

    The full history is visible; each call predicts T_p frames, which are appended, and the
    window slides to the last T_h frames (to all frames while there are fewer, under
    ``short_history="right_align"``). The caller chooses train/eval mode (``model.rollout``
    runs under no_grad). Under ``proprio_target="embedding"`` predicted proprio embeddings are
    fed back as the next windows' proprio tokens (the official rollout stays in embedding
    space).

    Args:
        history: (B, k, N, D) observed slots, k = T_h (or 1..T_h with right_align).
        steps: number of future frames to predict.
        actions: (B, k + steps, A) when A > 0; padded with zeros past the end if the last
            call reaches beyond it.
        proprio: (B, k, P) observed proprio when P > 0.

    Returns:
        slots (B, steps, N, D) and the predicted proprio (B, steps, ...) when the model
        predicts it (see ``PredictorOutput.proprio``), else None.
    """
    actions, pseq = rollout_inputs(model, history, steps, actions, proprio)
    b, tp = history.shape[0], model.n_future
    seq, preds, ppreds, made = history, [], [], 0
    while made < steps:
        window = min(seq.shape[1], model.history)
        out = predict_window(model, seq, pseq, actions, window)
        new = out.slots[:, window:]  # (B, T_p, N, D)
        preds.append(new)
        seq = torch.cat([seq, new], dim=1)
        if model.proprio_dim:
            if out.proprio is not None:
                new_p = out.proprio[:, window:]
                ppreds.append(new_p)
            else:  # concat: future proprio unknown, enters as zeros as in training
                new_p = pseq.new_zeros(b, tp, model.proprio_dim)
            pseq = torch.cat([pseq, new_p], dim=1)
        made += tp
    slots_out = torch.cat(preds, dim=1)[:, :steps]
    proprio_out = torch.cat(ppreds, dim=1)[:, :steps] if ppreds else None
    return slots_out, proprio_out


def rollout_inputs(
    model: SlotPredictor,
    history: torch.Tensor,
    steps: int,
    actions: torch.Tensor | None,
    proprio: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Checked inputs: actions zero-padded to (B, k + steps + T_p, A), and the proprio
    sequence the windows read (raw (B, k, P), or its embedding under
    ``proprio_target="embedding"``, per slot for appended concat features)."""
    if steps < 1:
        raise ValueError(f"rollout steps must be >= 1, got {steps}")
    if history.ndim != 4:
        raise ValueError(f"history must be (B, T_h, N, D), got {tuple(history.shape)}")
    b, k, n, _ = history.shape
    if model.action_dim:
        if actions is None or actions.shape[:2] != (b, k + steps):
            got = None if actions is None else tuple(actions.shape)
            raise ValueError(f"rollout actions must be (B, T_h+steps={k + steps}, A), got {got}")
        actions = F.pad(actions, (0, 0, 0, k + steps + model.n_future - actions.shape[1]))
    pseq = proprio
    if model.embeds_proprio:
        if proprio is None or proprio.shape[:2] != (b, k):
            got = None if proprio is None else tuple(proprio.shape)
            raise ValueError(f"rollout proprio must be (B, T_h={k}, P), got {got}")
        pseq = model.proprio_space(proprio)  # (B, k, W) or (B, k, 1, C)
        if model.append:
            pseq = pseq.expand(b, k, n, -1)  # per-slot features once predictions arrive
    return actions, pseq


def predict_window(
    model: SlotPredictor,
    seq: torch.Tensor,
    pseq: torch.Tensor | None,
    actions: torch.Tensor | None,
    window: int,
) -> PredictorOutput:
    """One predictor call on the last ``window`` frames of seq (B, L, N, D), all visible."""
    b, length, n, _ = seq.shape
    start = length - window
    mask = torch.zeros(b, window, n, dtype=torch.bool, device=seq.device)
    window_actions = (
        actions[:, start : start + window + model.n_future] if model.action_dim else None
    )
    if model.embeds_proprio:
        return model(seq[:, start:], mask, actions=window_actions, proprio_tokens=pseq[:, start:])
    window_proprio = pseq[:, start:] if model.proprio_dim else None
    return model(seq[:, start:], mask, actions=window_actions, proprio=window_proprio)
