"""The masked slot predictor of C-JEPA (SPEC section 4).

Tokens: T = T_h + T_p frames of E entities (N slots, plus a proprio and an action token per frame
when auxiliary inputs are encoded as entities), flattened time-major into one sequence for a
full bidirectional transformer. There is no positional code along the entity axis (slots are
exchangeable); a learned time embedding e_t marks the frame.

- visible token:  in(z_t^i) + e_t
- masked token:   mask_token + e_t + phi(in(z_0^i)), for hidden history cells (t >= 1) and every
  future cell; phi is a Linear of the same object's anchor slot, so the model knows which object
  it is asked about.

Auxiliary inputs (action A, proprio P):
- ``"entity"``: two extra tokens per frame. Action tokens are always visible (they condition the
  prediction); proprio tokens are visible in the history and masked in the future, where the
  model predicts them (``proprio_head``).
- ``"concat"``: small embeddings (``concat_dim`` each) of action and proprio tiled onto every slot
  token along the feature axis (mixed into the width by a Linear). Future proprio is unknown, so
  it enters as zeros (the dataset mean after z-scoring).
- ``"none"``: slots only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cjepa.config import PredictorConfig


class PredictorOutput(NamedTuple):
    """slots: (B, T, N, D) predictions for every cell (history and future).
    proprio: (B, T, P) predicted proprio (entity encoding with P > 0) or None.
    attentions: per layer (B, heads, L, L) attention weights, L = T * E, when requested.
    """

    slots: torch.Tensor
    proprio: torch.Tensor | None
    attentions: list[torch.Tensor] | None


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(width, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, width)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        p = self.dropout if self.training else 0.0
        if not need_weights:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            weights = None
        else:
            weights = torch.softmax(q @ k.transpose(-2, -1) * self.head_dim**-0.5, dim=-1)
            y = F.dropout(weights, p, self.training) @ v  # (B, h, L, d)
        return self.out(rearrange(y, "b h l d -> b l (h d)")), weights


class Block(nn.Module):
    """Pre-norm transformer block. ``norm_before_attention=False`` drops the attention LayerNorm,
    as the official code's block does (SPEC section 4, [code differs])."""

    def __init__(self, cfg: PredictorConfig) -> None:
        super().__init__()
        w = cfg.width
        self.norm1 = nn.LayerNorm(w) if cfg.norm_before_attention else nn.Identity()
        self.attn = Attention(w, cfg.heads, cfg.head_dim, cfg.dropout)
        self.norm2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(
            nn.Linear(w, cfg.mlp_dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.mlp_dim, w)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, weights = self.attn(self.norm1(x), need_weights)
        x = x + self.drop(y)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, weights


class SlotPredictor(nn.Module):
    """Predicts masked history slots and ``n_future`` future frames from a slot history.

    Args:
        cfg: architecture.
        slot_dim: D.
        history: T_h, the history window (frame 0 is the anchor).
        n_future: T_p, future frames predicted per call.
        action_dim, proprio_dim: A and P (0 = absent).
    """

    def __init__(
        self,
        cfg: PredictorConfig,
        *,
        slot_dim: int,
        history: int,
        n_future: int,
        action_dim: int = 0,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.slot_dim, self.history, self.n_future = slot_dim, history, n_future
        self.action_dim, self.proprio_dim = action_dim, proprio_dim
        self.aux = cfg.aux_encoding if (action_dim or proprio_dim) else "none"
        w = cfg.width
        self.slot_in = nn.Identity() if w == slot_dim else nn.Linear(slot_dim, w)
        self.time_embed = nn.Parameter(torch.zeros(history + n_future, w))
        self.mask_token = nn.Parameter(torch.zeros(w))
        self.phi = nn.Linear(w, w)
        if self.aux == "entity":
            self.action_in = nn.Linear(action_dim, w) if action_dim else None
            self.proprio_in = nn.Linear(proprio_dim, w) if proprio_dim else None
            self.proprio_head = nn.Linear(w, proprio_dim) if proprio_dim else None
        elif self.aux == "concat":
            c = cfg.concat_dim
            self.action_small = nn.Linear(action_dim, c) if action_dim else None
            self.proprio_small = nn.Linear(proprio_dim, c) if proprio_dim else None
            n_small = int(bool(action_dim)) + int(bool(proprio_dim))
            self.concat_in = nn.Linear(n_small * c, w)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, slot_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.time_embed, std=0.02)

    @property
    def n_aux_tokens(self) -> int:
        if self.aux != "entity":
            return 0
        return int(bool(self.action_dim)) + int(bool(self.proprio_dim))

    def _check_inputs(self, slots, mask, actions, proprio) -> None:
        b, th = slots.shape[0], self.history
        if slots.ndim != 4 or slots.shape[1] != th or slots.shape[3] != self.slot_dim:
            raise ValueError(
                f"slots must be (B, T_h={th}, N, D={self.slot_dim}), got {tuple(slots.shape)}"
            )
        if mask.shape != slots.shape[:3] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be bool {tuple(slots.shape[:3])} (B, T_h, N), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if mask[:, 0].any():
            raise ValueError("mask hides frame 0, the identity anchor; it must stay visible")
        t = th + self.n_future
        if self.action_dim and (actions is None or actions.shape != (b, t, self.action_dim)):
            got = None if actions is None else tuple(actions.shape)
            raise ValueError(f"actions must be (B, T_h+T_p={t}, A={self.action_dim}), got {got}")
        if self.proprio_dim and (
            proprio is None
            or proprio.shape[0] != b
            or proprio.shape[1] < th
            or proprio.shape[2] != self.proprio_dim
        ):
            got = None if proprio is None else tuple(proprio.shape)
            raise ValueError(f"proprio must be (B, >=T_h={th}, P={self.proprio_dim}), got {got}")

    def forward(
        self,
        slots: torch.Tensor,
        mask: torch.Tensor,
        *,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> PredictorOutput:
        """Args:
        slots: (B, T_h, N, D) history slots (hidden cells' values are never read).
        mask: (B, T_h, N) bool, True = hidden; frame 0 must be visible.
        actions: (B, T_h + T_p, A) when action_dim > 0.
        proprio: (B, >= T_h, P) when proprio_dim > 0; only the history steps are read.
        need_weights: also return every layer's attention weights.
        """
        self._check_inputs(slots, mask, actions, proprio)
        b, _, n, _ = slots.shape
        tp, t = self.n_future, self.history + self.n_future
        hidden = torch.cat([mask, mask.new_ones(b, tp, n)], dim=1)  # (B, T, N)
        x = self.slot_in(slots)  # (B, T_h, N, W)
        x = torch.cat([x, x.new_zeros(b, tp, n, x.shape[-1])], dim=1)  # (B, T, N, W)
        queries = self.mask_token + self.phi(x[:, :1])  # (B, 1, N, W): masked token per object
        queries = queries.expand(b, t, n, x.shape[-1])
        th = self.history
        steps = torch.arange(th, device=mask.device).view(1, th, 1)
        last = torch.where(~mask, steps, 0).amax(dim=1)  # (B, N): last visible frame
        if self.cfg.future_query == "last_visible":
            idx = last.view(b, 1, n, 1).expand(b, 1, n, x.shape[-1])
            fut = self.mask_token + self.phi(torch.gather(x[:, :th], 1, idx))  # (B, 1, N, W)
            queries = torch.cat([queries[:, :th], fut.expand(b, tp, n, x.shape[-1])], dim=1)
        x = torch.where(hidden.unsqueeze(-1), queries, x)
        if self.action_dim:
            # actions[:, t] is applied after frame t, so the last step's action influences no
            # frame in the window; attention is bidirectional, so it would leak what the policy
            # saw at the predicted frame (and a planner cannot know it). It enters as zeros.
            actions = torch.cat([actions[:, : t - 1], actions.new_zeros(b, 1, self.action_dim)], 1)
        if self.aux == "concat":
            x = x + self._concat_aux(actions, proprio, b, t).unsqueeze(2)
        if self.aux == "entity":
            x = torch.cat([x, *self._entity_aux(actions, proprio, b, t)], dim=2)  # (B, T, E, W)
        x = x + self.time_embed.unsqueeze(1)
        e = x.shape[2]
        h = rearrange(x, "b t e w -> b (t e) w")
        attentions = [] if need_weights else None
        for block in self.blocks:
            h, weights = block(h, need_weights)
            if attentions is not None:
                attentions.append(weights)
        h = rearrange(self.norm(h), "b (t e) w -> b t e w", t=t, e=e)
        pred_slots = self.head(h[:, :, :n])  # (B, T, N, D)
        if self.cfg.future_residual:
            idx = last.view(b, 1, n, 1).expand(b, 1, n, slots.shape[-1])
            base = torch.gather(slots, 1, idx)  # (B, 1, N, D): last visible slot per object
            pred_slots = torch.cat([pred_slots[:, :th], pred_slots[:, th:] + base], dim=1)
        pred_proprio = None
        if self.aux == "entity" and self.proprio_dim:
            pred_proprio = self.proprio_head(h[:, :, n + int(bool(self.action_dim))])  # (B, T, P)
        return PredictorOutput(pred_slots, pred_proprio, attentions)

    def _entity_aux(self, actions, proprio, b: int, t: int) -> list[torch.Tensor]:
        """Per-frame auxiliary tokens, each (B, T, 1, W): [action, proprio]."""
        tokens = []
        if self.action_dim:
            tokens.append(self.action_in(actions).unsqueeze(2))
        if self.proprio_dim:
            p = self.proprio_in(proprio[:, : self.history])  # (B, T_h, W)
            future = (self.mask_token + self.phi(p[:, :1])).expand(b, self.n_future, -1)
            tokens.append(torch.cat([p, future], dim=1).unsqueeze(2))
        return tokens

    def _concat_aux(self, actions, proprio, b: int, t: int) -> torch.Tensor:
        """(B, T, W): the tiled small embeddings of action and proprio, mixed into the width."""
        parts = []
        if self.action_dim:
            parts.append(self.action_small(actions))
        if self.proprio_dim:
            p = proprio[:, : self.history]
            p = torch.cat([p, p.new_zeros(b, self.n_future, self.proprio_dim)], dim=1)
            parts.append(self.proprio_small(p))
        return self.concat_in(torch.cat(parts, dim=-1))

    @torch.no_grad()
    def rollout(
        self,
        history: torch.Tensor,
        steps: int,
        *,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Autoregressive prediction with a sliding window (SPEC section 4, inference).

        The full history is visible; each call predicts T_p frames, which are appended, and the
        window slides to the last T_h frames. The caller chooses train/eval mode.

        Args:
            history: (B, T_h, N, D) observed slots.
            steps: number of future frames to predict.
            actions: (B, T_h + steps, A) when A > 0; padded with zeros past the end if the last
                call reaches beyond it.
            proprio: (B, T_h, P) observed proprio when P > 0.

        Returns:
            slots (B, steps, N, D) and, for the entity encoding with P > 0, proprio (B, steps, P).
        """
        if steps < 1:
            raise ValueError(f"rollout steps must be >= 1, got {steps}")
        b, th, n, _ = history.shape
        seq, pseq = history, proprio
        if self.action_dim:
            need = th + steps + self.n_future
            if actions is None or actions.shape[:2] != (b, th + steps):
                got = None if actions is None else tuple(actions.shape)
                raise ValueError(
                    f"rollout actions must be (B, T_h+steps={th + steps}, A), got {got}"
                )
            actions = F.pad(actions, (0, 0, 0, need - actions.shape[1]))
        mask = torch.zeros(b, th, n, dtype=torch.bool, device=history.device)
        preds, ppreds = [], []
        made = 0
        while made < steps:
            start = seq.shape[1] - th
            window_actions = (
                actions[:, start : start + th + self.n_future] if self.action_dim else None
            )
            window_proprio = pseq[:, start:] if self.proprio_dim else None
            out = self(seq[:, start:], mask, actions=window_actions, proprio=window_proprio)
            new = out.slots[:, th:]  # (B, T_p, N, D)
            preds.append(new)
            seq = torch.cat([seq, new], dim=1)
            if self.proprio_dim:
                if out.proprio is not None:
                    new_p = out.proprio[:, th:]
                    ppreds.append(new_p)
                else:  # concat: future proprio unknown, enters as zeros as in training
                    new_p = pseq.new_zeros(b, self.n_future, self.proprio_dim)
                pseq = torch.cat([pseq, new_p], dim=1)
            made += self.n_future
        slots_out = torch.cat(preds, dim=1)[:, :steps]
        proprio_out = torch.cat(ppreds, dim=1)[:, :steps] if ppreds else None
        return slots_out, proprio_out
