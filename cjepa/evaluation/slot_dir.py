"""Dynamics metrics on every episode of a slot directory, with no episode shards behind it.

Released slot files (``cjepa.data.release_slots``) come without the videos' states or
questions, so the episode-based stages cannot run on them. What can be scored from the slots
alone is prediction itself: the predictor's future MSE on every window (full history visible)
beside the copy-last and constant-velocity baselines on the same cells, the ``*_all`` metrics
of ``cjepa.evaluation.dynamics`` (no object labels, so no present/interaction split). Point
``data.slot_dir`` at the split to score (``OUT/val`` of an import): every episode in it is used.
"""

from __future__ import annotations

from typing import Any

import torch

from cjepa.config import ExperimentConfig
from cjepa.data.sources import read_slot_dir
from cjepa.data.windows import SlotWindows


def slot_dir_windows(cfg: ExperimentConfig) -> SlotWindows:
    """The windows of every episode in ``cfg.data.slot_dir`` (ids sorted), slots only."""
    d = cfg.data
    if d.slot_dir is None:
        raise ValueError("data.slot_dir is not set: nothing to score")
    if d.action_dim or d.proprio_dim:
        raise ValueError(
            f"final_validation windows=slot_dir scores slot-only predictors; data.world="
            f"{d.world!r} with data.episode_dir gives actions/proprio: use windows=episodes"
        )
    episodes = read_slot_dir(d)
    return SlotWindows(  # raises if no episode holds a window
        [torch.from_numpy(z) for z in episodes.values()],
        history=d.history,
        n_future=d.n_future,
        frameskip=d.frameskip,
    )


def score_slot_dir(
    cfg: ExperimentConfig, model: Any, *, batch_size: int = 512, limit: int = 0
) -> dict[str, float]:
    """``future_all``, ``copy_last_all``, ``linear_all`` and ``windows`` of ``model`` on
    :func:`slot_dir_windows` (the first ``limit`` windows; 0: all)."""
    from cjepa.evaluation.dynamics import score_windows

    windows = slot_dir_windows(cfg)
    return score_windows(model, windows, None, batch_size=batch_size, limit=limit)
