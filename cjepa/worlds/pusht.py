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
import os
from typing import Any

import numpy as np

from cjepa.data.episode import EpisodeData
from cjepa.data.splits import split_of  # noqa: F401  (re-exported: one split rule for all worlds)

# pygame (imported by gym_pusht) must not look for a display on headless machines.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

STATE_COLUMNS: tuple[str, ...] = (
    "agent_x",
    "agent_y",
    "block_x",
    "block_y",
    "block_angle",
    "agent_vx",
    "agent_vy",
)
ENV_ID = "gym_pusht/PushT-v0"
GENERATOR_VERSION = "pusht-v1"
POLICIES: tuple[str, ...] = ("random", "scripted", "mixed")
DEFAULT_STEPS = 200  # frames per episode; under the env's 300-step TimeLimit
MAX_REACH = 40.0  # px: |target - agent| cap; DINO-WM's relative actions have std ~20 px
BLOCK_COM_LOCAL = np.array([0.0, 45.0])  # T-block centre of mass in its body frame


def make_env(size: int = 96) -> Any:
    """The gym-pusht env with (size, size, 3) pixel observations plus the agent position."""
    import gym_pusht  # noqa: F401  (registers ENV_ID)
    import gymnasium as gym

    return gym.make(
        ENV_ID,
        obs_type="pixels_agent_pos",
        render_mode="rgb_array",
        observation_width=size,
        observation_height=size,
        disable_env_checker=True,
    )


