"""Probes of whether the predictor uses the other objects (the point of object masking)."""

from __future__ import annotations

import torch

from cjepa.predictor import SlotPredictor
from cjepa.types import SlotBatch


@torch.no_grad()
def hidden_object_errors(
    model: SlotPredictor, batch: SlotBatch, hidden: int = 1, *, generator: torch.Generator
) -> dict[str, float]:
    """History MSE on ``hidden`` randomly chosen objects per sample, three ways.

    - ``with_context``: the other objects' histories are visible (what object masking trains).
    - ``all_anchors``: every object is hidden at t >= 1, so the model sees only frame 0 (the
      whole scene's initial state, from which a perfect physics model could still roll out).
    - ``own_anchor``: the hidden object alone (N = 1, the other objects removed from the input):
      the model's best guess from its own anchor alone.
    - ``copy_anchor``: no model, each hidden cell predicted as its object's frame-0 slot.

    ``with_context < own_anchor`` means the predictor recovers a hidden object from the
    objects around it, not only from its own anchor.

    Args:
        batch: ``slots`` (B, T_h + T_p, N, D), plus ``actions`` / ``proprio`` when the model
            takes them.
    """
    model.eval()
    th = model.history
    slots = batch["slots"][:, :th]
    b, _, n, _ = slots.shape
    rank = torch.rand(b, n, generator=generator).argsort(dim=1).argsort(dim=1)
    chosen = (rank < hidden).unsqueeze(1).expand(b, th, n).clone()  # (B, T_h, N)
    chosen[:, 0] = False
    everything = torch.ones_like(chosen)
    everything[:, 0] = False
    kwargs = {"actions": batch.get("actions"), "proprio": batch.get("proprio")}
    target = slots.to(next(model.parameters()).device)
    chosen, everything = chosen.to(target.device), everything.to(target.device)

    def err(pred: torch.Tensor) -> float:
        return float(((pred - target).pow(2).mean(-1) * chosen).sum() / chosen.sum())

    def own_anchor() -> torch.Tensor:
        # Run every object on its own: (B, T_h, N, D) -> (B * N, T_h, 1, D).
        alone = target.transpose(1, 2).reshape(b * n, th, 1, -1)
        hide = everything[:, :, :1].repeat_interleave(n, dim=0)
        extra = {k: None if v is None else v.repeat_interleave(n, dim=0) for k, v in kwargs.items()}
        pred = model(alone, hide, **extra).slots[:, :th]  # (B * N, T_h, 1, D)
        return pred.reshape(b, n, th, -1).transpose(1, 2)

    return {
        "with_context": err(model(target, chosen, **kwargs).slots[:, :th]),
        "all_anchors": err(model(target, everything, **kwargs).slots[:, :th]),
        "own_anchor": err(own_anchor()),
        "copy_anchor": err(target[:, :1].expand_as(target)),
    }
