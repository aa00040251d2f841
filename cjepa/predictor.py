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

The official code's variants of these (``PredictorConfig`` docstring): entity order
``[slots, proprio, action]`` (``aux_order``), future action tokens as queries
(``future_action="masked"``), proprio predicted as its embedding through the slot head
(``proprio_target="embedding"``), concat features appended raw so the width grows
(``concat_join="append"``), and a short history right-aligned in time (``short_history``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from cjepa.config import PredictorConfig
from cjepa.transformer import Attention, Block

__all__ = ["Attention", "Block", "PredictorOutput", "SlotPredictor"]


class PredictorOutput(NamedTuple):
    """slots: (B, T, N, D) predictions for every cell (history and future).
    proprio: the proprio prediction for every frame, or None (concat encoding with raw targets,
        or P = 0): (B, T, P) raw proprio; with ``proprio_target="embedding"`` the proprio
        embedding, (B, T, W) for the entity token or (B, T, N, C) per slot for appended concat
        features.
    attentions: per layer (B, heads, L, L) attention weights, L = T * E, when requested.
    proprio_target: with ``proprio_target="embedding"`` and raw proprio given, the detached
        embedding of every given proprio frame, (B, T_given, W) or (B, T_given, 1, C): what
        ``proprio`` is trained towards (the official target); None otherwise (raw targets).
    """

    slots: torch.Tensor
    proprio: torch.Tensor | None
    attentions: list[torch.Tensor] | None
    proprio_target: torch.Tensor | None = None


class SlotPredictor(nn.Module):
    """Predicts masked history slots and ``n_future`` future frames from a slot history.

    Args:
        cfg: architecture.
        slot_dim: D.
        history: T_h, the history window (frame 0 is the anchor).
        n_future: T_p, future frames predicted per call.
        action_dim, proprio_dim: A and P (0 = absent).

    Attributes:
        width: W, the transformer width: ``cfg.width``, plus ``concat_dim`` per auxiliary input
            under ``concat_join="append"``.
        aux_names: the auxiliary inputs present, in token (or appended-feature) order.
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
        self._aux_layout()
        w, c = self.width, cfg.concat_dim
        head_dim = cfg.head_dim if cfg.head_dim is not None else w // cfg.heads
        # Modules are created in this order: torch's initialisers draw from the global RNG, so
        # the order fixes the weights a seed gives.
        self.slot_in = nn.Identity() if cfg.width == slot_dim else nn.Linear(slot_dim, cfg.width)
        self.time_embed = nn.Parameter(torch.zeros(history + n_future, w))
        self.mask_token = nn.Parameter(torch.zeros(w))
        self.phi = nn.Linear(w, w)
        self._aux_layers()
        self.blocks = nn.ModuleList(Block(cfg, w, head_dim) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(w)
        # Appended concat tokens: the head reproduces the whole token (slot, then the aux
        # features in aux_names order), like the official code's Linear(W, W).
        self.head = nn.Linear(w, slot_dim + (c * len(self.aux_names) if self.append else 0))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if cfg.time_embed_init == "standard_normal":
            nn.init.normal_(self.time_embed, std=1.0)
        else:
            nn.init.trunc_normal_(self.time_embed, std=0.02)

    def _aux_layout(self) -> None:
        """Which auxiliary inputs enter and how: ``aux``, ``aux_names``, ``append``,
        ``embeds_proprio`` and the transformer ``width``; checks the width fits."""
        cfg, slot_dim = self.cfg, self.slot_dim
        self.aux = cfg.aux_encoding if (self.action_dim or self.proprio_dim) else "none"
        order = (
            ("action", "proprio") if cfg.aux_order == "action_proprio" else ("proprio", "action")
        )
        dims = {"action": self.action_dim, "proprio": self.proprio_dim}
        self.aux_names = [k for k in order if dims[k]] if self.aux != "none" else []
        self.append = self.aux == "concat" and cfg.concat_join == "append"
        self.embeds_proprio = (
            cfg.proprio_target == "embedding" and bool(self.proprio_dim) and self.aux != "none"
        )
        w = cfg.width + (cfg.concat_dim * len(self.aux_names) if self.append else 0)
        self.width = w
        if self.embeds_proprio and self.aux == "entity" and cfg.width != slot_dim:
            raise ValueError(
                f"predictor.width={cfg.width} must equal the slot dim D={slot_dim} with "
                "predictor.proprio_target='embedding' (the slot head also predicts the proprio "
                "embedding, as in the official code)"
            )
        if cfg.head_dim is None and w % cfg.heads:
            raise ValueError(
                f"predictor.heads={cfg.heads} must divide the transformer width {w} when "
                "predictor.head_dim is null (head_dim = width / heads)"
            )

    def _aux_layers(self) -> None:
        """The input (and raw proprio output) layers of the auxiliary encoding."""
        a, p, w, c = self.action_dim, self.proprio_dim, self.width, self.cfg.concat_dim
        if self.aux == "entity":
            self.action_in = nn.Linear(a, w) if a else None
            self.proprio_in = nn.Linear(p, w) if p else None
            raw_head = p and not self.embeds_proprio
            self.proprio_head = nn.Linear(w, p) if raw_head else None
        elif self.aux == "concat":
            self.action_small = nn.Linear(a, c) if a else None
            self.proprio_small = nn.Linear(p, c) if p else None
            if not self.append:
                self.concat_in = nn.Linear(len(self.aux_names) * c, w)

    @property
    def n_aux_tokens(self) -> int:
        return len(self.aux_names) if self.aux == "entity" else 0

    def _check_inputs(self, slots, mask, actions, proprio, proprio_tokens=None) -> int:
        """Validate the inputs; returns k, the number of history frames given."""
        b, th = slots.shape[0], self.history
        right = self.cfg.short_history == "right_align"
        if (
            slots.ndim != 4
            or slots.shape[3] != self.slot_dim
            or not (1 <= slots.shape[1] <= th if right else slots.shape[1] == th)
        ):
            need = f"1..{th}" if right else f"{th}"
            hint = "" if right else " (a shorter history needs predictor.short_history=right_align)"
            raise ValueError(
                f"slots must be (B, T_h={need}, N, D={self.slot_dim}), got "
                f"{tuple(slots.shape)}{hint}"
            )
        k = slots.shape[1]
        if mask.shape != slots.shape[:3] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be bool {tuple(slots.shape[:3])} (B, T_h, N), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if mask[:, 0].any():
            raise ValueError("mask hides frame 0, the identity anchor; it must stay visible")
        t = k + self.n_future
        if self.action_dim and (actions is None or actions.shape != (b, t, self.action_dim)):
            got = None if actions is None else tuple(actions.shape)
            raise ValueError(f"actions must be (B, T_h+T_p={t}, A={self.action_dim}), got {got}")
        if proprio_tokens is not None:
            if not self.embeds_proprio:
                raise ValueError("proprio_tokens needs predictor.proprio_target='embedding'")
            ok = proprio_tokens.shape[:2] == (b, k) and proprio_tokens.shape[-1] == (
                self.cfg.concat_dim if self.append else self.width
            )
            if not ok:
                raise ValueError(
                    f"proprio_tokens must be (B, T_h={k}, ...) embeddings, "
                    f"got {tuple(proprio_tokens.shape)}"
                )
        elif self.proprio_dim and (
            proprio is None
            or proprio.shape[0] != b
            or proprio.shape[1] < k
            or proprio.shape[2] != self.proprio_dim
        ):
            got = None if proprio is None else tuple(proprio.shape)
            raise ValueError(f"proprio must be (B, >=T_h={k}, P={self.proprio_dim}), got {got}")
        return k

    def proprio_space(self, proprio: torch.Tensor) -> torch.Tensor:
        """Raw proprio (..., P) in the space the ``proprio`` output predicts, detached: itself
        (raw targets) or its embedding, (..., W) for the entity token or (..., 1, C) for
        appended concat features (``proprio_target="embedding"``)."""
        if not self.embeds_proprio:
            return proprio
        if self.aux == "entity":
            return self.proprio_in(proprio).detach()
        return self.proprio_small(proprio).unsqueeze(-2).detach()

    def forward(
        self,
        slots: torch.Tensor,
        mask: torch.Tensor,
        *,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        proprio_tokens: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> PredictorOutput:
        """Args:
        slots: (B, T_h, N, D) history slots (hidden cells' values are never read). With
            ``short_history="right_align"`` any k in 1..T_h frames: they take time-embedding
            rows T_h-k .. T_h-1 (the official inference), and every T_h below reads as k.
        mask: (B, T_h, N) bool, True = hidden; frame 0 must be visible.
        actions: (B, T_h + T_p, A) when action_dim > 0.
        proprio: (B, >= T_h, P) when proprio_dim > 0; only the history steps enter the model
            (with ``proprio_target="embedding"`` every given step is also embedded as the
            target, ``PredictorOutput.proprio_target``).
        proprio_tokens: instead of ``proprio``, already-embedded proprio history (B, T_h, W), or
            (B, T_h, N or 1, C) for appended concat features; ``proprio_target="embedding"``
            only (rollouts feed predicted embeddings back this way).
        need_weights: also return every layer's attention weights.
        """
        k = self._check_inputs(slots, mask, actions, proprio, proprio_tokens)
        ptok = self._proprio_tokens(proprio, proprio_tokens, k)
        x, last = self._tokens(slots, mask, actions, proprio, ptok)  # (B, T, E, W), (B, N)
        h, attentions = self._transform(x, need_weights)  # (B, T, E, W)
        return self._readout(h, slots, last, proprio, proprio_tokens, attentions)

    def _proprio_tokens(
        self, proprio: torch.Tensor | None, proprio_tokens: torch.Tensor | None, k: int
    ) -> torch.Tensor | None:
        """Embedded proprio history: (B, k, W) entity tokens, (B, k, 1 or N, C) appended
        features, or None (no proprio, or projected concat, which embeds it later)."""
        if not (self.proprio_dim and self.aux in ("entity", "concat")):
            return None
        if proprio_tokens is not None:
            return proprio_tokens
        if self.aux == "entity":
            return self.proprio_in(proprio[:, :k])  # (B, k, W)
        if self.append:
            return self.proprio_small(proprio[:, :k]).unsqueeze(2)  # (B, k, 1, C)
        return None

    def _tokens(
        self,
        slots: torch.Tensor,
        mask: torch.Tensor,
        actions: torch.Tensor | None,
        proprio: torch.Tensor | None,
        ptok: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The input tokens (B, T, E, W), time embedding added, and each object's last visible
        history frame (B, N)."""
        b, k, n, _ = slots.shape
        tp, t, w = self.n_future, k + self.n_future, self.width
        hidden = torch.cat([mask, mask.new_ones(b, tp, n)], dim=1)  # (B, T, N)
        x = self.slot_in(slots)  # (B, k, N, width)
        if self.append:
            x = torch.cat([x, *self._appended(actions, ptok, k, n)], dim=-1)  # (B, k, N, W)
        x = torch.cat([x, x.new_zeros(b, tp, n, w)], dim=1)  # (B, T, N, W)
        queries = self.mask_token + self.phi(x[:, :1])  # (B, 1, N, W): masked token per object
        queries = queries.expand(b, t, n, w)
        steps = torch.arange(k, device=mask.device).view(1, k, 1)
        last = torch.where(~mask, steps, 0).amax(dim=1)  # (B, N): last visible frame
        if self.cfg.future_query == "last_visible":
            idx = last.view(b, 1, n, 1).expand(b, 1, n, w)
            fut = self.mask_token + self.phi(torch.gather(x[:, :k], 1, idx))  # (B, 1, N, W)
            queries = torch.cat([queries[:, :k], fut.expand(b, tp, n, w)], dim=1)
        x = torch.where(hidden.unsqueeze(-1), queries, x)
        if self.action_dim and not (self.aux == "entity" and self.cfg.future_action == "masked"):
            # actions[:, t] is applied after frame t, so the last step's action influences no
            # frame in the window; attention is bidirectional, so it would leak what the policy
            # saw at the predicted frame (and a planner cannot know it). It enters as zeros.
            actions = torch.cat([actions[:, : t - 1], actions.new_zeros(b, 1, self.action_dim)], 1)
        if self.aux == "concat" and not self.append:
            x = x + self._concat_aux(actions, proprio, b, k).unsqueeze(2)
        if self.aux == "entity":
            x = torch.cat([x, *self._entity_aux(actions, ptok, b, k)], dim=2)  # (B, T, E, W)
        # Right-aligned time: k history frames take rows T_h - k .. T_h - 1 (all rows if k = T_h).
        return x + self.time_embed[self.history - k :].unsqueeze(1), last

    def _transform(
        self, x: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Tokens (B, T, E, W) through the blocks and the final norm, time-major as one
        sequence; with ``need_weights`` every layer's attention weights."""
        t, e = x.shape[1], x.shape[2]
        h = rearrange(x, "b t e w -> b (t e) w")
        attentions = [] if need_weights else None
        for block in self.blocks:
            h, weights = block(h, need_weights)
            if attentions is not None:
                attentions.append(weights)
        return rearrange(self.norm(h), "b (t e) w -> b t e w", t=t, e=e), attentions

    def _readout(
        self,
        h: torch.Tensor,
        slots: torch.Tensor,
        last: torch.Tensor,
        proprio: torch.Tensor | None,
        proprio_tokens: torch.Tensor | None,
        attentions: list[torch.Tensor] | None,
    ) -> PredictorOutput:
        """Slot (and proprio) predictions from the transformed tokens h (B, T, E, W)."""
        b, k, n, d = slots.shape
        out = self.head(h[:, :, :n])  # (B, T, N, D [+ appended features])
        pred_slots = out[..., : self.slot_dim]
        if self.cfg.future_residual:
            idx = last.view(b, 1, n, 1).expand(b, 1, n, d)
            base = torch.gather(slots, 1, idx)  # (B, 1, N, D): last visible slot per object
            pred_slots = torch.cat([pred_slots[:, :k], pred_slots[:, k:] + base], dim=1)
        pred_proprio, target = None, None
        if self.proprio_dim and self.aux == "entity":
            tok = h[:, :, n + self.aux_names.index("proprio")]  # (B, T, W)
            pred_proprio = self.head(tok) if self.embeds_proprio else self.proprio_head(tok)
        elif self.proprio_dim and self.append and self.embeds_proprio:
            lo = self.slot_dim + self.cfg.concat_dim * self.aux_names.index("proprio")
            pred_proprio = out[..., lo : lo + self.cfg.concat_dim]  # (B, T, N, C)
        if self.embeds_proprio and proprio is not None and proprio_tokens is None:
            target = self.proprio_space(proprio)
        return PredictorOutput(pred_slots, pred_proprio, attentions, target)

    def _entity_aux(self, actions, ptok, b: int, k: int) -> list[torch.Tensor]:
        """Per-frame auxiliary tokens in ``aux_names`` order, each (B, T, 1, W). A future token
        is a query (mask token + phi of the frame-0 token) for proprio, and for actions under
        ``future_action="masked"``."""
        tp = self.n_future
        tokens = {}
        if self.action_dim:
            if self.cfg.future_action == "masked":
                a = self.action_in(actions[:, :k])  # (B, k, W)
                future = (self.mask_token + self.phi(a[:, :1])).expand(b, tp, -1)
                tokens["action"] = torch.cat([a, future], dim=1)
            else:
                tokens["action"] = self.action_in(actions)
        if self.proprio_dim:
            future = (self.mask_token + self.phi(ptok[:, :1])).expand(b, tp, -1)
            tokens["proprio"] = torch.cat([ptok, future], dim=1)
        return [tokens[name].unsqueeze(2) for name in self.aux_names]

    def _appended(self, actions, ptok, k: int, n: int) -> list[torch.Tensor]:
        """History features appended to every slot token, in ``aux_names`` order, each
        (B, k, N, C). Future cells are whole-token queries, so no future feature is read."""
        feats = {}
        b = actions.shape[0] if actions is not None else ptok.shape[0]
        if self.action_dim:
            feats["action"] = self.action_small(actions[:, :k]).unsqueeze(2)  # (B, k, 1, C)
        if self.proprio_dim:
            feats["proprio"] = ptok  # (B, k, 1 or N, C)
        return [feats[name].expand(b, k, n, -1) for name in self.aux_names]

    def _concat_aux(self, actions, proprio, b: int, k: int) -> torch.Tensor:
        """(B, T, W): the tiled small embeddings of action and proprio, mixed into the width."""
        parts = {}
        if self.action_dim:
            parts["action"] = self.action_small(actions)
        if self.proprio_dim:
            p = proprio[:, :k]
            p = torch.cat([p, p.new_zeros(b, self.n_future, self.proprio_dim)], dim=1)
            parts["proprio"] = self.proprio_small(p)
        return self.concat_in(torch.cat([parts[name] for name in self.aux_names], dim=-1))

    @torch.no_grad()
    def rollout(
        self,
        history: torch.Tensor,
        steps: int,
        *,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Autoregressive prediction with a sliding window (SPEC section 4, inference): slots
        (B, steps, N, D) and the predicted proprio (or None) after ``history`` (B, k, N, D);
        ``cjepa.predictor_rollout.rollout`` documents the arguments."""
        from cjepa.predictor_rollout import rollout

        return rollout(self, history, steps, actions=actions, proprio=proprio)