def reset_to_state(
    env: Any, state_row: np.ndarray, *, block_velocity: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Reset ``env`` so that its physical state equals ``state_row`` exactly; return the obs.

    Args:
        env: an env from :func:`make_env`.
        state_row: (7,) in :data:`STATE_COLUMNS` order or (5,) without the agent velocity (then 0).
        block_velocity: optional (3,) block (vx, vy, angular velocity); 0 if absent, which is exact
            at an episode's first frame and an approximation mid-episode.

    The env's own ``reset_to_state`` option sets the block position before its angle, which
    rotates the body about its centre of mass and moves the origin away from the requested
    value; it then runs one physics step. Here the space is rebuilt (no cached contacts), the
    angle is set before the position, and shapes are re-indexed instead of stepping, so the
    stored numbers come back unchanged.
    """
    row = np.asarray(state_row, dtype=np.float64).reshape(-1)
    if row.shape[0] not in (5, 7):
        raise ValueError(f"state_row must have 5 or 7 values, got shape {row.shape}")
    env.reset()  # resets the wrappers' step counters; its random start is discarded below
    u = env.unwrapped
    u._setup()
    u.block.angle = float(row[4])
    u.block.position = (float(row[2]), float(row[3]))
    u.agent.position = (float(row[0]), float(row[1]))
    u.agent.velocity = (float(row[5]), float(row[6])) if row.shape[0] == 7 else (0.0, 0.0)
    if block_velocity is not None:
        bv = np.asarray(block_velocity, dtype=np.float64).reshape(3)
        u.block.velocity = (float(bv[0]), float(bv[1]))
        u.block.angular_velocity = float(bv[2])
    # Refresh the shapes' cached world vertices, which rendering and coverage read.
    u.space.reindex_shapes_for_body(u.block)
    u.space.reindex_shapes_for_body(u.agent)
    return u.get_obs()


def read_state(env: Any) -> np.ndarray:
    """The env's current state, (7,) float64 in :data:`STATE_COLUMNS` order."""
    u = env.unwrapped
    return np.array(
        [*u.agent.position, *u.block.position, u.block.angle % (2 * np.pi), *u.agent.velocity]
    )


def step_relative(env: Any, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
    """Step with a relative action (2,) in pixels: target = agent position + action."""
    target = np.asarray(env.unwrapped.agent.position) + np.asarray(action, dtype=np.float64)
    return env.step(target)


class Physics:
    """An exact, render-free copy of an env's pymunk world that steps like ``env.step``.

    ``clone_physics(env)`` deep-copies the space with its bodies, velocities and cached contact
    arbiters (pymunk pickles them), so stepping a copy reproduces the env's own future bit for
    bit, mid-episode too, unlike ``reset_to_state`` (which drops the contacts). It skips the
    env's coverage, observation and rendering, which dominate ``env.step``'s cost. The copy's
    collision handler still points at the source env (it only counts contacts there).
    """

    def __init__(self, env: Any, space: Any, agent: Any, block: Any) -> None:
        self.env, self.space, self.agent, self.block = env, space, agent, block

    def copy(self) -> Physics:
        """An independent copy of this world (same source env)."""
        import copy

        u = self.env
        space, agent, block = copy.deepcopy((self.space, self.agent, self.block), {id(u): u})
        for src, body in ((self.agent, agent), (self.block, block)):
            # pymunk restores the position before the centre of gravity, which leaves chipmunk's
            # centre-of-mass point 45 px off the T's; setting the pose again (angle, then
            # position, as reset_to_state does) recomputes it. Then refresh the shapes' cache.
            body.angle = src.angle
            body.position = src.position
            space.reindex_shapes_for_body(body)
        return Physics(u, space, agent, block)

    def step(self, target: np.ndarray) -> None:
        """One env step toward the absolute target (2,): ``PushTEnv.step``'s physics loop."""
        from pymunk.vec2d import Vec2d

        u, action = self.env, np.asarray(target, dtype=np.float64)
        for _ in range(int(1 / (u.dt * u.control_hz))):
            acceleration = u.k_p * (action - self.agent.position) + u.k_v * (
                Vec2d(0, 0) - self.agent.velocity
            )
            self.agent.velocity += acceleration * u.dt
            self.space.step(u.dt)

    def step_relative(self, action: np.ndarray) -> None:
        """One env step with a relative action (2,): target = agent position + action."""
        self.step(np.asarray(self.agent.position) + np.asarray(action, dtype=np.float64))

    def state(self) -> np.ndarray:
        """(7,) float64 in :data:`STATE_COLUMNS` order, as :func:`read_state`."""
        a, b = self.agent, self.block
        return np.array([*a.position, *b.position, b.angle % (2 * np.pi), *a.velocity])


def clone_physics(env: Any) -> Physics:
    """An exact copy of ``env``'s physical state (see :class:`Physics`)."""
    u = env.unwrapped
    return Physics(u, u.space, u.agent, u.block).copy()


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def block_center(state: np.ndarray) -> np.ndarray:
    """Centre of mass (2,) of the T-block for a state row (>= 5 values)."""
    return state[2:4] + _rotation(state[4]) @ BLOCK_COM_LOCAL


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _limit(agent: np.ndarray, target: np.ndarray, reach: float = MAX_REACH) -> np.ndarray:
    d = target - agent
    n = float(np.linalg.norm(d))
    return agent + d * (reach / n) if n > reach else target


class RandomPolicy:
    """Smoothed random walk of the target, pulled toward the block so contacts happen.

    The relative action follows an AR(1) process (momentum 0.8) with Gaussian kicks, plus a
    per-episode attraction toward the block's centre; a pure random walk rarely touches the T.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.velocity = np.zeros(2)
        self.pull = float(rng.uniform(4.0, 12.0))  # px per step toward the block

    def __call__(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        agent = state[:2]
        to_block = block_center(state) - agent
        dist = float(np.linalg.norm(to_block)) + 1e-6
        self.velocity = 0.8 * self.velocity + self.rng.normal(0.0, 8.0, size=2)
        rel = self.velocity + self.pull * to_block / dist
        return _limit(agent, agent + rel)


def _in_tee(state: np.ndarray, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(P,) bool: which world points (P, 2) lie in the T grown by ``margin`` pixels.

    The T is the union of the bar x in [-60, 60], y in [0, 30] and the stem x in [-15, 15],
    y in [30, 120] in its body frame (gym-pusht's ``add_tee`` with scale 30).
    """
    local = (points - state[2:4]) @ _rotation(state[4])  # rows: R^T (p - origin)
    x, y, m = local[:, 0], local[:, 1], margin
    bar = (np.abs(x) <= 60 + m) & (y >= -m) & (y <= 30 + m)
    stem = (np.abs(x) <= 15 + m) & (y >= 30) & (y <= 120 + m)
    return bar | stem


def _exit_point(state: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> np.ndarray | None:
    """Last point of the T on the ray ``origin + t * direction`` (t >= 0), or None if it misses."""
    ts = np.arange(0.0, 200.0, 1.0)
    inside = _in_tee(state, origin[None, :] + ts[:, None] * direction[None, :])
    if not inside.any():
        return None
    return origin + ts[np.flatnonzero(inside).max()] * direction


class ScriptedPolicy:
    """Heuristic pusher toward the goal pose.

    Translate: pick the point where a line through the block's centre (shifted sideways in
    proportion to the angle error, so the push also turns the T) leaves the T on the side away
    from the goal; reach it by orbiting the block at a safe radius (a straight path would drag
    the T the wrong way), then push through toward the goal. Once the centre is close, push a bar
    end along its tangent to fix the angle. Gains are jittered per episode for diversity.
    """

    AGENT_RADIUS = 15.0

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.turn_gain = float(rng.uniform(15.0, 30.0))  # px of side offset per rad of error
        self.depth = float(rng.uniform(20.0, 40.0))  # px the target leads the contact point
        self.noise = float(rng.uniform(0.5, 3.0))
        self.turning = False  # hysteresis between translating and turning

    def _push(
        self, state: np.ndarray, anchor: np.ndarray, u: np.ndarray, depth: float
    ) -> np.ndarray:
        agent, c = state[:2], block_center(state)
        edge = _exit_point(state, anchor, -u)
        if edge is None:  # anchor outside the T: fall back to the centre line
            edge = _exit_point(state, c, -u)
        contact = edge - (self.AGENT_RADIUS + 3.0) * u
        rel = agent - contact
        n = np.array([-u[1], u[0]])
        if -40.0 < float(rel @ u) <= 6.0 and abs(float(rel @ n)) < 14.0:
            return contact + depth * u  # on the approach line: push through
        approach = contact - 25.0 * u
        path = agent + np.linspace(0.0, 1.0, 40)[:, None] * (approach - agent)[None, :]
        if not _in_tee(state, path, margin=self.AGENT_RADIUS + 2.0).any():
            return approach  # straight path is clear
        # Orbit around the centre until the approach point is reachable without touching the T.
        radius = 110.0
        phi = np.arctan2(*(agent - c)[::-1])
        phi_goal = np.arctan2(*(approach - c)[::-1])
        dphi = _wrap(phi_goal - phi)
        if abs(dphi) < 0.5 or np.linalg.norm(agent - approach) < 30.0:
            return approach
        if np.linalg.norm(agent - c) < radius - 20.0:  # too close: step straight out first
            return c + radius * np.array([np.cos(phi), np.sin(phi)])
        phi_next = phi + float(np.clip(dphi, -0.5, 0.5))
        return c + radius * np.array([np.cos(phi_next), np.sin(phi_next)])

    def __call__(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        c = block_center(state)
        g = block_center(np.array([0, 0, goal[0], goal[1], goal[2]]))
        d_angle = _wrap(goal[2] - state[4])
        err = g - c
        dist = float(np.linalg.norm(err))
        # Hysteresis: a turning push shifts the centre a little; don't flip back for that.
        self.turning = dist < (30.0 if self.turning else 10.0) and abs(d_angle) > 0.05
        if not self.turning:
            u = err / max(dist, 1e-6)
            # A push along u applied at c + s * perp(u) gives torque -s (pymunk's z axis).
            side = float(np.clip(-self.turn_gain * d_angle, -30.0, 30.0))
            # Lead by at most the remaining distance so the last pushes do not overshoot.
            depth = min(self.depth, dist + 2.0)
            target = self._push(state, c + side * np.array([-u[1], u[0]]), u, depth)
        else:
            # Push a bar end (local (+-50, 15)) along its tangent to turn about the centre; use
            # the end whose pushing side is nearer the agent.
            best = None
            for x_end in (-50.0, 50.0):
                tip = state[2:4] + _rotation(state[4]) @ np.array([x_end, 15.0])
                arm = tip - c
                u = np.sign(d_angle) * np.array([-arm[1], arm[0]]) / (np.linalg.norm(arm) + 1e-6)
                gap = float(np.linalg.norm(state[:2] - (tip - 40.0 * u)))
                if best is None or gap < best[0]:
                    best = (gap, tip, u)
            target = self._push(state, best[1], best[2], self.depth)
        target = target + self.rng.normal(0.0, self.noise, size=2)
        return _limit(state[:2], target)


class MixedPolicy:
    """The scripted expert with random blocks: each block of ``block`` steps is, with
    probability ``explore``, a run of i.i.d. N(0, ``std``^2) relative actions (capped at
    ``MAX_REACH``) instead of the expert's.

    A planner samples candidate actions far from any expert's; the random blocks show a world
    model what such actions do, from the contact-rich states the expert visits. (Measured: C-JEPA
    trained on it planned 0.35 vs 0.28 on expert data alone, not significant at 3 seeds; README,
    "Push-T planning".) The expert is still consulted on every step, so its internal state stays
    current.
    """

    def __init__(
        self, rng: np.random.Generator, explore: float = 0.3, block: int = 5, std: float = 20.0
    ) -> None:
        self.rng, self.explore, self.block, self.std = rng, explore, block, std
        self.expert = ScriptedPolicy(rng)
        self.t, self.exploring = 0, False

    def __call__(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        if self.t % self.block == 0:
            self.exploring = bool(self.rng.random() < self.explore)
        self.t += 1
        target = self.expert(state, goal)
        if self.exploring:
            target = state[:2] + self.rng.normal(0.0, self.std, size=2)
        return _limit(state[:2], target)


def _make_policy(name: str, rng: np.random.Generator):
    if name == "random":
        return RandomPolicy(rng)
    if name == "scripted":
        return ScriptedPolicy(rng)
    if name == "mixed":
        return MixedPolicy(rng)
    raise ValueError(f"policy must be one of {POLICIES}, got {name!r}")


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
    actor = _make_policy(policy, rng)
    u = env.unwrapped

    frames = np.empty((steps, size, size, 3), dtype=np.uint8)
    states = np.empty((steps, 7), dtype=np.float64)
    abs_actions = np.empty((steps, 2), dtype=np.float32)
    coverage, success, contacts, block_vel = [], [], [], []
    obs = reset_to_state(env, start)
    goal = np.asarray(u.goal_pose, dtype=np.float64)
    n_contacts = 0
    for t in range(steps):
        if obs["pixels"].shape != (size, size, 3):
            raise ValueError(f"env renders {obs['pixels'].shape}, expected size {size}")
        frames[t] = obs["pixels"]
        states[t] = read_state(env)
        cov = float(u._get_coverage())
        coverage.append(cov)
        success.append(bool(cov > u.success_threshold))
        contacts.append(int(n_contacts))
        block_vel.append([*map(float, u.block.velocity), float(u.block.angular_velocity)])
        # float32 targets so that the stored actions replay exactly.
        abs_actions[t] = actor(states[t], goal).astype(np.float32)
        if t + 1 < steps:
            obs, _, _, _, step_info = env.step(abs_actions[t].astype(np.float64))
            n_contacts = step_info["n_contacts"]
    if own_env:
        env.close()

    rel_actions = (abs_actions.astype(np.float64) - states[:, :2]).astype(np.float32)
    return EpisodeData(
        episode_id=f"pusht-s{seed}-{episode_index:06d}",
        world="pusht",
        frames=frames,
        states=states.astype(np.float32)[:, None, :],
        actions=rel_actions,
        info={
            "coverage": coverage,
            "is_success": success,
            "success": bool(any(success)),
            "max_coverage": float(max(coverage)),
            "n_contacts": contacts,
            "block_velocity": block_vel,
            "abs_actions": abs_actions.astype(np.float64).tolist(),
            "goal_pose": goal.tolist(),
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
            "success_threshold": float(u.success_threshold),
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
        rot.append(abs(_wrap(s[-1, 4] - s[0, 4])))
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
