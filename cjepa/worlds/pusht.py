"""Push-T rollouts from ``gym-pusht`` (pymunk physics), recorded as :class:`EpisodeData`.

Shapes: T frames, H = W = ``size`` pixels, K = 1 state entity, F = 7 state columns, A = 2.

- ``states`` (T, 1, 7) float32 with columns :data:`STATE_COLUMNS` (the layout DINO-WM and the
  C-JEPA paper use: ``states.pth`` (5) concatenated with ``velocities.pth`` (2)). Positions are in
  the env's 512 x 512 workspace; ``block_x/y`` is the body origin (the centre of the T's top edge,
  the point the goal pose (256, 256, pi/4) refers to), not its centre of mass; the angle is
  wrapped to [0, 2 pi) as the env's own ``get_obs`` does.
- ``actions`` (T, 2) float32 are **relative**: ``target[t] - agent_pos[t]`` in pixels, DINO-WM's
  convention (its env steps to ``agent.position + action``; its loader divides by 100, we do not).
  The env's native absolute targets (in [0, 512]^2) are kept in ``info["abs_actions"]``.
- ``actions[t]`` is chosen after observing frame t; the env is stepped T - 1 times, so the last
  action is a real policy output whose outcome is not recorded.

Replay guarantee: starting states are drawn float32-representable and absolute targets are
rounded to float32 before being applied, so ``reset_to_state(env, states[0, 0])`` followed by
``info["abs_actions"]`` reproduces the stored episode bit for bit (pymunk is deterministic for
identical float inputs). Restarting mid-episode is approximate: the 7 columns omit the block's
velocity and pymunk's cached contact impulses (see ``reset_to_state``).

Speed (one process, 2-core AMD EPYC): 500-700 env steps/s, about 2.5-3.5 episodes/s of 200
frames, at 96 or 224 px alike (drawing the 512 px pygame canvas dominates). See ``policy_stats``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cjepa.data.episode import EpisodeData
from cjepa.data.splits import split_of  # re-exported: one split rule for all worlds

# The env and policies live in pusht_env and pusht_policies; their public names stay importable
# from here.
from cjepa.worlds.pusht_env import (
    ENV_ID,
    STATE_COLUMNS,
    Physics,
    clone_physics,
    make_env,
    read_state,
    reset_to_state,
    step_relative,
)
from cjepa.worlds.pusht_policies import (
    BLOCK_COM_LOCAL,
    MAX_REACH,
    POLICIES,
    MixedPolicy,
    RandomPolicy,
    ScriptedPolicy,
    block_center,
    make_policy,
    wrap_angle,
)

__all__ = [
    "BLOCK_COM_LOCAL",
    "DEFAULT_STEPS",
    "ENV_ID",
    "GENERATOR_VERSION",
    "MAX_REACH",
    "POLICIES",
    "STATE_COLUMNS",
    "MixedPolicy",
    "Physics",
    "RandomPolicy",
    "ScriptedPolicy",
    "block_center",
    "clone_physics",
    "episode_rng",
    "initial_state",
    "make_env",
    "make_episode",
    "make_policy",
    "policy_stats",
    "read_state",
    "reset_to_state",
    "split_of",
    "step_relative",
    "wrap_angle",
]

GENERATOR_VERSION = "pusht-v1"
DEFAULT_STEPS = 200  # frames per episode; under the env's 300-step TimeLimit


def initial_state(rng: np.random.Generator) -> np.ndarray:
    """A random start (5,) float64 in the env's own ranges, exactly representable in float32.

    Positions are integers like gym-pusht's reset; the angle is drawn in [0, 2 pi) (not the env's
    [-pi, pi)) so that the stored, wrapped angle equals the one applied.
    """
    positions = rng.integers([50, 50, 100, 100], [450, 450, 400, 400])
    s = np.append(positions, rng.uniform(0.0, 2 * np.pi))
    return s.astype(np.float32).astype(np.float64)


def episode_rng(seed: int, episode_index: int) -> np.random.Generator:
    """Independent stream per (seed, episode): same inputs -> same episode, in any order."""
    return np.random.default_rng(np.random.SeedSequence([seed, episode_index]))


def make_episode(
    episode_index: int,
    *,
    seed: int,
    policy: str = "random",
    steps: int = DEFAULT_STEPS,
    size: int = 96,
    env: Any | None = None,
) -> EpisodeData:
    """Roll out one Push-T episode of ``steps`` frames.

    Args:
        episode_index: index of the episode within the run.
        seed: run seed; the episode stream is ``SeedSequence([seed, episode_index])``.
        policy: ``"random"``, ``"scripted"`` or ``"mixed"`` (the expert with random blocks).
        steps: T, frames recorded (the env is stepped T - 1 times).
        size: frame side in pixels (96 as in DINO-WM's data, 224 for the encoder's input).
        env: optional env from ``make_env(size)`` to reuse (creating one costs ~10 ms).

    Returns:
        EpisodeData with frames (T, size, size, 3) uint8, states (T, 1, 7) float32, actions
        (T, 2) float32 relative. Per-frame info lists (length T): ``coverage`` of the goal,
        ``is_success`` (coverage > 0.95, the env's rule), ``n_contacts`` (during the step into
        frame t; 0 at t=0), ``block_velocity`` (vx, vy, omega), ``abs_actions`` (x, y); plus
        ``success`` (any frame), ``max_coverage`` and ``goal_pose`` (x, y, angle).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    own_env = env is None
    env = make_env(size) if own_env else env
    rng = episode_rng(seed, episode_index)
    start = initial_state(rng)
    actor = make_policy(policy, rng)
    record = _roll_out(env, actor, start, steps, size)
    if own_env:
        env.close()
    return _episode_data(record, env, seed, episode_index, policy, steps, size)


