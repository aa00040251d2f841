"""Slot Attention (Locatello et al. 2020) with a learned Gaussian slot initialiser.

Shape legend (``cjepa/types.py``): B batch, N slots, D slot dim, M input tokens (H' * W'
feature positions), C input feature dim.

The initial slots are ``mu + sigma * noise``. The noise always comes from the caller: an
explicit ``torch.Generator`` or a ready tensor. There is no hidden draw from the global RNG, so
training is reproducible from its seed and extraction is a pure function of the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SlotInit(nn.Module):
    """Learned mean and log-std of the initial slot distribution.

    The mean and std are shared by all slots, so slot order is exchangeable (SPEC section 2):
    only the noise makes slots differ at the start.
    """

    def __init__(self, n_slots: int, dim: int) -> None:
        super().__init__()
        self.n_slots, self.dim = n_slots, dim
        self.mu = nn.Parameter(torch.empty(1, 1, dim))
        self.log_sigma = nn.Parameter(torch.empty(1, 1, dim))
        # Glorot-like scale as in the reference implementation; a fixed init generator keeps
        # module construction independent of the global RNG state.
        g = torch.Generator().manual_seed(0)
        bound = math.sqrt(6.0 / (1 + dim))
        with torch.no_grad():
            self.mu.uniform_(-bound, bound, generator=g)
            self.log_sigma.uniform_(-bound, bound, generator=g)

    def noise(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Standard normal noise (B, N, D) drawn on CPU from ``generator`` (device-independent)."""
        return torch.randn(batch, self.n_slots, self.dim, generator=generator)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        """Initial slots (B, N, D) from noise (B, N, D) or (N, D) (broadcast over B)."""
        noise = noise.to(self.mu.device, self.mu.dtype)
        return self.mu + self.log_sigma.exp() * noise


class SlotAttention(nn.Module):
    """Iterative attention in which slots compete for input tokens (softmax over slots).

    Each iteration: q = W_q LN(slots), attention logits k q^T / sqrt(D), softmax over the slot
    axis, a weighted *mean* of values per slot, a GRU update, then a residual MLP.
    """

    def __init__(self, in_dim: int, dim: int, hidden: int | None = None, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.norm_inputs = nn.LayerNorm(in_dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(in_dim, dim, bias=False)
        self.to_v = nn.Linear(in_dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        hidden = hidden or 2 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(
        self, inputs: torch.Tensor, slots: torch.Tensor, iters: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine ``slots`` against ``inputs``.

        Args:
            inputs: (B, M, C) input tokens.
            slots: (B, N, D) initial slots.
            iters: number of refinement iterations (>= 1).

        Returns:
            slots (B, N, D) and attention masks (B, N, M) of the last iteration; the masks sum
            to one over N at every input position.
        """
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        b, n, d = slots.shape
        inputs = self.norm_inputs(inputs)
        k = self.to_k(inputs)  # (B, M, D)
        v = self.to_v(inputs)  # (B, M, D)
        attn = inputs.new_zeros(b, n, inputs.shape[1])
        for _ in range(iters):
            prev = slots
            q = self.to_q(self.norm_slots(slots))  # (B, N, D)
            logits = torch.einsum("bnd,bmd->bnm", q, k) / math.sqrt(d)
            attn = logits.softmax(dim=1)  # compete over slots: each token is shared out
            # Weighted mean (not sum) over tokens keeps update scale independent of M; eps
            # guards slots that won no token.
            weights = (attn + self.eps) / (attn + self.eps).sum(dim=-1, keepdim=True)
            updates = torch.einsum("bnm,bmd->bnd", weights, v)
            slots = self.gru(updates.reshape(b * n, d), prev.reshape(b * n, d)).reshape(b, n, d)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


class SlotTransition(nn.Module):
    """One pre-norm transformer block over slots (SAVi's predictor): slots at t -> init at t+1.

    No positional code: the block is permutation-equivariant, so a slot keeps its index (and
    its object) from frame to frame.
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"slot dim {dim} must be divisible by predictor heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        b, n, d = slots.shape
        qkv = self.qkv(self.norm1(slots)).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, D / heads)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        slots = slots + self.proj(out)
        return slots + self.mlp(self.norm2(slots))
