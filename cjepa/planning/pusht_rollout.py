"""Push-T planning episodes: the split's data, the seeded start choice, the batched envs.

``load_data`` reads the protocol split's episodes (and the train split's actions for the action
statistics), ``select_episodes`` draws each seed's (episode, start) pairs, ``Rollout`` restores
B envs to those starts and steps them together, and ``Planner`` is what it is stepped by.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cjepa.data.shards import iter_episode_shard
from cjepa.data.splits import list_shards, split_of
from cjepa.planning.pusht_protocol import RESTORE_TOL, SPLITS, PlanProtocol, angle_error, success
from cjepa.worlds import pusht


@dataclass
class PushTData:
    """The protocol split's episodes (whole records) and the train split's raw actions (M, 2)."""

    episodes: list[Any]
    train_actions: np.ndarray
    split: str = "val"

    def action_stats(self) -> dict[str, np.ndarray]:
        a = self.train_actions.astype(np.float64)
        return {
            "mean": a.mean(0),
            "std": np.maximum(a.std(0, ddof=1), 1e-6),
            "min": a.min(0),
            "max": a.max(0),
        }


def load_data(data_dir: str | Path, val_fraction: float, split: str = "val") -> PushTData:
    """Read the Push-T episode shards of ``data_dir``; keeps whole records of ``split`` only."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    paths = list_shards(data_dir, "episodes")
    if not paths:
        raise FileNotFoundError(f"{data_dir} holds no episode shards")
    kept, train = [], []
    for path in paths:
        for ep in iter_episode_shard(path):
            if ep.world != "pusht" or ep.states.shape[1:] != (1, 7) or ep.actions is None:
                raise ValueError(f"{path}: episode {ep.episode_id!r} is not a Push-T episode")
            which = split_of(ep.episode_id, val_fraction)
            if which == "train":
                train.append(ep.actions)
            if which == split:
                kept.append(ep)
    if not kept or not train:
        raise ValueError(
            f"{data_dir}: no {split} or no train episodes at val_fraction={val_fraction}"
        )
    return PushTData(kept, np.concatenate(train), split)


