"""Slot windows for a ``DataConfig``: the one place that maps a data source to datasets."""

from __future__ import annotations

from cjepa.config import DataConfig
from cjepa.data.synthetic import SlotEpisodes, make_synthetic
from cjepa.data.windows import SlotWindows


def _windows(episodes: SlotEpisodes, cfg: DataConfig) -> SlotWindows:
    return SlotWindows(
        episodes.slots, episodes.actions, episodes.proprio,
        history=cfg.history, n_future=cfg.n_future, frameskip=cfg.frameskip, stride=cfg.stride,
    )


def load_episodes(cfg: DataConfig) -> tuple[SlotEpisodes, SlotEpisodes]:
    """(train, val) episodes; validation is the last ``val_fraction`` of the episodes."""
    episodes = make_synthetic(cfg.synthetic, cfg.slot_dim)
    n_val = max(1, round(len(episodes) * cfg.val_fraction))
    split = len(episodes) - n_val
    return episodes.select(slice(0, split)), episodes.select(slice(split, None))


def load_windows(cfg: DataConfig) -> tuple[SlotWindows, SlotWindows]:
    """(train, val) windows for ``cfg``."""
    train, val = load_episodes(cfg)
    return _windows(train, cfg), _windows(val, cfg)
