"""The VQA reader model and its training loop (``cjepa.evaluation.vqa`` holds the protocol).

ALOE-style (Ding et al. 2021): slot tokens of an episode are encoded once, then each question's
word tokens run blocks of self-attention plus cross-attention to them; CLS -> answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

SPECIAL = ("<pad>", "<unk>", "<cls>", "<sep>")
PAD, UNK, CLS, SEP = range(4)


@dataclass
class Items:
    """Reader samples: one per descriptive question and one per multiple-choice option.

    Attributes:
        episode: (S,) index into the video tensor.
        tokens: (S, L) word ids, PAD-padded.
        answer: (S,) class index (descriptive; -1 if unseen in training) or 0/1 (options).
        choice: (S,) bool, True for a multiple-choice option.
        question: (S,) index of the question the sample belongs to.
    """

    episode: torch.Tensor
    tokens: torch.Tensor
    answer: torch.Tensor
    choice: torch.Tensor
    question: torch.Tensor


class CrossBlock(nn.Module):
    """Pre-norm block for question tokens: self-attention, cross-attention to the slot tokens of
    the question's episode, MLP. Keys/values are projected once per episode and gathered."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.q, self.kv, self.out = (nn.Linear(width, m * width) for m in (1, 2, 1))
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, pad: torch.Tensor, memory: torch.Tensor, which: torch.Tensor
    ) -> torch.Tensor:
        """x (B, L, W) question tokens, pad (B, L) bool, memory (E, M, W) slot tokens of E
        episodes, which (B,) the episode of each question."""
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
        k, v = rearrange(self.kv(memory), "e m (two h d) -> two e h m d", two=2, h=self.heads)
        q = rearrange(self.q(self.norm2(x)), "b l (h d) -> b h l d", h=self.heads)
        y = F.scaled_dot_product_attention(q, k[which], v[which])  # (B, h, L, d)
        x = x + self.drop(self.out(rearrange(y, "b h l d -> b l (h d)")))
        return x + self.drop(self.mlp(self.norm3(x)))


def _check_reader(text: str, memory: str, n_video_frames: int | None) -> None:
    if text not in ("words", "bag"):
        raise ValueError(f"text must be 'words' or 'bag', got {text!r}")
    if memory not in ("frames", "objects"):
        raise ValueError(f"memory must be 'frames' or 'objects', got {memory!r}")
    if memory == "objects" and not n_video_frames:
        raise ValueError("memory='objects' needs n_video_frames (F)")