def select_episodes(data: PushTData, protocol: PlanProtocol, seed: int) -> list[tuple[Any, int]]:
    """(episode, start frame) pairs for one seed, drawn from ``SeedSequence([seed, 7])``.

    Distinct episodes of ``protocol.split``; the start is uniform over frames in
    [min_start, T - 1 - offset] and, with ``protocol.nontrivial``, only those whose block does
    not already meet the ``block`` success test against the goal (scripted data often leaves the
    block still for 25 steps).
    """
    if data.split != protocol.split:
        raise ValueError(f"data holds the {data.split} split, protocol.split={protocol.split!r}")
    lo, off = protocol.min_start, protocol.offset
    pool = []
    for ep in data.episodes:
        s = ep.states[:, 0].astype(np.float64)
        starts = np.arange(lo, max(lo, ep.n_frames - off))
        if protocol.nontrivial and starts.size:
            starts = starts[~success(s[starts], s[starts + off], "block")]
        if starts.size:
            pool.append((ep, starts))
    if len(pool) < protocol.episodes:
        raise ValueError(
            f"protocol.episodes={protocol.episodes} but only {len(pool)} {protocol.split} "
            f"episodes have a usable start (>= {lo + off + 1} frames, "
            f"nontrivial={protocol.nontrivial}); generate more data or lower the count"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    picks = rng.choice(len(pool), size=protocol.episodes, replace=False)
    return [(pool[i][0], int(rng.choice(pool[i][1]))) for i in picks]


class Rollout:
    """B envs restored to stored start states, stepped together; their observed timelines.

    Attributes (L = frames observed so far, including the kept pre-start frames):
        states (B, L, 7) float64, frames (B, L, H, W, 3) uint8, actions (B, L - 1, 2) raw
        relative actions between frames; goals (B, 7), goal_frames (B, H, W, 3); ``now`` = the
        index of the start frame, so ``states[:, now:]`` is what the planner produced.
    """

    def __init__(self, chosen: list[tuple[Any, int]], protocol: PlanProtocol) -> None:
        sizes = {ep.frames.shape[1:3] for ep, _ in chosen}
        if len(sizes) != 1:
            raise ValueError(f"episodes disagree on frame size: {sorted(sizes)}")
        size = sizes.pop()[0]
        self.ids = [ep.episode_id for ep, _ in chosen]
        self.starts = [s for _, s in chosen]
        self.goal_pose = [ep.info.get("goal_pose") for ep, _ in chosen]  # oracle encoder input
        k, off = protocol.min_start, protocol.offset
        self.offset = off
        pre = [np.clip(np.arange(s - k, s + 1), 0, None) for _, s in chosen]  # repeats if s < k
        st = lambda ep: ep.states[:, 0].astype(np.float64)  # noqa: E731
        self.states = np.stack([st(ep)[i] for (ep, _), i in zip(chosen, pre, strict=True)])
        self.frames = np.stack([ep.frames[i] for (ep, _), i in zip(chosen, pre, strict=True)])
        acts = [
            np.where((i[:-1] == i[1:])[:, None], np.nan, ep.actions[i[:-1]])
            for (ep, _), i in zip(chosen, pre, strict=True)
        ]
        self.actions = np.stack(acts).astype(np.float64)  # NaN marks repeated (no) actions
        self.goals = np.stack([st(ep)[s + off] for ep, s in chosen])
        self.goal_frames = np.stack([ep.frames[s + off] for ep, s in chosen])
        self.stored_actions = np.stack([ep.actions[s : s + off] for ep, s in chosen])  # (B, off, 2)
        self.now = k
        self.envs = [pusht.make_env(size) for _ in chosen]
        self.pixel_diff = []  # per episode: max |re-rendered - stored| start frame pixel value
        for env, (ep, s) in zip(self.envs, chosen, strict=True):
            obs = pusht.reset_to_state(env, ep.states[s, 0], block_velocity=_block_vel(ep, s))
            err = np.abs(pusht.read_state(env)[:5] - ep.states[s, 0, :5])
            err[4] = angle_error(pusht.read_state(env)[4], ep.states[s, 0, 4])
            if err.max() > RESTORE_TOL:
                raise ValueError(
                    f"episode {ep.episode_id!r} frame {s}: restored state is off "
                    f"by {err.max():.2e} > {RESTORE_TOL}"
                )
            diff = np.abs(obs["pixels"].astype(np.int16) - ep.frames[s].astype(np.int16))
            self.pixel_diff.append(int(diff.max()))

    @property
    def batch(self) -> int:
        return len(self.envs)

    @property
    def steps(self) -> int:
        return self.states.shape[1] - 1 - self.now

    def step(self, actions: np.ndarray) -> None:
        """Apply raw relative actions (B, k, 2) in pixels, one env step each."""
        for j in range(actions.shape[1]):
            new_s, new_f = [], []
            for env, a in zip(self.envs, actions[:, j], strict=True):
                obs, *_ = pusht.step_relative(env, a)
                new_s.append(pusht.read_state(env))
                new_f.append(obs["pixels"])
            self.states = np.concatenate([self.states, np.stack(new_s)[:, None]], axis=1)
            self.frames = np.concatenate([self.frames, np.stack(new_f)[:, None]], axis=1)
            self.actions = np.concatenate([self.actions, actions[:, j : j + 1]], axis=1)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class Planner(Protocol):
    """A Push-T planner: ``act`` returns the raw relative actions (B, k, 2) to execute next."""

    name: str

    def settings(self) -> dict[str, Any]: ...
    def begin(self, rollout: Rollout, seed: int) -> None: ...
    def act(self, rollout: Rollout) -> np.ndarray: ...
    def calls(self) -> dict[str, float]: ...


def _block_vel(ep: Any, t: int) -> np.ndarray | None:
    vel = ep.info.get("block_velocity")
    return None if vel is None else np.asarray(vel[t], dtype=np.float64)
