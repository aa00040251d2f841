"""What an evaluation stage receives after training, and how it rebuilds the trained model.

A stage is a function ``(cfg, state, ctx) -> dict[str, float]`` run once per trained model (in a
sweep trial after training, or from an entry script). ``state`` is the training state
(``{"model": state_dict, "history": [rows], "step": int}``); ``ctx`` says where the data lives,
which encoder produced the slots, the stage's options from the preset, and a directory whose
files become the run's artifacts. Stages import torch only (no Ray, no MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from cjepa.config import ExperimentConfig, from_dict
from cjepa.predictor import SlotPredictor


@dataclass
class StageContext:
    """Everything a stage needs beyond the config and the trained weights.

    Attributes:
        out_dir: an existing directory; every file a stage writes here is logged as an artifact
            of the run (under ``eval/``).
        options: the stage's settings from the preset (``stages: {name: {...}}``); a stage
            raises ValueError naming any key it does not know.
        encoder: the encoder spec that produced ``cfg.data.slot_dir`` (``"oracle:collide"``, a
            checkpoint path, ...), so a stage can encode re-simulated scenes the same way.
        episode_dir: the episode shards behind the slots (frames, states, questions).
        seed: seed for every random draw the stage makes.
        device: where to run the model.
    """

    out_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    encoder: str | None = None
    episode_dir: str | None = None
    seed: int = 0
    device: str = "cpu"


class Stage(Protocol):
    def __call__(
        self, cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
    ) -> dict[str, float]: ...


def model_from_state(
    cfg: ExperimentConfig, state: dict[str, Any], device: str | torch.device = "cpu"
) -> SlotPredictor:
    """The trained predictor of ``state`` in eval mode on ``device``."""
    from cjepa.train import build_predictor

    model = build_predictor(cfg)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def check_options(stage: str, options: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """``known`` (the defaults) updated with ``options``; unknown keys raise a ValueError."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"stages.{stage}: unknown option(s) {unknown}; known: {sorted(known)}"
        )
    return {**known, **options}


def load_state(path: str | Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, state) from a predictor checkpoint: a sweep trial's ``checkpoint/predictor.pt``
    (``{"model", "config", "step"}``) or a ``train_world_model.py`` checkpoint."""
    from cjepa.train import load_checkpoint

    payload = load_checkpoint(path)
    for key in ("model", "config"):
        if key not in payload:
            raise ValueError(f"{path}: not a predictor checkpoint (no {key!r} entry)")
    cfg = from_dict(ExperimentConfig, payload["config"])
    history = payload.get("history", [])
    return cfg, {"model": payload["model"], "history": history, "step": int(payload.get("step", 0))}
