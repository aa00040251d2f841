"""Push-T planners for ``cjepa.planning.pusht_eval``: random, oracle (true simulator) and
world-model CEM; ``build_planner`` makes one from its name.

Every planner returns raw relative env actions (B, k, 2) in pixels for the B episodes of a
``Rollout``. The CEM planners search z-scored action blocks of frameskip f x 2 numbers (the
predictor's action input; train-split statistics), clipped to the train-split range, with the
receding-horizon loop of ``cjepa.planning.mpc`` (one cost call = all episodes x all samples).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cjepa.planning.pusht_cem import ORACLE_COST_NOTE, CEMPlanner, OraclePlanner, oracle_cost
from cjepa.planning.pusht_protocol import PlanProtocol
from cjepa.planning.pusht_rollout import Planner, PushTData, Rollout
from cjepa.planning.pusht_world_model import (
    SlotObserver,
    WorldModelPlanner,
    resolve_encoder,
    world_model_planner,
)

__all__ = [
    "ORACLE_COST_NOTE",
    "ORACLE_FRAMESKIP",
    "PLANNERS",
    "CEMPlanner",
    "OraclePlanner",
    "RandomPlanner",
    "ReplayPlanner",
    "SlotObserver",
    "WorldModelPlanner",
    "build_planner",
    "oracle_cost",
    "resolve_encoder",
    "world_model_planner",
]

ORACLE_FRAMESKIP = 5  # the oracle's action block when the protocol leaves it to the model


class RandomPlanner:
    """Uniform random actions per env step in the train split's per-dimension action range."""

    name = "random"

    def __init__(self, stats: dict[str, np.ndarray]) -> None:
        self.low, self.high = stats["min"], stats["max"]

    def settings(self) -> dict[str, Any]:
        return {"planner": "random", "low": self.low.tolist(), "high": self.high.tolist()}

    def begin(self, rollout: Rollout, seed: int) -> None:
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))

    def act(self, rollout: Rollout) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, size=(rollout.batch, 1, 2))

    def calls(self) -> dict[str, float]:
        return {}


class ReplayPlanner:
    """Protocol check, not a planner: replays the stored actions that led from the start to the
    goal (``offset`` steps), then holds the agent still (zero relative actions)."""

    name = "replay"

    def settings(self) -> dict[str, Any]:
        return {"planner": "replay", "note": "stored actions start -> goal, then zero actions"}

    def begin(self, rollout: Rollout, seed: int) -> None:
        pass

    def act(self, rollout: Rollout) -> np.ndarray:
        done = rollout.steps
        stored = rollout.stored_actions[:, done:]  # (B, <= offset, 2)
        return stored if stored.shape[1] else np.zeros((rollout.batch, 1, 2))

    def calls(self) -> dict[str, float]:
        return {}


def _oracle(data: PushTData, protocol: PlanProtocol, device: str) -> Planner:
    f = protocol.frameskip or ORACLE_FRAMESKIP
    return OraclePlanner(data.action_stats(), protocol, f, device)


#: Planners named on the command line (``--model``) and in stage options, by name: each makes the
#: planner from the protocol split's data, the protocol and the device. A name that is not here
#: is a predictor checkpoint (``build_planner``).
PLANNERS: dict[str, Callable[[PushTData, PlanProtocol, str], Planner]] = {
    "random": lambda data, protocol, device: RandomPlanner(data.action_stats()),
    "replay": lambda data, protocol, device: ReplayPlanner(),
    "oracle": _oracle,
}


def build_planner(
    spec: str,
    data: PushTData,
    protocol: PlanProtocol,
    *,
    encoder: str | None = None,
    device: str = "cpu",
) -> Planner:
    """A planner from its name in ``PLANNERS`` (``random``, ``replay``: protocol check,
    ``oracle``), or a predictor checkpoint ``PATH`` (``patch:PATH``: a model of patch tokens,
    compared in place). ``encoder``: the checkpoint encoder behind the model's slots (None:
    oracle slots). The oracle plans blocks of ``protocol.frameskip`` env steps (None:
    ``ORACLE_FRAMESKIP``)."""
    if spec in PLANNERS:
        return PLANNERS[spec](data, protocol, device)
    from cjepa.evaluation.stage import load_state, model_from_state

    path = spec.removeprefix("patch:")
    if not Path(path).is_file():
        names = ", ".join(repr(k) for k in PLANNERS)
        raise FileNotFoundError(f"model {spec!r}: not {names} or a checkpoint")
    cfg, state = load_state(path)
    return world_model_planner(
        cfg,
        model_from_state(cfg, state, device),
        protocol,
        encoder=encoder,
        patch=spec.startswith("patch:"),
        source=spec,
        device=device,
    )