class Reader(nn.Module):
    """ALOE-style reader (see ``cjepa.evaluation.vqa``): slot tokens of an episode are encoded
    once (``video_depth`` self-attention layers over all F x N tokens, then a LayerNorm), then
    each question's tokens run ``depth`` blocks of self-attention plus cross-attention to them;
    CLS -> answers. ``dropout`` acts inside every block.

    ``memory`` chooses the slot tokens the question reads: ``"frames"``, one token per (frame,
    slot) as in ALOE (F * N tokens); ``"objects"``, one token per slot track (its F slots,
    flattened) plus one per ordered pair of slots (i != j) that max-pools an MLP of the two
    slots' tokens over frames (N + N * (N - 1) tokens). ``"objects"`` assumes slot n follows one
    entity over time (true of the oracle and of predictor rollouts) and is a relational prior
    after Santoro et al. 2017 (relation networks): a contact between two objects is one
    pair-token feature instead of a match the question has to find among F * N tokens, so a
    one-block reader learns it within a CPU budget.

    ``text`` chooses the question encoder: ``"words"``, one token per word through every block
    (ALOE); ``"bag"``, a single question token (the sum of word-by-position codes, then an MLP)
    that runs the blocks alone, about L times cheaper per question.

    Args:
        slot_dim: D. n_frames: frame-index range of slot tokens. n_words, n_answers: vocabulary
        and descriptive answer counts. max_words: longest token sequence. n_video_frames: F,
        the number of reader frames (needed by ``memory="objects"``).
    """

    def __init__(
        self,
        *,
        slot_dim: int,
        n_frames: int,
        n_words: int,
        n_answers: int,
        max_words: int,
        width: int,
        depth: int,
        video_depth: int,
        heads: int,
        dropout: float = 0.0,
        pool: bool = True,
        memory: str = "frames",
        n_video_frames: int | None = None,
        text: str = "words",
    ) -> None:
        super().__init__()
        _check_reader(text, memory, n_video_frames)
        self.text, self.memory = text, memory
        if memory == "objects":
            self._object_memory(n_video_frames, width)
        self.slot_in = nn.Sequential(nn.LayerNorm(slot_dim), nn.Linear(slot_dim, width))
        self.frame_embed = nn.Embedding(n_frames, width)
        self.source_embed = nn.Embedding(2, width)  # 0 observed, 1 rolled-out slot token
        self.word_embed = nn.Embedding(n_words, width, padding_idx=PAD)
        self.word_pos = nn.Embedding(max_words, width)
        if text == "bag":
            self.text_mlp = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                nn.Linear(2 * width, width),
            )  # fmt: skip
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=dropout, batch_first=True, norm_first=True
        )
        self.video = (
            nn.TransformerEncoder(layer, video_depth, enable_nested_tensor=False)
            if video_depth
            else nn.Identity()
        )
        # question-conditioned pooling: FiLM every slot token by the question, sum over tokens
        self.pool = pool
        self.film = nn.Linear(width, 2 * width)
        self.pool_mlp = nn.Sequential(nn.GELU(), nn.Linear(width, width))
        self.video_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(CrossBlock(width, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.answer_head = nn.Linear(width, max(n_answers, 1))
        self.choice_head = nn.Linear(width, 1)

    def _object_memory(self, n_video_frames: int, width: int) -> None:
        """The layers of ``memory="objects"``: track tokens and pair tokens."""
        self.track_in = nn.Sequential(
            nn.LayerNorm(n_video_frames * width), nn.Linear(n_video_frames * width, width)
        )
        # first pair layer factorised: W1 [x_i; x_j] = A x_i + B x_j, computed per slot
        self.pair_in = nn.Linear(width, 4 * width)
        self.pair_out = nn.Sequential(nn.GELU(), nn.Linear(2 * width, width))
        self.kind_embed = nn.Embedding(2, width)  # 0 track token, 1 pair token

    def encode_video(
        self, video: torch.Tensor, frames: torch.Tensor, rolled: torch.Tensor
    ) -> torch.Tensor:
        """video (E, F, N, D), frames (F,) frame indices, rolled (F,) bool -> (E, M, W) with
        M = F * N (``memory="frames"``) or N + N * (N - 1) (``"objects"``)."""
        time = self.frame_embed(frames) + self.source_embed(rolled.long())  # (F, W)
        x = self.slot_in(video) + time[:, None]  # (E, F, N, W)
        if self.memory == "frames":
            x = rearrange(x, "e f n w -> e (f n) w")
        else:
            n = x.shape[2]
            tracks = self.track_in(rearrange(x, "e f n w -> e n (f w)"))  # (E, N, W)
            i, j = (t.reshape(-1) for t in torch.nonzero(~torch.eye(n, dtype=torch.bool)).T)
            a, b = self.pair_in(x).chunk(2, dim=-1)  # (E, F, N, 2W) each
            pair = a[:, :, i] + b[:, :, j]  # (E, F, P, 2W), P = N(N-1) ordered pairs
            pairs = self.pair_out(pair).amax(dim=1)  # (E, P, W): "at some frame, i and j ..."
            x = torch.cat(
                [tracks + self.kind_embed.weight[0], pairs + self.kind_embed.weight[1]], dim=1
            )
        return self.video_norm(self.video(x))

    def read(
        self, memory: torch.Tensor, which: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """memory (E, M, W) from ``encode_video``, which (B,) episode per question, tokens (B, L)
        word ids (CLS first, PAD-padded) -> answer logits (B, n_answers), choice logits (B,)."""
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        pad = tokens == PAD
        if self.text == "words":
            x = self.word_embed(tokens) + self.word_pos(pos)  # (B, L, W)
        else:  # one token: a sum of word-by-position codes, so "red square" stays bound
            x = (self.word_embed(tokens) * (1 + self.word_pos(pos))).sum(1, keepdim=True)
            x = self.text_mlp(x)  # (B, 1, W)
            pad = pad[:, :1]
        for block in self.blocks:
            x = block(x, pad, memory, which)
        h = x[:, 0]  # CLS
        if self.pool:
            gamma, beta = self.film(h).chunk(2, dim=-1)  # (B, W)
            m = memory[which]  # (B, M, W)
            per = self.pool_mlp(m * (1 + gamma[:, None]) + beta[:, None])
            h = h + per.sum(1) / math.sqrt(m.shape[1])
        h = self.norm(h)
        return self.answer_head(h), self.choice_head(h).squeeze(-1)


def _loss(answer_logits, choice_logits, items: Items, rows: torch.Tensor) -> torch.Tensor:
    choice, target = items.choice[rows], items.answer[rows]
    loss = answer_logits.new_zeros(())
    desc = ~choice & (target >= 0)
    if desc.any():
        loss = loss + F.cross_entropy(answer_logits[desc], target[desc], reduction="sum")
    if choice.any():
        loss = loss + F.binary_cross_entropy_with_logits(
            choice_logits[choice], target[choice].float(), reduction="sum"
        )
    return loss / rows.numel()


def train_reader(
    reader: Reader,
    inputs: tuple,
    items: Items,
    opts: dict,
    seed: int,
    losses: list[float] | None = None,
) -> float:
    """Fit ``reader`` (AdamW, ``weight_decay``, linear warmup over the first 10% of steps then
    cosine decay of ``lr``): each step draws ``episodes_per_batch`` episodes and uses all their
    items. Appends every step's loss to ``losses`` if given. Returns the mean loss of the last
    10% of steps."""
    video, frames, rolled = inputs
    g = torch.Generator().manual_seed(seed)
    steps = int(opts["steps"])
    opt = torch.optim.AdamW(
        reader.parameters(), lr=opts["lr"], weight_decay=opts.get("weight_decay", 0.01)
    )
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps))))
        ),
    )
    has_items = torch.unique(items.episode)
    reader.train()
    out: list[float] = []
    for _ in range(steps):
        pick = has_items[torch.randperm(len(has_items), generator=g)[: opts["episodes_per_batch"]]]
        local = torch.full((video.shape[0],), -1, dtype=torch.long)
        local[pick] = torch.arange(len(pick))
        rows = torch.nonzero(local[items.episode] >= 0).squeeze(1)
        memory = reader.encode_video(video[pick], frames, rolled)
        logits = reader.read(memory, local[items.episode[rows]], items.tokens[rows])
        loss = _loss(*logits, items, rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(reader.parameters(), 1.0)
        opt.step()
        sched.step()
        out.append(float(loss.detach()))
    if losses is not None:
        losses.extend(out)
    return float(np.mean(out[-max(1, len(out) // 10) :]))


@torch.no_grad()
def predict(
    reader: Reader,
    inputs: tuple,
    items: Items,
    questions: list[dict],
    answer_names: list[str],
    batch: int = 256,
) -> list[Any]:
    """One prediction per question: an answer string, or a list of bools (one per choice)."""
    reader.eval()
    video, frames, rolled = inputs
    memory = torch.cat(
        [
            reader.encode_video(video[i : i + 64], frames, rolled)
            for i in range(0, video.shape[0], 64)
        ]
    )
    preds: list[Any] = [None if q["type"] == "descriptive" else [] for q in questions]
    for start in range(0, items.tokens.shape[0], batch):
        rows = torch.arange(start, min(start + batch, items.tokens.shape[0]))
        a, c = reader.read(memory, items.episode[rows], items.tokens[rows])
        for r, ai, ci in zip(rows.tolist(), a.argmax(-1).tolist(), (c > 0).tolist(), strict=True):
            qi = int(items.question[r])
            if items.choice[r]:
                preds[qi].append(bool(ci))
            else:
                preds[qi] = answer_names[ai] if answer_names else ""
    return preds
