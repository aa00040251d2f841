"""Slot windows for a ``DataConfig``: the one place that maps a data source to datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cjepa.config import DataConfig
from cjepa.data.shards import iter_episode_shard, load_slot_episodes
from cjepa.data.splits import list_shards, split_of
from cjepa.data.synthetic import make_synthetic
from cjepa.data.windows import SlotWindows
from cjepa.worlds.registry import get_world

#: Push-T proprio = agent [x, y, vx, vy]: these columns of its 7-column state (its WorldSpec's
#: ``proprio_columns``; other worlds declare their own).
PUSHT_PROPRIO_COLUMNS = list(get_world("pusht").proprio_columns)


@dataclass
class EpisodeSet:
    """Slot episodes of one split: lists of (L_e, N, D), (L_e, A), (L_e, P) tensors."""

    ids: list[str]
    slots: list[torch.Tensor]
    actions: list[torch.Tensor] | None = None
    proprio: list[torch.Tensor] | None = None

    def windows(self, cfg: DataConfig) -> SlotWindows:
        return SlotWindows(
            self.slots,
            self.actions,
            self.proprio,
            history=cfg.history,
            n_future=cfg.n_future,
            frameskip=cfg.frameskip,
            stride=cfg.stride,
        )


def _synthetic(cfg: DataConfig) -> tuple[EpisodeSet, EpisodeSet]:
    eps = make_synthetic(cfg.synthetic, cfg.slot_dim)
    n_val = max(1, round(len(eps) * cfg.val_fraction))
    cut = len(eps) - n_val
    ids = [f"synthetic-s{cfg.synthetic.seed}-{i:06d}" for i in range(len(eps))]

    def part(sl: slice) -> EpisodeSet:
        pick = lambda x: None if x is None else list(x[sl].unbind(0))  # noqa: E731
        return EpisodeSet(
            ids[sl], list(eps.slots[sl].unbind(0)), pick(eps.actions), pick(eps.proprio)
        )

    return part(slice(0, cut)), part(slice(cut, None))


def _aux_from_episodes(cfg: DataConfig, ids: set[str]) -> tuple[dict, dict]:
    """Raw actions and proprio per episode id, read from the episode shards."""
    actions, proprio = {}, {}
    columns = list(get_world(cfg.world).proprio_columns)
    for path in list_shards(cfg.episode_dir, "episodes"):
        for ep in iter_episode_shard(path):
            if ep.episode_id not in ids:
                continue
            if ep.actions is None:
                raise ValueError(f"{path}: episode {ep.episode_id!r} has no actions")
            actions[ep.episode_id] = ep.actions.astype(np.float32)
            proprio[ep.episode_id] = ep.states[:, 0, columns].astype(np.float32)
    missing = sorted(ids - set(actions))
    if missing:
        raise ValueError(
            f"data.episode_dir={cfg.episode_dir}: no episode shards hold {missing[:5]}"
        )
    return actions, proprio


def _zscore(train: list[torch.Tensor], *others: list[torch.Tensor]) -> None:
    """Normalise in place with statistics of the training episodes only."""
    flat = torch.cat(train)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
    for group in (train, *others):
        for i, x in enumerate(group):
            group[i] = (x - mean) / std


def read_slot_dir(cfg: DataConfig) -> dict[str, np.ndarray]:
    """``{episode id: (T, N, D)}`` of every slot shard in ``cfg.slot_dir``, (N, D) checked."""
    paths = list_shards(cfg.slot_dir, "slots")
    if not paths:
        raise FileNotFoundError(f"data.slot_dir={cfg.slot_dir} holds no slot shards")
    episodes = load_slot_episodes(paths)
    shape = next(iter(episodes.values())).shape[1:]
    if shape != (cfg.n_slots, cfg.slot_dim):
        raise ValueError(
            f"slot shards in {cfg.slot_dir} hold (N, D) = {shape}, but the config "
            f"says data.n_slots={cfg.n_slots}, data.slot_dim={cfg.slot_dim}"
        )
    return episodes


def _slots(cfg: DataConfig) -> tuple[EpisodeSet, EpisodeSet]:
    episodes = read_slot_dir(cfg)
    sets = {"train": EpisodeSet([], []), "val": EpisodeSet([], [])}
    for eid, arr in episodes.items():
        part = sets[split_of(eid, cfg.val_fraction)]
        part.ids.append(eid)
        part.slots.append(torch.from_numpy(arr))
    if not sets["train"].ids or not sets["val"].ids:
        raise ValueError(
            f"{cfg.slot_dir}: {len(episodes)} episodes give an empty train or val "
            f"split at data.val_fraction={cfg.val_fraction}"
        )
    if cfg.action_dim:
        actions, proprio = _aux_from_episodes(cfg, set(episodes))
        for part in sets.values():
            part.actions = [torch.from_numpy(actions[i]) for i in part.ids]
            part.proprio = [torch.from_numpy(proprio[i]) for i in part.ids]
        _zscore(sets["train"].actions, sets["val"].actions)
        _zscore(sets["train"].proprio, sets["val"].proprio)
    return sets["train"], sets["val"]


def load_episodes(cfg: DataConfig) -> tuple[EpisodeSet, EpisodeSet]:
    """(train, val) episodes for ``cfg``."""
    return _synthetic(cfg) if cfg.source == "synthetic" else _slots(cfg)


def load_windows(cfg: DataConfig) -> tuple[SlotWindows, SlotWindows]:
    """(train, val) windows for ``cfg``."""
    train, val = load_episodes(cfg)
    return train.windows(cfg), val.windows(cfg)


def aux_statistics(cfg: DataConfig) -> dict[str, torch.Tensor]:
    """The train-split statistics that ``load_episodes`` z-scores actions and proprio with.

    Planning needs them to turn normalised actions back into env actions (and to normalise
    observed proprio). Same episodes (those in ``cfg.slot_dir``), same split and same formula
    (mean, unbiased std clamped at 1e-6) as ``_slots``; plus per-dim min and max of the raw
    training values.

    Returns:
        ``{"action_mean", "action_std", "action_min", "action_max"}`` each (A,), and the same
        four ``proprio_*`` entries (P,); float32.
    """
    if cfg.source != "slots" or not cfg.action_dim:
        raise ValueError(
            f"data.source={cfg.source!r}, data.world={cfg.world!r}, data.episode_dir="
            f"{cfg.episode_dir!r}: auxiliary statistics need slot data with actions"
        )
    paths = list_shards(cfg.slot_dir, "slots")
    if not paths:
        raise FileNotFoundError(f"data.slot_dir={cfg.slot_dir} holds no slot shards")
    ids = set(load_slot_episodes(paths))
    train = sorted(i for i in ids if split_of(i, cfg.val_fraction) == "train")
    if not train:
        raise ValueError(f"{cfg.slot_dir}: no training episodes at val_fraction={cfg.val_fraction}")
    actions, proprio = _aux_from_episodes(cfg, set(train))
    out: dict[str, torch.Tensor] = {}
    for name, table in (("action", actions), ("proprio", proprio)):
        flat = torch.cat([torch.from_numpy(table[i]) for i in train])
        out[f"{name}_mean"], out[f"{name}_std"] = flat.mean(0), flat.std(0).clamp_min(1e-6)
        out[f"{name}_min"], out[f"{name}_max"] = flat.min(0).values, flat.max(0).values
    return out
