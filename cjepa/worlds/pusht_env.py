"""The gym-pusht env and an exact copy of its physics: make, reset to a stored state, read the
state, step with relative actions. See :mod:`cjepa.worlds.pusht` for the state layout and units.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

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