@dataclass
class _Record:
    """What a rollout observed: frames (T, H, W, 3) uint8, states (T, 7) float64, absolute
    targets (T, 2) float32, and the per-frame info lists of ``make_episode``."""

    frames: np.ndarray
    states: np.ndarray
    abs_actions: np.ndarray
    goal: np.ndarray
    coverage: list[float] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    contacts: list[int] = field(default_factory=list)
    block_velocity: list[list[float]] = field(default_factory=list)


def _roll_out(env: Any, actor: Any, start: np.ndarray, steps: int, size: int) -> _Record:
    """Reset ``env`` to ``start``, then observe, act and step ``steps - 1`` times."""
    u = env.unwrapped
    obs = reset_to_state(env, start)
    rec = _Record(
        frames=np.empty((steps, size, size, 3), dtype=np.uint8),
        states=np.empty((steps, 7), dtype=np.float64),
        abs_actions=np.empty((steps, 2), dtype=np.float32),
        goal=np.asarray(u.goal_pose, dtype=np.float64),
    )
    n_contacts = 0
    for t in range(steps):
        if obs["pixels"].shape != (size, size, 3):
            raise ValueError(f"env renders {obs['pixels'].shape}, expected size {size}")
        rec.frames[t] = obs["pixels"]
        rec.states[t] = read_state(env)
        cov = float(u._get_coverage())
        rec.coverage.append(cov)
        rec.success.append(bool(cov > u.success_threshold))
        rec.contacts.append(int(n_contacts))
        rec.block_velocity.append([*map(float, u.block.velocity), float(u.block.angular_velocity)])
        # float32 targets so that the stored actions replay exactly.
        rec.abs_actions[t] = actor(rec.states[t], rec.goal).astype(np.float32)
        if t + 1 < steps:
            obs, _, _, _, step_info = env.step(rec.abs_actions[t].astype(np.float64))
            n_contacts = step_info["n_contacts"]
    return rec


def _episode_data(
    rec: _Record, env: Any, seed: int, episode_index: int, policy: str, steps: int, size: int
) -> EpisodeData:
    """The rollout as an :class:`EpisodeData` (relative actions; see ``make_episode``)."""
    rel_actions = (rec.abs_actions.astype(np.float64) - rec.states[:, :2]).astype(np.float32)
    return EpisodeData(
        episode_id=f"pusht-s{seed}-{episode_index:06d}",
        world="pusht",
        frames=rec.frames,
        states=rec.states.astype(np.float32)[:, None, :],
        actions=rel_actions,
        info={
            "coverage": rec.coverage,
            "is_success": rec.success,
            "success": bool(any(rec.success)),
            "max_coverage": float(max(rec.coverage)),
            "n_contacts": rec.contacts,
            "block_velocity": rec.block_velocity,
            "abs_actions": rec.abs_actions.astype(np.float64).tolist(),
            "goal_pose": rec.goal.tolist(),
        },
        meta={
            "seed": int(seed),
            "episode_index": int(episode_index),
            "policy": policy,
            "steps": int(steps),
            "size": int(size),
            "env_id": ENV_ID,
            "gym_pusht_version": importlib.metadata.version("gym-pusht"),
            "generator_version": GENERATOR_VERSION,
            "state_columns": list(STATE_COLUMNS),
            "action_space": "relative",
            "action_definition": "target[t] - agent_pos[t], pixels; absolute in info.abs_actions",
            "success_threshold": float(env.unwrapped.success_threshold),
        },
    )


def policy_stats(
    policy: str,
    n_episodes: int = 50,
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    size: int = 96,
) -> dict[str, float]:
    """Block displacement, success and generation speed of a policy over ``n_episodes``.

    Displacement is |block origin at the last frame - at the first|, in pixels; rotation is the
    absolute wrapped angle change; success is the env's (coverage > 0.95 at any frame).
    """
    import time

    env = make_env(size)
    disp, rot, succ, maxcov = [], [], [], []
    t0 = time.perf_counter()
    for i in range(n_episodes):
        ep = make_episode(i, seed=seed, policy=policy, steps=steps, size=size, env=env)
        s = ep.states[:, 0].astype(np.float64)
        disp.append(float(np.linalg.norm(s[-1, 2:4] - s[0, 2:4])))
        rot.append(abs(wrap_angle(s[-1, 4] - s[0, 4])))
        succ.append(float(ep.info["success"]))
        maxcov.append(ep.info["max_coverage"])
    seconds = time.perf_counter() - t0
    env.close()
    return dict(
        episodes=n_episodes,
        displacement_mean=float(np.mean(disp)),
        displacement_median=float(np.median(disp)),
        moved_fraction=float(np.mean(np.asarray(disp) > 5.0)),
        rotation_mean=float(np.mean(rot)),
        success_rate=float(np.mean(succ)),
        max_coverage_mean=float(np.mean(maxcov)),
        episodes_per_s=n_episodes / seconds,
        steps_per_s=n_episodes * (steps - 1) / seconds,
    )
