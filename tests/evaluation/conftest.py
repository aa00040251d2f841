"""Tiny collide data + a matching slot-model config for the evaluation-stage tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cjepa.config import ExperimentConfig, from_dict
from cjepa.data.generate import generate_shards
from cjepa.evaluation.rollouts import write_slots


def make_collide(
    root: Path,
    *,
    episodes: int = 16,
    shard_size: int = 8,
    questions: bool = True,
    frameskip: int = 2,
    val_fraction: float = 0.3,
) -> tuple[ExperimentConfig, str]:
    """``episodes`` collide episodes (32 frames, 32 px) and their oracle slots under ``root``;
    returns a small predictor config over those slots and the episode directory."""
    data = root / "episodes"
    generate_shards(
        "collide",
        episodes,
        0,
        data,
        shard_size=shard_size,
        workers=1,
        progress=False,
        world_kwargs={"frames": 32, "size": 32, "questions": questions},
    )
    slots = write_slots(data, "oracle:collide", root / "slots")
    cfg = from_dict(
        ExperimentConfig,
        {
            "data": {
                "source": "slots",
                "world": "collide",
                "slot_dir": str(slots),
                "n_slots": 7,
                "slot_dim": 128,
                "history": 3,
                "n_future": 1,
                "frameskip": frameskip,
                "val_fraction": val_fraction,
            },
            "predictor": {
                "width": 32,
                "depth": 2,
                "heads": 2,
                "head_dim": 8,
                "mlp_dim": 64,
                "dropout": 0.0,
            },
        },
    )
    return cfg, str(data)


@pytest.fixture(scope="session")
def collide_setup():
    """``make_collide`` as a fixture (call it with a directory and options)."""
    return make_collide
