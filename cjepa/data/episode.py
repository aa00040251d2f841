"""The in-memory episode record every world produces and every shard stores.

Shape legend (see ``cjepa/types.py``): T frames, H x W pixels, K objects (or state entities),
F state features, A action dims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeData:
    """One recorded episode of a world.

    Attributes:
        episode_id: unique, stable id (e.g. ``"collide-s0-000042"``); the train/val split is a
            pure function of it.
        world: ``"collide"``, ``"pusht"`` or a published-layout name (``"clevrer"``,
            ``"dinowm_pusht"``).
        frames: (T, H, W, 3) uint8 RGB.
        states: (T, K, F) float32 ground-truth states; the world's docs name the columns.
        actions: (T, A) float32 or None; ``actions[t]`` is applied after observing frame t.
        masks: (T, H, W) integer instance masks (0 background, k + 1 for object k) or None.
        questions: list of JSON-able question dicts or None.
        info: JSON-able per-episode facts (e.g. success, coverage per step, collisions).
        meta: JSON-able generation metadata (seed, world config, generator version).
    """

    episode_id: str
    world: str
    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray | None = None
    masks: np.ndarray | None = None
    questions: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"episode {self.episode_id!r}: frames must be (T, H, W, 3) uint8, "
                f"got {self.frames.shape} {self.frames.dtype}"
            )
        t = self.frames.shape[0]
        if self.states.ndim != 3 or self.states.shape[0] != t:
            raise ValueError(
                f"episode {self.episode_id!r}: states must be (T={t}, K, F), "
                f"got {self.states.shape}"
            )
        if self.actions is not None and (self.actions.ndim != 2 or self.actions.shape[0] != t):
            raise ValueError(
                f"episode {self.episode_id!r}: actions must be (T={t}, A), got {self.actions.shape}"
            )
        if self.masks is not None and self.masks.shape != self.frames.shape[:3]:
            raise ValueError(
                f"episode {self.episode_id!r}: masks must be {self.frames.shape[:3]}, "
                f"got {self.masks.shape}"
            )

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])
