"""Tiny Push-T data and an untrained tiny predictor checkpoint, for the ``--quick`` runs of
``bench/model_ranking.py`` and ``bench/cem_diagnosis.py`` (the same recipe as the fixtures of
``tests/planning/test_pusht_eval.py``, at the ``cjepa`` protocol's frameskip 5 and offset 25).
The figures of a quick run mean nothing; it checks that the script runs end to end."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

NEEDS = ("gymnasium", "gym_pusht", "pymunk")
EPISODES, FRAMES, VAL = 12, 60, 0.5


def missing_dependency() -> str | None:
    """The first simulator package that is not installed, or None."""
    return next((m for m in NEEDS if importlib.util.find_spec(m) is None), None)


def quick_run(run: Callable[[], None], set_args: Callable[[Path, Path], None]) -> None:
    """``set_args(model, data)`` with tiny data and model in a temporary folder, then ``run()``;
    a ``SKIP:`` line and exit 0 when the Push-T simulator is not installed."""
    if (missing := missing_dependency()) is not None:
        print(f"SKIP: --quick needs the Push-T simulator; {missing!r} is not installed")
        sys.exit(0)
    with tempfile.TemporaryDirectory(prefix="bench_quick_") as tmp:
        set_args(*make_tiny(Path(tmp)))
        run()


def make_tiny(root: Path) -> tuple[Path, Path]:
    """Writes ``root/pusht`` (episodes) and ``root/wm/model.pt``; returns (model, data)."""
    from cjepa.config import ExperimentConfig, from_dict
    from cjepa.data.generate import generate_shards
    from cjepa.data.shards import read_episode_shard, write_slot_shard
    from cjepa.data.splits import list_shards
    from cjepa.encoders import OracleEncoder
    from cjepa.train import build_predictor, save_checkpoint

    data = root / "pusht"
    kwargs = {"steps": FRAMES, "size": 32, "policy": "scripted"}
    generate_shards("pusht", EPISODES, 0, data, shard_size=EPISODES, workers=1, world_kwargs=kwargs)
    wm = root / "wm"
    wm.mkdir(parents=True, exist_ok=True)
    enc = OracleEncoder("pusht", slot_dim=16)
    eps = [e for p in list_shards(data, "episodes") for e in read_episode_shard(p)]
    slots = enc.encode_episodes(eps)
    write_slot_shard(
        wm / "slots.parquet",
        [e.episode_id for e in eps for _ in range(FRAMES)],
        np.tile(np.arange(FRAMES), len(eps)),
        np.concatenate(slots),
        encoder_hash=enc.hash,
        encoder_config=enc.config,
    )
    cfg = from_dict(ExperimentConfig, {
        "data": {"source": "slots", "world": "pusht", "slot_dir": str(wm), "n_slots": 4,
                 "episode_dir": str(data), "slot_dim": 16, "history": 3, "n_future": 1,
                 "frameskip": 5, "val_fraction": VAL},
        "predictor": {"width": 16, "depth": 1, "heads": 2, "head_dim": 8, "mlp_dim": 32,
                      "dropout": 0.0}})  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_predictor(cfg)
    save_checkpoint(wm / "model.pt", {"model": model.state_dict(), "config": cfg.to_dict()})
    return wm / "model.pt", data
