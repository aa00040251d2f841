"""The transformer pieces of the slot predictor: multi-head self-attention and a pre-norm block.

Shape legend: B batch, L tokens, W width, h heads, d head dim. ``Attention`` returns its weights
(B, h, L, L) only when asked (the fast fused kernel otherwise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cjepa.config import PredictorConfig


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
    """Pre-norm transformer block. ``norm_before_attention=False`` drops the attention LayerNorm
    and ``attention_output_dropout=False`` the dropout on the attention output, as the official
    code's block does (SPEC section 4, [code differs])."""

    def __init__(self, cfg: PredictorConfig, width: int, head_dim: int) -> None:
        super().__init__()
        w = width
        self.norm1 = nn.LayerNorm(w) if cfg.norm_before_attention else nn.Identity()
        self.attn = Attention(w, cfg.heads, head_dim, cfg.dropout)
        self.norm2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(
            nn.Linear(w, cfg.mlp_dim), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.mlp_dim, w)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_drop = nn.Dropout(cfg.dropout) if cfg.attention_output_dropout else nn.Identity()

    def forward(
        self, x: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, weights = self.attn(self.norm1(x), need_weights)
        x = x + self.attn_drop(y)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, weights
