"""The Push-T world-model planner: CEM against a trained slot predictor.

``SlotObserver`` encodes observed states or frames as the model's training slots were made,
``resolve_encoder`` finds the encoder behind a slot directory (hash-checked), and
``world_model_planner`` checks a model against the protocol and builds the planner.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from cjepa.data.sources import PUSHT_PROPRIO_COLUMNS
from cjepa.data.splits import list_shards
from cjepa.planning.pusht_cem import CEMPlanner
from cjepa.planning.pusht_protocol import PlanProtocol
from cjepa.planning.pusht_rollout import Rollout
from cjepa.planning.world_model import check_history


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
        precision: str = "fp32",
        compile: bool = False,
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
        # speed options of the predictor (``WorldModelCost``); fp32 eager is the exact default
        self.precision, self.compile = precision, compile

    def settings(self) -> dict[str, Any]:
        return {
            "planner": "world_model",
            "model": self.source,
            "match": self.match,
            "encoder_hash": self.encoder_hash,
            "history": self.th,
            "model_history": self.model.history,
            "precision": self.precision,
            "compile": self.compile,
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
        # T_h - 1 blocks of (B, f, 2): the f actions that lead to frame j; those before the
        # episode's first frame (a start within (T_h - 1) f of it) are unknown (NaN -> 0)
        blocks = [
            np.concatenate(
                [np.full((rollout.batch, f - (j - i), 2), np.nan), rollout.actions[:, i:j]], 1
            )
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
            precision=self.precision,
            compile=self.compile,
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
    precision: str = "fp32",
    compile: bool = False,
):
    """A ``WorldModelPlanner``; ``patch`` (None = from the encoder) says the model reads patch
    tokens, which must agree with the encoder's kind. ``precision`` ("fp32" | "bf16") and
    ``compile`` are the predictor's speed options (``WorldModelCost``)."""
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
        precision=precision,
        compile=compile,
    )
