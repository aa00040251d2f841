"""The world registry: a toy world added in this test alone runs make_data -> oracle slot
extraction -> training; every world table reads the registry; unknown worlds name the known."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cjepa.config import WORLD_AUX, load_config
from cjepa.data.episode import EpisodeData
from cjepa.data.generate import generate_shards
from cjepa.data.shards import load_slot_episodes, read_episode_shard
from cjepa.data.sources import load_windows
from cjepa.data.splits import list_shards
from cjepa.data.windows import WINDOW_PRESETS
from cjepa.encoders import load_encoder
from cjepa.train import fit
from cjepa.worlds import WORLDS, OracleSpec, WorldSpec, get_world, register_world

ROOT = Path(__file__).resolve().parents[2]
N_DOTS = 3


def dots_episode(episode_index: int, *, seed: int, steps: int = 16, size: int = 8) -> EpisodeData:
    """Three points moving in straight lines, bouncing off the walls of the unit square.

    states (T, 3, 5): x, y, vx, vy, present; frames (T, size, size, 3) with a lit pixel per dot.
    """
    rng = np.random.default_rng([seed, episode_index])
    pos, vel = rng.uniform(0.1, 0.9, (N_DOTS, 2)), rng.uniform(-0.08, 0.08, (N_DOTS, 2))
    states = np.zeros((steps, N_DOTS, 5), np.float32)
    frames = np.zeros((steps, size, size, 3), np.uint8)
    for t in range(steps):
        states[t, :, :2], states[t, :, 2:4], states[t, :, 4] = pos, vel, 1.0
        px = np.minimum((pos * size).astype(int), size - 1)
        frames[t, px[:, 1], px[:, 0]] = 255
        pos = pos + vel
        bounced = (pos < 0) | (pos > 1)
        vel = np.where(bounced, -vel, vel)
        pos = np.clip(pos, 0, 1)
    return EpisodeData(f"dots-s{seed}-{episode_index:06d}", "dots", frames, states)


def dots_features(ep: EpisodeData) -> tuple[np.ndarray, np.ndarray]:
    """Oracle features (T, 3, 7): x, y in [-1, 1], velocities x 10, no angle, present; one-hot
    identity codes (3, 3)."""
    s = ep.states.astype(np.float64)
    zeros = np.zeros(s.shape[:2])
    feats = np.stack(
        [
            2 * s[..., 0] - 1,
            2 * s[..., 1] - 1,
            10 * s[..., 2],
            10 * s[..., 3],
            zeros,
            zeros,
            s[..., 4],
        ],
        axis=-1,
    )
    return feats, np.eye(N_DOTS)


DOTS = WorldSpec(
    "dots",
    dots_episode,
    oracle=OracleSpec(dots_features, n_slots=N_DOTS + 1, n_attr=N_DOTS, accepts=("dots",)),
    length_option="steps",
    window={"history": 4, "n_future": 2, "frameskip": 1},
)


@pytest.fixture
def dots(monkeypatch):
    """The toy world, registered for this test only."""
    monkeypatch.setitem(WORLDS, "dots", DOTS)
    return DOTS


def load_make_data():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "experiments/make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_world_added_in_a_test_runs_make_data_extraction_and_training(dots, tmp_path, capsys):
    from cjepa.distributed.extract import extract_local

    data = tmp_path / "data"
    argv = ["--world", "dots", "--episodes", "12", "--seed", "3", "--out", str(data)]
    load_make_data().main([*argv, "--frames", "20", "--shard-size", "6", "--workers", "1"])
    assert "2 written" in capsys.readouterr().out
    # --frames went to the world's own length option
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["world"] == "dots" and manifest["args"]["world_kwargs"] == {"steps": 20}
    episodes = [ep for p in list_shards(data, "episodes") for ep in read_episode_shard(p)]
    assert len(episodes) == 12 and episodes[0].states.shape == (20, N_DOTS, 5)

    report = extract_local(data, "oracle:dots", tmp_path / "slots", progress=False)
    slots = load_slot_episodes(list_shards(report.out, "slots"))
    assert sorted(slots) == sorted(ep.episode_id for ep in episodes)
    enc = load_encoder("oracle:dots")
    first = episodes[0]
    assert slots[first.episode_id].shape == (20, N_DOTS + 1, enc.slot_dim)
    np.testing.assert_array_equal(slots[first.episode_id], enc.encode_episodes([first])[0])
    # slot k follows dot k: moving dot 1 changes slot 1 only
    moved = EpisodeData(first.episode_id, "dots", first.frames, first.states.copy())
    moved.states[:, 1, 0] += 0.1
    diff = np.abs(enc.encode_episodes([moved])[0] - slots[first.episode_id]).sum(axis=(0, 2))
    assert diff[1] > 0 and diff[[0, 2, 3]].tolist() == [0, 0, 0]

    window = [f"data.{k}={v}" for k, v in WINDOW_PRESETS["dots"].items()]
    cfg = load_config(
        ROOT / "experiments/configs/smoke.yaml",
        [
            "data.source=slots",
            "data.world=dots",
            f"data.slot_dir={report.out}",
            f"data.n_slots={N_DOTS + 1}",
            f"data.slot_dim={enc.slot_dim}",
            "data.val_fraction=0.3",
            *window,
            "masking.budget=1",
            "train.steps=5",
            "train.log_every=5",
            "train.eval_every=5",
            "train.batch_size=8",
        ],
    )
    assert (cfg.data.action_dim, cfg.data.proprio_dim) == (0, 0)
    train, val = load_windows(cfg.data)
    assert train.get(torch.tensor([0]))["slots"].shape == (1, 6, N_DOTS + 1, enc.slot_dim)
    result = fit(cfg, train, val, out_dir=tmp_path / "run", resume=False, progress=False,
                 log=lambda *_: None)  # fmt: skip
    assert [row["step"] for row in result.history] == [5]
    last = result.history[-1]
    assert math.isfinite(last["train/loss"]) and last["train/loss"] > 0
    assert math.isfinite(last["val/future_visible"])
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_every_world_table_reads_the_registry(dots):
    from cjepa.encoders.oracle import oracle_worlds

    assert WORLD_AUX["dots"] == (0, 0) and WORLD_AUX["pusht"] == (2, 4)
    assert list(WORLD_AUX) == sorted(WORLDS)
    assert WINDOW_PRESETS["dots"] == {"history": 4, "n_future": 2, "frameskip": 1}
    assert WINDOW_PRESETS["clevrer"] == WINDOW_PRESETS["collide"]
    assert "dots" in oracle_worlds() and load_encoder("oracle:dots").n_slots == N_DOTS + 1
    make_data = load_make_data()
    assert make_data.parse_args(["--world", "dots", "--episodes", "1", "--seed", "0",
                                 "--out", "x"]).world == "dots"  # fmt: skip
    # a flag not given takes the world's make_data default, in the flags' order (stored bytes)
    flags = {"steps": 10, "size": None, "policy": None}
    assert list(make_data.world_options(get_world("pusht"), flags).items()) == [
        ("steps", 10), ("policy", "scripted"),
    ]  # fmt: skip
    assert make_data.world_options(dots, flags) == {"steps": 10}


def test_ablation_pipeline_reads_the_world_spec(dots, monkeypatch):
    from cjepa.distributed.pipeline import AblationConfig

    cfg = AblationConfig(stages={"collide": {"vqa": {}}})
    assert cfg.stages_for("collide") == {"vqa": {}}
    assert cfg.stages_for("pusht") == {"final_validation": {}}
    custom = WorldSpec("dots", dots_episode, default_stages={"causal": {"windows": 4}})
    monkeypatch.setitem(WORLDS, "dots", custom)
    assert AblationConfig().stages_for("dots") == {"causal": {"windows": 4}}
    assert AblationConfig(world_data={"dots": {}}).world_data  # a registered world is accepted
    assert get_world("pusht").pipeline_episode_dir and not get_world("collide").pipeline_episode_dir


def test_unknown_world_names_the_known_ones(dots, tmp_path):
    known = r"\['clevrer', 'collide', 'dots', 'pusht'\]"
    with pytest.raises(ValueError, match=rf"unknown world 'mars'; known: {known}"):
        get_world("mars")
    with pytest.raises(ValueError, match=rf"unknown world 'mars'; known: {known}"):
        generate_shards("mars", 2, 0, tmp_path)
    slots = ["data.source=slots", "data.world=mars", "data.slot_dir=x", "data.n_slots=2"]
    with pytest.raises(ValueError, match=rf"data\.world must be one of {known}, got 'mars'"):
        load_config(None, slots)
    with pytest.raises(ValueError, match=rf"oracle world must be one of {known}, got 'mars'"):
        load_encoder("oracle:mars")
    with pytest.raises(ValueError, match=rf"world must be one of {known}, got 'mars'"):
        from cjepa.distributed.pipeline import AblationConfig

        AblationConfig(world_data={"mars": {}})
    argv = ["--world", "mars", "--episodes", "1", "--seed", "0", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        load_make_data().parse_args(argv)


def test_registering_checks_the_spec():
    with pytest.raises(ValueError, match="already registered"):
        register_world(WorldSpec("collide", dots_episode))
    with pytest.raises(ValueError, match="window must have keys"):
        WorldSpec("toy", dots_episode, window={"history": 3})
    with pytest.raises(ValueError, match="action_dim and proprio_dim must be >= 0"):
        WorldSpec("toy", dots_episode, action_dim=-1)
    with pytest.raises(ValueError, match="identifier"):
        WorldSpec("a world", dots_episode)


def test_importing_the_registry_imports_no_simulator():
    code = (
        "import sys, cjepa.worlds, cjepa.config, cjepa.data.generate, cjepa.encoders.oracle; "
        "print(sorted(m for m in ('pymunk', 'gym_pusht', 'pygame') if m in sys.modules))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
