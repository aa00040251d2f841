"""Shared pieces of the collide evaluation stages: episodes of a split with their slots, the
scene behind an episode, and predictor rollouts from an observed window.

Shape legend (``cjepa/types.py``): T frames, N slots, D slot dim, K objects, B batch.

Rollout convention (SPEC section 4, inference): the history window ending at frame ``end`` is
the T_h frames ``end - f (T_h - 1), ..., end - f, end`` at the model's frameskip f; each rolled-out
step j = 1..steps predicts frame ``end + f j``. For predictive questions the window ends at the
last observed frame ``observe - 1`` and ``steps = ceil((T - observe) / f)`` covers the rest of
the video (the paper rolls CLEVRER out from frame 128 to 160 before its VQA reader).

Slot-object alignment: the causal metric and the position probe need slot k to be object k,
which only an object-aligned encoder (the oracle) guarantees; :func:`slots_are_aligned` reads
that from the slot shards' encoder config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cjepa.config import ExperimentConfig
from cjepa.data.shards import (
    iter_episode_shard,
    load_slot_episodes,
    read_shard_metadata,
    write_slot_shard,
)
from cjepa.data.splits import list_shards, split_of
from cjepa.predictor import SlotPredictor


@dataclass
class EvalEpisode:
    """One episode without its pixels: what the stages read.

    Attributes:
        states: (T, K, 6) float32 collide states (x, y, vx, vy, angle, present).
        slots: (T, N, D) float32 slots of ``cfg.data.slot_dir`` (the predictor's inputs).
    """

    episode_id: str
    states: np.ndarray
    slots: np.ndarray
    questions: list[dict[str, Any]] | None
    info: dict[str, Any]
    meta: dict[str, Any]

    @property
    def n_frames(self) -> int:
        return int(self.states.shape[0])


#: Worlds whose episodes the dynamics metrics can label: states (T, K, 6) with ``present`` last
#: and ``info["collisions"]`` as ``[frame, i, j]`` (collide; CLEVRER as imported).
LABELLED_WORLDS = ("collide", "clevrer")


def require_collide(cfg: ExperimentConfig, stage: str) -> None:
    """Raise a ValueError unless ``cfg`` trained on collide slot shards."""
    if cfg.data.world != "collide" or cfg.data.source != "slots":
        raise ValueError(
            f"stages.{stage} needs a predictor trained on collide slots (data.world=collide, "
            f"data.source=slots), got data.world={cfg.data.world!r}, "
            f"data.source={cfg.data.source!r}"
        )
    if cfg.data.action_dim or cfg.data.proprio_dim:
        raise ValueError(f"stages.{stage}: collide predictors take no actions or proprio")


def slots_are_aligned(cfg: ExperimentConfig) -> bool:
    """True when ``cfg.data.slot_dir`` came from an object-aligned (oracle) encoder."""
    paths = list_shards(cfg.data.slot_dir, "slots")
    if not paths:
        raise FileNotFoundError(f"data.slot_dir={cfg.data.slot_dir} holds no slot shards")
    return read_shard_metadata(paths[0])["encoder_config"].get("kind") == "oracle"


def load_split(
    cfg: ExperimentConfig, episode_dir: str | None, split: str, *, limit: int | None = None
) -> list[EvalEpisode]:
    """Episodes of ``split`` (by ``split_of(id, cfg.data.val_fraction)``) in stored order, with
    their slots from ``cfg.data.slot_dir``; at most ``limit`` of them (None: all)."""
    if episode_dir is None:
        raise ValueError("StageContext.episode_dir is None; the stage reads episode shards")
    paths = list_shards(episode_dir, "episodes")
    if not paths:
        raise FileNotFoundError(f"StageContext.episode_dir={episode_dir} holds no episode shards")
    slots = load_slot_episodes(list_shards(cfg.data.slot_dir, "slots"))
    out: list[EvalEpisode] = []
    for path in paths:
        for ep in iter_episode_shard(path):
            if split_of(ep.episode_id, cfg.data.val_fraction) != split:
                continue
            if ep.world != cfg.data.world:
                raise ValueError(
                    f"{path}: episode {ep.episode_id!r} is {ep.world!r}, not {cfg.data.world}"
                )
            if ep.episode_id not in slots:
                raise ValueError(f"data.slot_dir={cfg.data.slot_dir} has no slots for {path}")
            z = slots[ep.episode_id]
            if z.shape != (ep.n_frames, cfg.data.n_slots, cfg.data.slot_dim):
                raise ValueError(
                    f"slots of {ep.episode_id!r} are {z.shape}, want (T={ep.n_frames}, "
                    f"N={cfg.data.n_slots}, D={cfg.data.slot_dim})"
                )
            out.append(EvalEpisode(ep.episode_id, ep.states, z, ep.questions, ep.info, ep.meta))
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise ValueError(
            f"{episode_dir}: no {split} episodes at val_fraction {cfg.data.val_fraction}"
        )
    return out


def recover(ep: EvalEpisode):
    """(scene, factual Episode) re-simulated from the episode's meta, checked against the stored
    states so that a changed generator cannot pass silently."""
    from cjepa.worlds.collide import scene_from_meta, simulate

    scene = scene_from_meta(ep.meta)
    factual = simulate(scene, ep.n_frames, render=False)
    if not np.array_equal(factual.states, ep.states):
        raise ValueError(
            f"episode {ep.episode_id!r}: re-simulating its meta (seed, episode_index) does not "
            "reproduce the stored states (generator version changed?)"
        )
    return scene, factual


def history_frames(end: int, history: int, frameskip: int, *, short: bool = False) -> list[int]:
    """The T_h frame indices of the window ending at ``end``. If it would start before frame 0
    this raises, or with ``short`` (a ``short_history="right_align"`` model) keeps the frames
    from the earliest one on the window's grid."""
    first = end - frameskip * (history - 1)
    if first < 0 and short and end >= 0:
        first = end % frameskip
    if first < 0:
        raise ValueError(
            f"a history of {history} frames at frameskip {frameskip} cannot end at frame {end}"
        )
    return list(range(first, end + 1, frameskip))


def horizon_steps(observe: int, frames: int, frameskip: int) -> int:
    """Rollout steps from the window ending at ``observe - 1`` to cover frames [observe, T)."""
    if not 0 < observe < frames:
        raise ValueError(f"observe must be in (0, T={frames}), got {observe}")
    return math.ceil((frames - observe) / frameskip)


def rollout_after(
    model: SlotPredictor, slots: torch.Tensor, end: int, steps: int, frameskip: int
) -> torch.Tensor:
    """Roll ``model`` out from the history window ending at frame ``end``.

    Args:
        slots: (B, T, N, D) observed slots; only the window's frames are read.
        steps: future steps; step j predicts frame ``end + frameskip * j``.

    Returns:
        (B, steps, N, D) predicted slots.
    """
    if slots.ndim != 4:
        raise ValueError(f"slots must be (B, T, N, D), got {tuple(slots.shape)}")
    short = model.cfg.short_history == "right_align"  # takes < T_h frames near the start
    idx = history_frames(end, model.history, frameskip, short=short)
    device = next(model.parameters()).device
    history = slots[:, idx].to(device)  # (B, T_h, N, D)
    return model.rollout(history, steps)[0]


def window(slots: torch.Tensor, end: int, history: int, frameskip: int) -> torch.Tensor:
    """(T_h, N, D) history window of (T, N, D) ``slots`` ending at frame ``end``."""
    return slots[history_frames(end, history, frameskip)]


@dataclass
class Probe:
    """Linear map slots (..., D) -> C decoded quantities (..., C), e.g. (x, y)."""

    weight: np.ndarray  # (D, C)
    bias: np.ndarray  # (C,)

    def __call__(self, slots: np.ndarray) -> np.ndarray:
        return slots @ self.weight + self.bias


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight (D, C), bias (C,)) of the ridge regression x (R, D) -> y (R, C); the penalty is
    ``ridge`` per row, so it does not shrink with more data."""
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, my - mx @ w


def write_slots(episode_dir: str | Path, encoder: str, out_dir: str | Path) -> Path:
    """Encode every episode shard of ``episode_dir`` with ``encoder`` (a ``load_encoder`` spec)
    into one slot shard per episode shard (same file names) in ``out_dir``, in this process and
    without Ray (``cjepa.distributed.extract`` is the scalable, resumable path). Returns
    ``out_dir``."""
    from cjepa.encoders import load_encoder

    enc = load_encoder(encoder)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in list_shards(episode_dir, "episodes"):
        eps = list(iter_episode_shard(path))
        slots = enc.encode_episodes(eps)  # [(T, N, D)]
        write_slot_shard(
            out / path.name,
            [ep.episode_id for ep in eps for _ in range(ep.n_frames)],
            np.concatenate([np.arange(ep.n_frames) for ep in eps]),
            np.concatenate(slots).astype(np.float32),
            encoder_hash=enc.hash,
            encoder_config=enc.config,
        )
    return out
