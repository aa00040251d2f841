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
from cjepa.encoders.config import load_encoder_experiment
from cjepa.encoders.train import build_video_model, fit_encoder, sample_clips, train_step
from cjepa.worlds.collide import make_episode

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "experiments/configs/encoders").glob("*.yaml"))
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

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=ROOT,
                              timeout=300, check=False)  # fmt: skip

    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "random_init" in done.stdout and "fg_ari" in done.stdout
    assert (tmp_path / "run" / "encoder.pt").is_file()
    refused = run()  # a checkpoint exists: neither --resume nor --fresh given
    assert refused.returncode != 0 and "--resume" in refused.stderr
    resumed = run("--resume", "train.steps=4")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]


def test_entry_script_on_episodes_without_instance_masks(small_data, tmp_path):
    # Push-T episodes carry no instance masks: training finishes and says FG-ARI was skipped.
    import dataclasses

    data = tmp_path / "data"
    data.mkdir()
    no_masks = [dataclasses.replace(e, masks=None) for e in small_data]
    write_episode_shard(data / "collide-s0-000000-000009.parquet", no_masks)
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments/pretrain_encoder.py"), "--data", str(data),
         "--out", str(tmp_path / "run"), *TINY, "train.steps=2"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FG-ARI not computed: held-out episodes have no instance masks" in done.stdout
    assert (tmp_path / "run" / "encoder.pt").is_file()


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_parse(preset):
    exp = load_encoder_experiment(preset, ["train.steps=7"])
    assert exp.train.steps == 7 and exp.name == preset.stem
    with pytest.raises(ValueError, match="unknown field"):
        load_encoder_experiment(preset, ["encoder.n_slot=3"])


def test_short_run_learns_the_background(small_data):
    """Fast check that gradients reach every trained module and the loss falls. (Objects
    separate only after ~1,500+ steps: see the slow test below.)"""
    exp = load_encoder_experiment(None, TINY)
    model = build_video_model(exp.encoder, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        clips = sample_clips(small_data, 4, 2, 1, g)
        losses.append(train_step(model, clips, model.initial_noise(4, g), opt, 1.0)["loss"])
    assert np.mean(losses[-10:]) < 0.4 * np.mean(losses[:3])
    for name, value in model.state_dict().items():
        assert not torch.equal(value, before[name]), f"{name} never changed"


@pytest.mark.slow
def test_training_beats_random_init_fg_ari(tmp_path):
    """The CPU preset on 200 collide episodes: held-out FG-ARI far above the random-init
    encoder's. Several CPU minutes: reconstruction first sits on a background-only plateau
    (FG-ARI ~0) for ~2,000 steps before objects separate."""
    episodes = [make_episode(i, seed=0, questions=False) for i in range(200)]
    preset = ROOT / "experiments/configs/encoders/cnn_collide.yaml"
    exp = load_encoder_experiment(preset, ["train.eval_frames=16", "train.ckpt_every=0"])
    metrics = fit_encoder(exp, episodes, tmp_path, log=lambda _: None).metrics
    trained, random_init = metrics["trained"], metrics["random_init"]
    assert trained["fg_ari"] > random_init["fg_ari"] + 0.3, metrics
    assert trained["fg_ari_video"] > random_init["fg_ari_video"] + 0.3, metrics


def test_snapshots_along_one_run(small_data, tmp_path):
    from cjepa.encoders.train import snapshot_path

    exp = load_encoder_experiment(
        None, [*TINY, "train.steps=4", "train.ckpt_every=0", "train.snapshot_every=2"]
    )
    fit_encoder(exp, small_data, tmp_path, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.glob("encoder-step*.pt")) == [
        "encoder-step000002.pt",
        "encoder-step000004.pt",
    ]
    last, final = (torch.load(p, weights_only=True)["model"] for p in
                   (snapshot_path(tmp_path, 4), tmp_path / "encoder.pt"))  # fmt: skip
    first = torch.load(snapshot_path(tmp_path, 2), weights_only=True)["model"]
    assert all(torch.equal(last[k], final[k]) for k in final)
    assert not all(torch.equal(first[k], final[k]) for k in final)  # two steps apart
    assert load_encoder(str(snapshot_path(tmp_path, 2))).n_slots == 4
