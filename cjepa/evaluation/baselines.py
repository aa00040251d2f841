"""Trivial predictors with the ``SlotPredictor`` interface: the floors every stage is run with.

Each one is a drop-in for a trained predictor (``forward``, ``rollout``, ``history``,
``n_future``, attention weights), so an evaluation stage scores it with exactly the code and the
cells it scores a model with. None of them learns anything:

- ``copy_last``: every future cell repeats the object's last visible history slot (hidden history
  cells repeat the last visible slot before them);
- ``linear``: constant velocity in slot space from the last two visible frames
  (``z_last + k (z_last - z_prev)``), copy-last where only one frame is visible;
- ``zeros``: every cell is the zero vector (a broken model: it must score worse than every floor).

Attention weights, when asked for, are uniform over all tokens (a random-attention floor: the
causal stage's AUROC is then exactly 0.5).
"""

from __future__ import annotations

import torch

from cjepa.config import ExperimentConfig
from cjepa.predictor import PredictorOutput, SlotPredictor

KINDS = ("copy_last", "linear", "zeros")


class BaselinePredictor(SlotPredictor):
    """A ``SlotPredictor`` whose outputs follow a fixed rule (module doc); its parameters exist
    only so that code that asks for the model's device finds one."""

    def __init__(self, kind: str, cfg: ExperimentConfig, **shape: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"baseline must be one of {list(KINDS)}, got {kind!r}")
        super().__init__(cfg.predictor, **shape)
        self.kind = kind

    def forward(
        self,
        slots: torch.Tensor,
        mask: torch.Tensor,
        *,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> PredictorOutput:
        self._check_inputs(slots, mask, actions, proprio)
        b, th, n, d = slots.shape
        tp = self.n_future
        filled = [slots[:, 0]]
        prev = [slots[:, 0]]  # the visible frame before the last visible one
        for t in range(1, th):
            vis = ~mask[:, t].unsqueeze(-1)
            prev.append(torch.where(vis, filled[-1], prev[-1]))
            filled.append(torch.where(vis, slots[:, t], filled[-1]))
        last, before = filled[-1], prev[-1]  # (B, N, D)
        steps = torch.arange(1, tp + 1, dtype=slots.dtype, device=slots.device).view(1, tp, 1, 1)
        if self.kind == "copy_last":
            future = last.unsqueeze(1).expand(b, tp, n, d)
        elif self.kind == "linear":
            future = last.unsqueeze(1) + steps * (last - before).unsqueeze(1)
        else:
            future = slots.new_zeros(b, tp, n, d)
        history = torch.stack(filled, 1) if self.kind != "zeros" else torch.zeros_like(slots)
        out = torch.cat([history, future], dim=1)  # (B, T, N, D)
        proprio_out = None
        if self.aux == "entity" and self.proprio_dim and proprio is not None:
            p = proprio[:, :th]
            proprio_out = torch.cat([p, p[:, -1:].expand(b, tp, -1)], dim=1)
        attentions = None
        if need_weights:
            tokens = (th + tp) * (n + self.n_aux_tokens)
            uniform = slots.new_full((b, self.cfg.heads, tokens, tokens), 1.0 / tokens)
            attentions = [uniform] * self.cfg.depth
        return PredictorOutput(out, proprio_out, attentions)


def build_baseline(kind: str, cfg: ExperimentConfig) -> BaselinePredictor:
    """The baseline ``kind`` shaped like the predictor of ``cfg``."""
    d = cfg.data
    with torch.random.fork_rng(devices=[]):  # the unused parameters' init: keep global RNG
        torch.manual_seed(0)
        model = BaselinePredictor(
            kind,
            cfg,
            slot_dim=d.slot_dim,
            history=d.history,
            n_future=d.n_future,
            action_dim=d.action_dim * d.frameskip,
            proprio_dim=d.proprio_dim,
        )
    return model.eval()
