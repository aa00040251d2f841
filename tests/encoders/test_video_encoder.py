"""Learned encoders behind load_encoder: (T, N, D) float32 over whole videos, deterministic,
batched == one at a time, checkpoint round trip, hash tracks the weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cjepa.data.episode import EpisodeData
from cjepa.encoders import CheckpointEncoder, EncoderConfig, SlotEncoder, load_encoder
from cjepa.encoders.base import save_encoder
from cjepa.encoders.train import build_video_model
from cjepa.encoders.video import PatchModel, VideoSlotModel
from cjepa.worlds.collide import make_episode

TINY = EncoderConfig(image_size=32, n_slots=5, slot_dim=32, cnn_channels=16, decoder_channels=16)


@pytest.fixture(scope="module")
def episodes() -> list[EpisodeData]:
    # Two lengths, so batching has to group episodes by shape.
    eps = [make_episode(i, seed=0, frames=10, size=32, questions=False) for i in range(3)]
    return [*eps, make_episode(3, seed=0, frames=7, size=32, questions=False)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    save_encoder(path, build_video_model(TINY, seed=0), TINY)
    return str(path)


def test_interface_shapes_and_determinism(ckpt, episodes):
    enc = load_encoder(ckpt)
    assert isinstance(enc, SlotEncoder) and (enc.n_slots, enc.slot_dim) == (5, 32)
    assert EncoderConfig(**enc.config) == TINY
    a = enc.encode_episodes(episodes)
    b = enc.encode_episodes(episodes)
    for x, y, ep in zip(a, b, episodes, strict=True):
        assert x.shape == (ep.n_frames, 5, 32) and x.dtype == np.float32
        np.testing.assert_array_equal(x, y)
    # Slots differ from each other (the fixed extraction noise breaks the symmetry).
    assert not np.allclose(a[0][:, 0], a[0][:, 1])


def test_batched_equals_one_at_a_time_and_time_chunks_carry_slots(ckpt, episodes):
    enc = load_encoder(ckpt)
    enc.batch_size = 8
    together = enc.encode_episodes(episodes)
    enc.batch_size, enc.time_chunk = 1, 3  # also cut each video into 3-frame chunks
    alone = [enc.encode_episodes([ep])[0] for ep in episodes]
    for x, y in zip(together, alone, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)


def test_slots_depend_on_the_frames(ckpt, episodes):
    enc = load_encoder(ckpt)
    ep = episodes[0]
    frames = ep.frames.copy()
    frames[5:] = frames[5:, ::-1]  # flip the second half of the video
    other = enc.encode_episodes([dataclasses.replace(ep, frames=frames, masks=None)])[0]
    base = enc.encode_episodes([ep])[0]
    np.testing.assert_allclose(other[:5], base[:5], rtol=1e-5, atol=1e-5)  # causal in time
    assert not np.allclose(other[5:], base[5:], atol=1e-3)


def test_round_trip_and_hash(tmp_path, episodes):
    model = build_video_model(TINY, seed=0)
    p1, p2, p3 = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    save_encoder(p1, model, TINY)
    save_encoder(p2, model, TINY)
    direct = CheckpointEncoder(model, TINY, "direct").encode_episodes(episodes[:2])
    loaded = load_encoder(str(p1))
    for x, y in zip(direct, loaded.encode_episodes(episodes[:2]), strict=True):
        np.testing.assert_array_equal(x, y)
    assert loaded.hash == load_encoder(str(p2)).hash  # same weights, same bytes
    with torch.no_grad():
        model.slot_attention.to_q.weight[0, 0] += 1e-3
    save_encoder(p3, model, TINY)
    assert load_encoder(str(p3)).hash != loaded.hash


@pytest.mark.parametrize("key", ["format", "encoder_config", "model"])
def test_training_state_cannot_overwrite_the_payload(tmp_path, key):
    model = build_video_model(TINY, seed=0)
    with pytest.raises(ValueError, match=key):
        save_encoder(tmp_path / "x.pt", model, TINY, training={"step": 3, key: {}})
    assert not (tmp_path / "x.pt").exists()
    save_encoder(tmp_path / "y.pt", model, TINY, training={"step": 3})
    assert torch.load(tmp_path / "y.pt", weights_only=True)["step"] == 3
    assert load_encoder(str(tmp_path / "y.pt")).n_slots == TINY.n_slots


def test_not_an_encoder_checkpoint(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(ValueError, match="not a cjepa encoder checkpoint"):
        load_encoder(str(bad))
    with pytest.raises(FileNotFoundError):
        load_encoder(str(tmp_path / "missing.pt"))


def test_dinov2_video_and_patch_encoders(tmp_path, episodes):
    small = dict(backbone="dinov2", image_size=28, vit_depth=1, proj_hidden=32, decoder_hidden=32,
                 n_slots=4, slot_dim=32)  # fmt: skip
    video = EncoderConfig(**small)
    model = build_video_model(video, seed=0)
    assert isinstance(model, VideoSlotModel)
    noise = model.initial_noise(1, torch.Generator().manual_seed(0))
    out = model(torch.from_numpy(episodes[0].frames[None, :3]), noise)
    assert out["recon"].shape == out["target"].shape == (1, 3, 4, 384)  # 2x2 patches of 384
    assert out["masks"].shape == (1, 3, 4, 4)
    save_encoder(tmp_path / "v.pt", model, video)
    slots = load_encoder(str(tmp_path / "v.pt")).encode_episodes(episodes[:1])[0]
    assert slots.shape == (10, 4, 32)

    patch = EncoderConfig(kind="patch", backbone="dinov2", image_size=28, vit_depth=1)
    save_encoder(tmp_path / "p.pt", PatchModel(patch), patch)
    enc = load_encoder(str(tmp_path / "p.pt"))
    assert (enc.n_slots, enc.slot_dim) == (4, 384)
    tokens = enc.encode_episodes(episodes[:1])[0]
    assert tokens.shape == (10, 4, 384) and tokens.dtype == np.float32


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"encoder\.backbone"):
        EncoderConfig(kind="patch", backbone="cnn")
    with pytest.raises(ValueError, match=r"encoder\.image_size"):
        EncoderConfig(backbone="dinov2", image_size=64)
    with pytest.raises(ValueError, match=r"encoder\.slot_dim"):
        EncoderConfig(slot_dim=30, predictor_heads=4)
