"""Push-T planning evaluation: DINO-WM's protocol (SPEC section 9) for any planner, batched.

Per seed: ``episodes`` held-out (val split) trajectories and a start frame on each are drawn;
each env is restored to the stored start state (checked to ``RESTORE_TOL``), the goal is the
stored state ``offset`` env steps later, and the planner gets ``budget`` env steps. All episodes
of a seed advance together, so one planner call (one CEM cost call) covers every episode.

Success (both recorded, ``protocol.success`` / ``protocol.when`` pick the headline):
- ``block``: block position error < 20 px and wrapped angle error < pi/9 (the paper's text).
- ``public``: the public code's ``eval_state``: the L2 norm over agent AND block positions
  (4 numbers) < 20, angle error ``min(|d|, 2 pi - |d|)`` < pi/9 (the SPEC's known trap).
Each is evaluated at the ``final`` state and at ``any_step`` of the budget (start excluded).
With ``nontrivial`` (default) starts whose block already passes ``block`` against the goal are
not drawn: scripted data often leaves the block still for 25 steps. ``replay`` (stored actions)
is the protocol's self-check: it must reach every goal.

History for the world model: T_h frames at the model's frameskip f ending at the current frame.
At the start they are the stored trajectory's frames before the start (``min_start`` frames of
it are kept, default 10 = (3 - 1) x 5); if fewer exist, the earliest one is repeated, with zero
(dataset-mean) actions between the repeats. Frame encoders see frames rendered at the stored
episode size; ``oracle:pusht`` reads states. Actions are planned in z-scored space (train-split
statistics), clipped to the train-split range, and executed as relative env actions in pixels.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from cjepa.data.shards import iter_episode_shard
from cjepa.data.splits import list_shards, split_of
from cjepa.planning.cem import CEMConfig
from cjepa.worlds import pusht

SUCCESS = ("block", "public")
WHEN = ("final", "any_step")
POS_TOL, ANGLE_TOL = 20.0, math.pi / 9
RESTORE_TOL = 1e-4  # px / rad: stored start state vs the restored env's state


def angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| wrapped to [0, pi], for any angles (not only [0, 2 pi))."""
    return np.abs((np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi)


def success(states: np.ndarray, goals: np.ndarray, definition: str) -> np.ndarray:
    """Whether each state (..., >=5) reached its goal (..., >=5) by ``definition`` -> bool (...)."""
    s, g = np.asarray(states, np.float64), np.asarray(goals, np.float64)
    if definition == "block":
        pos = np.linalg.norm(s[..., 2:4] - g[..., 2:4], axis=-1)
        return (pos < POS_TOL) & (angle_error(s[..., 4], g[..., 4]) < ANGLE_TOL)
    if definition == "public":  # verbatim rule of DINO-WM's PushTWrapper.eval_state
        pos = np.linalg.norm(s[..., :4] - g[..., :4], axis=-1)
        d = np.abs(g[..., 4] - s[..., 4])
        return (pos < POS_TOL) & (np.minimum(d, 2 * np.pi - d) < ANGLE_TOL)
    raise ValueError(f"success definition must be one of {SUCCESS}, got {definition!r}")


@dataclass
class PlanProtocol:
    """Every setting of a Push-T planning evaluation (recorded with each result)."""

    episodes: int = 50
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    offset: int = 25
    budget: int = 50
    success: str = "block"
    when: str = "final"
    val_fraction: float = 0.1
    min_start: int = 10
    cem: CEMConfig = field(default_factory=CEMConfig)
    execute: int | None = None  # blocks executed per plan; None = the whole horizon (paper)
    clip_actions: bool = True
    nontrivial: bool = True  # skip starts already within the block success test of the goal

    def __post_init__(self) -> None:
        for name in ("episodes", "offset", "budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"protocol.{name} must be >= 1, got {getattr(self, name)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"protocol.seeds must be distinct and non-empty, got {self.seeds}")
        if self.success not in SUCCESS:
            raise ValueError(f"protocol.success must be one of {SUCCESS}, got {self.success!r}")
        if self.when not in WHEN:
            raise ValueError(f"protocol.when must be one of {WHEN}, got {self.when!r}")
        if not 0 < self.val_fraction < 1 or self.min_start < 0:
            raise ValueError(
                f"protocol.val_fraction must be in (0, 1) and protocol.min_start >= 0, got "
                f"{self.val_fraction} and {self.min_start}"
            )
        if self.execute is not None and not 1 <= self.execute <= self.cem.horizon:
            raise ValueError(f"protocol.execute must be in [1, {self.cem.horizon}] or None")

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "cem": self.cem.to_dict(),
            "pos_tol": POS_TOL,
            "angle_tol": ANGLE_TOL,
            "restore_tol": RESTORE_TOL,
        }


@dataclass
class PushTData:
    """Val-split episodes (whole records) and the train split's raw actions (M, 2)."""

    val: list[Any]
    train_actions: np.ndarray

    def action_stats(self) -> dict[str, np.ndarray]:
        a = self.train_actions.astype(np.float64)
        return {
            "mean": a.mean(0),
            "std": np.maximum(a.std(0, ddof=1), 1e-6),
            "min": a.min(0),
            "max": a.max(0),
        }


def load_data(data_dir: str | Path, val_fraction: float) -> PushTData:
    """Read the Push-T episode shards of ``data_dir`` (keeps frames of val episodes only)."""
    paths = list_shards(data_dir, "episodes")
    if not paths:
        raise FileNotFoundError(f"{data_dir} holds no episode shards")
    val, train = [], []
    for path in paths:
        for ep in iter_episode_shard(path):
            if ep.world != "pusht" or ep.states.shape[1:] != (1, 7) or ep.actions is None:
                raise ValueError(f"{path}: episode {ep.episode_id!r} is not a Push-T episode")
            if split_of(ep.episode_id, val_fraction) == "val":
                val.append(ep)
            else:
                train.append(ep.actions)
    if not val or not train:
        raise ValueError(f"{data_dir}: empty train or val split at val_fraction={val_fraction}")
    return PushTData(val, np.concatenate(train))


def select_episodes(data: PushTData, protocol: PlanProtocol, seed: int) -> list[tuple[Any, int]]:
    """(episode, start frame) pairs for one seed, drawn from ``SeedSequence([seed, 7])``.

    Distinct val episodes; the start is uniform over frames in [min_start, T - 1 - offset] and,
    with ``protocol.nontrivial``, only those whose block does not already meet the ``block``
    success test against the goal (scripted data often leaves the block still for 25 steps).
    """
    lo, off = protocol.min_start, protocol.offset
    pool = []
    for ep in data.val:
        s = ep.states[:, 0].astype(np.float64)
        starts = np.arange(lo, max(lo, ep.n_frames - off))
        if protocol.nontrivial and starts.size:
            starts = starts[~success(s[starts], s[starts + off], "block")]
        if starts.size:
            pool.append((ep, starts))
    if len(pool) < protocol.episodes:
        raise ValueError(
            f"protocol.episodes={protocol.episodes} but only {len(pool)} val episodes have a "
            f"usable start (>= {lo + off + 1} frames, nontrivial={protocol.nontrivial}); "
            "generate more data or lower the count"
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


def evaluate(planner: Planner, data: PushTData, protocol: PlanProtocol) -> dict[str, Any]:
    """Run ``planner`` on every seed's episodes; per-episode rows, rates and the protocol."""
    rows, per_seed, t_all = [], {}, time.perf_counter()
    # env steps over all seeds; shown only on a terminal (tqdm: disable=None)
    bar = tqdm(total=protocol.budget * len(protocol.seeds), unit="step", desc="plan", disable=None)
    for seed in protocol.seeds:
        chosen = select_episodes(data, protocol, seed)
        rollout = Rollout(chosen, protocol)
        planner.begin(rollout, seed)
        t0, plan_s = time.perf_counter(), 0.0
        while rollout.steps < protocol.budget:
            t1 = time.perf_counter()
            actions = planner.act(rollout)
            plan_s += time.perf_counter() - t1
            before = rollout.steps
            rollout.step(actions[:, : protocol.budget - rollout.steps])
            bar.update(rollout.steps - before)
        calls, b = planner.calls(), rollout.batch
        seed_rows = episode_rows(rollout, seed)
        for r in seed_rows:
            r.update(
                plan_wall_s=plan_s / b,  # batched: the seed's planning time shared equally
                predictor_calls=calls.get("rollout_steps", 0),  # forwards each episode went through
                sim_steps=calls.get("sim_steps", 0) / b,  # oracle planner's simulated env steps
            )
        rows += seed_rows
        per_seed[str(seed)] = {
            "wall_s": time.perf_counter() - t0,
            "plan_wall_s": plan_s,
            **calls,
        }
        rollout.close()
    bar.close()
    rates = {
        f"{d}/{w}": float(np.mean([r[f"success_{d}_{w}"] for r in rows]))
        for d in SUCCESS
        for w in WHEN
    }
    return {
        "planner": planner.name,
        "success_rate": rates[f"{protocol.success}/{protocol.when}"],
        "success_rates": rates,
        "start_already_success": float(np.mean([r["start_success_block"] for r in rows])),
        "wall_s": time.perf_counter() - t_all,
        "plan_wall_s_per_episode": float(np.mean([r["plan_wall_s"] for r in rows])),
        "predictor_calls_per_episode": float(np.mean([r["predictor_calls"] for r in rows])),
        "sim_steps_per_episode": float(np.mean([r["sim_steps"] for r in rows])),
        "per_seed": per_seed,
        "episodes": rows,
        "protocol": {
            **protocol.to_dict(),
            "headline": f"{protocol.success}/{protocol.when}",
            "episode_ids": {
                str(s): [[e.episode_id, t] for e, t in select_episodes(data, protocol, s)]
                for s in protocol.seeds
            },
            "planner": planner.settings(),
            "cem": planner.settings().get("cem"),  # None: the planner does not use CEM
            "history": HISTORY_NOTE,
            "gym_pusht": importlib.metadata.version("gym-pusht"),
        },
    }


HISTORY_NOTE = (
    "stored frames before the start at the model frameskip; earliest repeated "
    "(zero actions) if the start is too early"
)


def episode_rows(rollout: Rollout, seed: int) -> list[dict[str, Any]]:
    """Per-episode outcome: success by definition x timing, final and best errors."""
    done = rollout.states[:, rollout.now :]  # (B, 1 + budget, 7): start ... final
    g = rollout.goals[:, None]
    pos = np.linalg.norm(done[..., 2:4] - g[..., 2:4], axis=-1)  # (B, 1 + budget)
    ang = angle_error(done[..., 4], g[..., 4])
    rows = []
    for i in range(rollout.batch):
        row: dict[str, Any] = {
            "seed": seed,
            "episode_id": rollout.ids[i],
            "start": rollout.starts[i],
            "start_pixel_diff": rollout.pixel_diff[i],
            "goal": rollout.starts[i] + rollout.offset,
        }
        for d in SUCCESS:
            ok = success(done[i], rollout.goals[i], d)
            row[f"success_{d}_final"] = bool(ok[-1])
            row[f"success_{d}_any_step"] = bool(ok[1:].any())  # the start does not count
            row[f"start_success_{d}"] = bool(ok[0])
        row.update(
            block_pos_err=float(pos[i, -1]),
            block_angle_err=float(ang[i, -1]),
            agent_pos_err=float(np.linalg.norm(done[i, -1, :2] - rollout.goals[i, :2])),
            start_block_pos_err=float(pos[i, 0]),
            min_block_pos_err=float(pos[i].min()),
            start_state=done[i, 0].tolist(),
            goal_state=rollout.goals[i].tolist(),
            final_state=done[i, -1].tolist(),
        )
        rows.append(row)
    return rows
