"""Push-T CEM planners: the shared receding-horizon CEM in z-scored, clipped action-block space,
and the oracle that scores candidates on the true simulator.

Candidates are blocks of frameskip f x 2 numbers (the predictor's action input; train-split
statistics), clipped to the train-split range; one cost call covers all episodes x all samples
(``cjepa.planning.mpc``). ``cjepa.planning.pusht_world_model`` holds the world-model planner.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cjepa.planning.cem import CEMSolver
from cjepa.planning.mpc import RecedingHorizon
from cjepa.planning.pusht_protocol import ANGLE_TOL, POS_TOL, PlanProtocol, angle_error
from cjepa.planning.pusht_rollout import Rollout
from cjepa.worlds import pusht


class CEMPlanner:
    """Shared receding-horizon CEM in z-scored, clipped action-block space (frameskip f x 2).

    Subclasses give ``cost_fn(rollout) -> cost(candidates (B, S, H, f*2)) -> (B, S)``.
    """

    def __init__(
        self,
        stats: dict[str, np.ndarray],
        protocol: PlanProtocol,
        frameskip: int,
        device: str = "cpu",
    ) -> None:
        self.stats, self.protocol, self.f, self.device = stats, protocol, frameskip, device
        self.cem = protocol.cem
        self.execute = protocol.execute or self.cem.horizon
        z = lambda v: torch.tensor(np.tile((v - stats["mean"]) / stats["std"], frameskip))  # noqa: E731
        self.lo, self.hi = z(stats["min"]).float(), z(stats["max"]).float()  # (f*2,)
        self._bounds: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def clip(self, blocks: torch.Tensor) -> torch.Tensor:
        """Normalised blocks (..., f*2) clipped to the train range (when protocol says so)."""
        if not self.protocol.clip_actions:
            return blocks
        key = (blocks.device, blocks.dtype)
        if key not in self._bounds:  # one host-device copy per device, not one per CEM call
            self._bounds[key] = (self.lo.to(blocks), self.hi.to(blocks))
        lo, hi = self._bounds[key]
        return torch.maximum(torch.minimum(blocks, hi), lo)

    def raw(self, blocks: torch.Tensor) -> np.ndarray:
        """(B, k, f*2) normalised blocks -> (B, k*f, 2) raw relative pixel actions."""
        x = self.clip(blocks).double().cpu().numpy().reshape(blocks.shape[0], -1, 2)
        return x * self.stats["std"] + self.stats["mean"]

    def normalise(self, raw: np.ndarray) -> torch.Tensor:
        """Raw actions (..., 2) -> z-scored float32 tensor; NaN (no action) -> 0, the mean."""
        z = (raw - self.stats["mean"]) / self.stats["std"]
        return torch.from_numpy(np.nan_to_num(z, nan=0.0)).float()

    def base_settings(self) -> dict[str, Any]:
        return {
            "cem": self.cem.to_dict(),
            "execute": self.execute,
            "frameskip": self.f,
            "action_mean": self.stats["mean"].tolist(),
            "action_std": self.stats["std"].tolist(),
            "action_clip": [self.stats["min"].tolist(), self.stats["max"].tolist()]
            if self.protocol.clip_actions
            else None,
        }

    def begin(self, rollout: Rollout, seed: int) -> None:
        g = torch.Generator(device=self.device).manual_seed(seed)
        self.mpc = RecedingHorizon(
            CEMSolver(self.cem), rollout.batch, 2 * self.f, execute=self.execute, generator=g
        )
        self.counters: dict[str, float] = {}

    def act(self, rollout: Rollout) -> np.ndarray:
        cost = self.cost_fn(rollout)
        blocks = self.mpc.act(lambda c: cost(self.clip(c)))  # (B, execute, f*2)
        for k, v in getattr(cost, "stats", dict)().items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.counters["plans"] = self.counters.get("plans", 0) + 1
        return self.raw(blocks)

    def calls(self) -> dict[str, float]:
        return dict(self.counters)

    def cost_fn(self, rollout: Rollout):  # pragma: no cover - abstract
        raise NotImplementedError


def oracle_cost(states: np.ndarray, goals: np.ndarray, definition: str) -> np.ndarray:
    """The oracle planner's cost of states (..., 7) against goals (..., 7), shaped like the
    success test ``definition``: (pos_err / 20)^2 + (angle_err / (pi / 9))^2, where pos_err is
    the block position error (``block``) or the L2 norm over agent and block positions
    (``public``). Below 2 only if neither term is off by more than its tolerance; a state passes
    the test iff both terms are below 1."""
    s, g = np.asarray(states, np.float64), np.asarray(goals, np.float64)
    if definition == "block":
        pos = np.linalg.norm(s[..., 2:4] - g[..., 2:4], axis=-1)
    elif definition == "public":
        pos = np.linalg.norm(s[..., :4] - g[..., :4], axis=-1)
    else:
        raise ValueError(f"oracle cost: unknown success definition {definition!r}")
    return (pos / POS_TOL) ** 2 + (angle_error(s[..., 4], g[..., 4]) / ANGLE_TOL) ** 2


ORACLE_COST_NOTE = {
    "block": "(block_pos_err/20)^2 + (block_angle_err/(pi/9))^2",
    "public": "(||agent_xy, block_xy err||/20)^2 + (block_angle_err/(pi/9))^2",
}


class OraclePlanner(CEMPlanner):
    """CEM on the true simulator: every candidate is executed in an exact copy of the current
    env (``pusht.clone_physics``: bodies, velocities and cached contacts) and scored at the end of
    the plan by ``oracle_cost`` for the protocol's success definition."""

    name = "oracle"

    def settings(self) -> dict[str, Any]:
        cost = ORACLE_COST_NOTE[self.protocol.success] + " at the plan's last step, true physics"
        return {
            "planner": "oracle",
            "cost": cost,
            "cost_definition": self.protocol.success,
            **self.base_settings(),
        }

    def simulate(self, now: list[pusht.Physics], candidates: torch.Tensor) -> np.ndarray:
        """(B, S, H, f*2) normalised candidates executed from copies of ``now`` (one physics
        per episode) -> (B, S, 7) true states at the plan's last step."""
        b, s = candidates.shape[:2]
        raw = self.raw(candidates.reshape(b * s, *candidates.shape[2:]))
        end = np.empty((b * s, 7))
        for row in range(b * s):
            sim = now[row // s].copy()
            for a in raw[row]:
                sim.step_relative(a)
            end[row] = sim.state()
        self.counters["sim_steps"] = self.counters.get("sim_steps", 0) + raw.size // 2
        return end.reshape(b, s, 7)

    def cost_fn(self, rollout: Rollout):
        now = [pusht.clone_physics(e) for e in rollout.envs]
        definition = self.protocol.success

        def cost(candidates: torch.Tensor) -> torch.Tensor:
            end = self.simulate(now, candidates)
            out = oracle_cost(end, rollout.goals[:, None], definition)
            return torch.from_numpy(out).to(candidates)

        return cost
