"""Push-T planners for ``cjepa.planning.pusht_eval``: random, oracle (true simulator) and
world-model CEM.

Every planner returns raw relative env actions (B, k, 2) in pixels for the B episodes of a
``Rollout``. The CEM planners search z-scored action blocks of frameskip f x 2 numbers (the
predictor's action input; train-split statistics), clipped to the train-split range, with the
receding-horizon loop of ``cjepa.planning.mpc`` (one cost call = all episodes x all samples).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cjepa.data.sources import PUSHT_PROPRIO_COLUMNS
from cjepa.data.splits import list_shards
from cjepa.planning.cem import CEMSolver
from cjepa.planning.pusht_eval import (
    ANGLE_TOL,
    POS_TOL,
    Planner,
    PlanProtocol,
    PushTData,
    Rollout,
    angle_error,
)
from cjepa.planning.world_model import check_history
from cjepa.worlds import pusht

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

    def clip(self, blocks: torch.Tensor) -> torch.Tensor:
        """Normalised blocks (..., f*2) clipped to the train range (when protocol says so)."""
        if not self.protocol.clip_actions:
            return blocks
        return torch.maximum(torch.minimum(blocks, self.hi.to(blocks)), self.lo.to(blocks))

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
        from cjepa.planning.mpc import RecedingHorizon

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


def _env_block_vel(env: Any) -> np.ndarray:
    blk = env.unwrapped.block
    return np.array([*blk.velocity, blk.angular_velocity], dtype=np.float64)


class SlotObserver:
    """Encodes observed states/frames as the model's training slots were made.

    ``oracle:pusht`` reads states; a checkpoint encoder reads the frames (rendered at the stored
    episode size). ``__call__(states (B, T, 7), frames (B, T, H, W, 3), goal_pose)`` returns
    slots (B, T, N, D).
    """

    def __init__(self, encoder: Any) -> None:
        from cjepa.encoders import OracleEncoder

        self.encoder, self.reads_states = encoder, isinstance(encoder, OracleEncoder)

    def __call__(self, states: np.ndarray, frames: np.ndarray, goal_pose: list) -> torch.Tensor:
        if not self.reads_states:
            return torch.from_numpy(self.encoder.encode_video(np.ascontiguousarray(frames))[0])
        from cjepa.data.episode import EpisodeData

        t = states.shape[1]
        eps = [
            EpisodeData(
                episode_id="plan",
                world="pusht",
                frames=np.zeros((t, 1, 1, 3), np.uint8),
                states=s[:, None].astype(np.float32),
                info={"goal_pose": g} if g else {},
            )
            for s, g in zip(states, goal_pose, strict=True)
        ]
        return torch.from_numpy(np.stack(self.encoder.encode_episodes(eps)))


def resolve_encoder(cfg: Any, spec: str | None, device: str = "cpu") -> Any:
    """The encoder that made ``cfg.data.slot_dir`` (its hash is checked against the shards)."""
    from cjepa.data.shards import read_shard_metadata
    from cjepa.encoders import OracleEncoder, load_encoder

    paths = list_shards(cfg.data.slot_dir, "slots")
    if not paths:
        raise FileNotFoundError(f"data.slot_dir={cfg.data.slot_dir} holds no slot shards")
    meta = read_shard_metadata(paths[0])
    conf = meta["encoder_config"]
    if spec is None:
        if conf.get("kind") != "oracle":
            raise ValueError(
                f"{cfg.data.slot_dir}: slots of a learned encoder (hash "
                f"{meta['encoder_hash'][:12]}); pass its checkpoint as the encoder"
            )
        enc = OracleEncoder(conf["world"], conf["slot_dim"], conf["seed"], conf["hidden"])
    else:
        enc = load_encoder(spec, device=device)
    if enc.hash != meta["encoder_hash"]:
        raise ValueError(
            f"encoder {spec or 'oracle'} has hash {enc.hash[:12]}, but the slots "
            f"in {cfg.data.slot_dir} came from {meta['encoder_hash'][:12]}"
        )
    return enc


class WorldModelPlanner(CEMPlanner):
    """CEM against a trained slot predictor (``cjepa.planning.WorldModelCost``): Hungarian slot
    matching for slot models, ``match="none"`` for patch tokens; proprio MSE when predicted."""

    name = "world_model"

    def __init__(
        self,
        cfg: Any,
        model: Any,
        encoder: Any,
        protocol: PlanProtocol,
        *,
        match: str,
        source: str,
        device: str = "cpu",
    ) -> None:
        from cjepa.data.sources import aux_statistics

        if cfg.data.world != "pusht" or model.action_dim != 2 * cfg.data.frameskip:
            raise ValueError(
                f"model must be a Push-T predictor with action_dim 2 x frameskip, got "
                f"world {cfg.data.world!r}, action_dim {model.action_dim}"
            )
        if protocol.frameskip is not None and protocol.frameskip != cfg.data.frameskip:
            raise ValueError(
                f"protocol.frameskip={protocol.frameskip}, but the model was trained at "
                f"data.frameskip={cfg.data.frameskip}; override the protocol's frameskip"
            )
        th = protocol.history or cfg.data.history
        check_history(model, th, setting="protocol.history")
        if protocol.split == "val" and protocol.val_fraction > cfg.data.val_fraction:
            raise ValueError(
                f"protocol.val_fraction={protocol.val_fraction} > the model's "
                f"data.val_fraction={cfg.data.val_fraction}: eval starts could be "
                "training episodes"
            )
        aux = {k: v.double().numpy() for k, v in aux_statistics(cfg.data).items()}
        stats = {k: aux[f"action_{k}"] for k in ("mean", "std", "min", "max")}
        super().__init__(stats, protocol, cfg.data.frameskip, device)
        self.p_mean, self.p_std = aux["proprio_mean"], aux["proprio_std"]
        self.model, self.observe, self.match = model, SlotObserver(encoder), match
        self.th, self.source, self.encoder_hash = th, source, encoder.hash

    def settings(self) -> dict[str, Any]:
        return {
            "planner": "world_model",
            "model": self.source,
            "match": self.match,
            "encoder_hash": self.encoder_hash,
            "history": self.th,
            "model_history": self.model.history,
            **self.base_settings(),
        }

    def _proprio(self, states: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(
            (states[..., PUSHT_PROPRIO_COLUMNS] - self.p_mean) / self.p_std
        ).float()

    def begin(self, rollout: Rollout, seed: int) -> None:
        super().begin(rollout, seed)
        self.goal = self.observe(
            rollout.goals[:, None], rollout.goal_frames[:, None], rollout.goal_pose
        )[:, 0].to(self.device)  # (B, N, D)
        self.goal_p = self._proprio(rollout.goals).to(self.device)  # (B, P)

    def cost_fn(self, rollout: Rollout):
        from cjepa.planning.world_model import WorldModelCost

        last, f = rollout.states.shape[1] - 1, self.f
        idx = np.clip(last - f * np.arange(self.th - 1, -1, -1), 0, None)  # (T_h,) oldest first
        slots = self.observe(rollout.states[:, idx], rollout.frames[:, idx], rollout.goal_pose)
        # T_h - 1 blocks of (B, f, 2); none between repeats of the earliest frame (NaN -> 0)
        blocks = [
            rollout.actions[:, i : i + f] if j > i else np.full((rollout.batch, f, 2), np.nan)
            for i, j in itertools.pairwise(idx)
        ]
        past = np.stack(blocks, 1) if blocks else np.zeros((rollout.batch, 0, f, 2))
        past = self.normalise(past).flatten(2)  # (B, T_h - 1, f*2)
        uses_p = bool(self.model.proprio_dim)
        return WorldModelCost(
            self.model,
            slots.to(self.device),
            self.goal,
            history_actions=past.to(self.device),
            history_proprio=self._proprio(rollout.states[:, idx]).to(self.device)
            if uses_p
            else None,
            goal_proprio=self.goal_p if uses_p else None,
            match=self.match,
        )


def build_planner(
    spec: str,
    data: PushTData,
    protocol: PlanProtocol,
    *,
    encoder: str | None = None,
    device: str = "cpu",
) -> Planner:
    """A planner from its name: ``random``, ``replay`` (protocol check), ``oracle``, or a
    predictor checkpoint ``PATH`` (``patch:PATH``: a model of patch tokens, compared in place).
    ``encoder``: the checkpoint encoder behind the model's slots (None: oracle slots). The
    oracle plans blocks of ``protocol.frameskip`` env steps (None: ``ORACLE_FRAMESKIP``)."""
    if spec == "random":
        return RandomPlanner(data.action_stats())
    if spec == "replay":
        return ReplayPlanner()
    if spec == "oracle":
        f = protocol.frameskip or ORACLE_FRAMESKIP
        return OraclePlanner(data.action_stats(), protocol, f, device)
    from cjepa.evaluation.stage import load_state, model_from_state

    path = spec.removeprefix("patch:")
    if not Path(path).is_file():
        raise FileNotFoundError(f"model {spec!r}: not 'random', 'replay', 'oracle' or a checkpoint")
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


def world_model_planner(
    cfg: Any,
    model: Any,
    protocol: PlanProtocol,
    *,
    encoder: str | None,
    patch: bool | None = None,
    source: str = "",
    device: str = "cpu",
):
    """A ``WorldModelPlanner``; ``patch`` (None = from the encoder) says the model reads patch
    tokens, which must agree with the encoder's kind."""
    enc = resolve_encoder(cfg, encoder, device)
    is_patch = getattr(enc, "config", {}).get("kind") == "patch"
    if patch is not None and patch != is_patch:
        raise ValueError(
            f"model {source!r} was named {'patch' if patch else 'slot'} model, "
            f"but its encoder is a {'patch' if is_patch else 'slot'} encoder"
        )
    match = "none" if is_patch else "hungarian"
    if protocol.match not in ("auto", match):
        raise ValueError(
            f"protocol.match={protocol.match!r}, but the model reads "
            f"{'patch tokens' if is_patch else 'slots'} (match {match!r}); override the match"
        )
    return WorldModelPlanner(
        cfg,
        model,
        enc,
        protocol,
        source=source,
        device=device,
        match=match,
    )
