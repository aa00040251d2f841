"""Rollout videos: GIF/MP4 files with the expected frame count, oracle slots drawn through the
state probe and the collide renderer, learned slots through their decoder, the stage options."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cjepa.evaluation import stage as st
from cjepa.evaluation.counterfactual import counterfactual_stage
from cjepa.evaluation.rollouts import load_split, write_slots
from cjepa.evaluation.video_io import BAR, GAP, TEXT_ROW, compose, write_video
from cjepa.evaluation.videos import (
    PALETTE,
    decoder_draw,
    fit_state_probe,
    intervention_video,
    probe_draw,
    slot_drawer,
)
from cjepa.train import build_predictor
from cjepa.worlds.collide import scene_from_meta
from cjepa.worlds.collide_render import rasterise


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, collide_setup):
    return collide_setup(tmp_path_factory.mktemp("videos"), episodes=12, shard_size=6)


def untrained(cfg) -> dict:
    torch.manual_seed(0)
    return {"model": build_predictor(cfg).state_dict(), "history": [], "step": 0}


def gif_frames(path) -> int:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as im:
        assert im.format == "GIF"
        return im.n_frames


def test_compose_and_write_keep_every_frame_even_when_panels_do_not_change(tmp_path):
    still = np.zeros((8, 8, 3), np.uint8)  # the same picture in every frame
    moving = np.stack([np.full((16, 16, 3), 40 * t, np.uint8) for t in range(5)])
    frames = compose([still, moving], ["still", "moving"], [f"t={t}" for t in range(5)], height=32)
    assert frames.shape[0] == 5 and frames.dtype == np.uint8
    assert frames.shape[1:] == (32 + 2 * TEXT_ROW + BAR, 32 + GAP + 32, 3)  # both at 32 px
    assert gif_frames(write_video(tmp_path / "a.gif", frames)) == 5
    only_still = compose([still], ["s"], ["same"] * 4)  # captions equal: the time bar differs
    assert gif_frames(write_video(tmp_path / "b.gif", only_still)) == 4
    assert not list(tmp_path.glob(".*"))  # the atomic writer left no temp file


def test_mp4_has_the_expected_frame_count(tmp_path):
    import cv2

    frames = compose([np.zeros((3, 16, 16, 3), np.uint8)], ["x"], ["0", "1", "2"], height=32)
    path = write_video(tmp_path / "v.mp4", frames, fps=4)
    assert path.stat().st_size > 0
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 3


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda p: write_video(p / "v.avi", np.zeros((2, 4, 4, 3), np.uint8)), "suffix"),
        (lambda p: write_video(p / "v.gif", np.zeros((2, 4, 4), np.uint8)), "(F >= 1, H, W, 3)"),
        (lambda p: write_video(p / "v.gif", np.zeros((0, 4, 4, 3), np.uint8)), "F >= 1"),
        (lambda p: write_video(p / "v.gif", np.zeros((1, 4, 4, 3))), "uint8"),
        (lambda p: write_video(p / "v.gif", np.zeros((1, 4, 4, 3), np.uint8), fps=0), "fps"),
        (lambda p: compose([np.zeros((2, 4, 4, 3), np.uint8)], ["a"], ["x"]), "panel 'a'"),
        (lambda p: compose([np.zeros((4, 4, 3), np.uint8)], ["a", "b"], ["x"]), "label"),
    ],
)
def test_bad_frames_or_paths_are_named(tmp_path, call, says):
    with pytest.raises(ValueError) as err:
        call(tmp_path)
    assert says in str(err.value)


def test_state_probe_draws_oracle_slots_like_the_true_states(tiny):
    cfg, data = tiny
    probe = fit_state_probe(load_split(cfg, data, "train"))
    for ep in load_split(cfg, data, "val", limit=2):
        k = ep.states.shape[1]
        decoded = probe.states(ep.slots, range(ep.slots.shape[1]), k)  # (T, K, 6)
        present = ep.states[..., 5] > 0
        np.testing.assert_array_equal(decoded[..., 5] > 0, present)
        err = np.abs(decoded[..., :2] - ep.states[..., :2])[present]  # arena widths
        assert err.mean() < 0.005 and err.max() < 0.05
        drawn = probe_draw(probe, ep)(ep.slots, list(range(ep.slots.shape[1])))
        truth, _ = rasterise(scene_from_meta(ep.meta), ep.states, int(ep.meta["size"]))
        assert drawn.shape == truth.shape
        assert (drawn == truth).all(-1).mean() > 0.95  # pixels agree but at object edges


def test_final_validation_writes_rollout_gifs_with_history_plus_steps_frames(tiny, tmp_path):
    cfg, data = tiny
    ctx = st.StageContext(tmp_path / "on", options={"videos": 2}, episode_dir=data)
    (tmp_path / "on").mkdir()
    st.final_validation(cfg, untrained(cfg), ctx)
    val = load_split(cfg, data, "val", limit=2)
    paths = sorted((tmp_path / "on" / "videos").glob("*.gif"))
    assert [p.name for p in paths] == sorted(f"rollout_{ep.episode_id}.gif" for ep in val)
    th, f = cfg.data.history, cfg.data.frameskip
    steps = (val[0].n_frames - 1 - f * (th - 1)) // f  # 32 frames, T_h 3, f 2: 13 steps
    assert steps == 13 and all(gif_frames(p) == th + steps for p in paths)
    off = st.StageContext(tmp_path / "off", episode_dir=data)  # videos default 0: none
    (tmp_path / "off").mkdir()
    st.final_validation(cfg, untrained(cfg), off)
    assert not (tmp_path / "off" / "videos").exists()


def test_counterfactual_writes_the_intervention_beside_the_simulators_counterfactual(
    tiny, tmp_path
):
    cfg, data = tiny
    opts = {"horizon": 8, "per_episode": 1, "max_episodes": 3, "videos": 1}
    ctx = st.StageContext(tmp_path, options=opts, encoder="oracle:collide", episode_dir=data)
    counterfactual_stage(cfg, untrained(cfg), ctx)
    rows = json.loads((tmp_path / "cf_interventions.json").read_text())
    first = next(r for r in rows if r["kind"] == "collider")
    paths = list((tmp_path / "videos").glob("*.gif"))
    assert [p.name for p in paths] == [
        f"intervention_{first['episode_id']}_obj{first['object']}.gif"
    ]
    steps = math.ceil(8 / cfg.data.frameskip)
    assert gif_frames(paths[0]) == cfg.data.history + steps
    with Image.open(paths[0]) as im:  # three 32 px panels side by side, scaled to 128 px
        assert im.size == (3 * 128 + 2 * GAP, 128 + 2 * TEXT_ROW + BAR)


def test_intervention_video_drops_the_objects_aligned_slot(tiny):
    # a learned encoder's object X is some slot s != X: the rollout must run without slot s,
    # while the simulator removes object X
    cfg, data = tiny
    ep = load_split(cfg, data, "val", limit=1)[0]
    drawn = []

    def draw(slots, objects):
        drawn.append(list(objects))
        return np.zeros((slots.shape[0], 8, 8, 3), np.uint8)

    n = ep.slots.shape[1]
    end = cfg.data.frameskip * (cfg.data.history - 1)
    model = st.model_from_state(cfg, untrained(cfg))
    frames = intervention_video(model, ep, 1, end, draw, cfg.data.frameskip, 2, slot=3)
    assert drawn[1] == [k for k in range(n) if k != 3]
    assert frames.shape[0] == cfg.data.history + 2
    intervention_video(model, ep, 1, end, draw, cfg.data.frameskip, 2)  # oracle: slot X
    assert drawn[3] == [k for k in range(n) if k != 1]


@pytest.mark.parametrize("name", ["final_validation", "counterfactual", "planning"])
@pytest.mark.parametrize(
    ("value", "says"), [(-1, "must be >= 0, got -1"), ("two", "must be an integer, got 'two'")]
)
def test_a_bad_videos_option_names_the_stage_field(name, value, says):
    with pytest.raises(ValueError) as err:
        st.check_stages({name: {"videos": value}})
    assert str(err.value).startswith(f"stages.{name}.videos {says}"), str(err.value)


def test_videos_without_collide_episodes_are_refused(tiny, tmp_path):
    cfg, _ = tiny
    ctx = st.StageContext(tmp_path, options={"videos": 1})  # no episode_dir
    with pytest.raises(ValueError, match=r"^stages\.final_validation\.videos: .*collide"):
        st.final_validation(cfg, untrained(cfg), ctx)


@pytest.fixture(scope="module")
def learned(tiny, tmp_path_factory):
    """Slots of a tiny untrained CNN slot encoder (N = 5, D = 32) and its checkpoint."""
    from cjepa.encoders import EncoderConfig
    from cjepa.encoders.base import save_encoder
    from cjepa.encoders.train import build_video_model

    cfg, data = tiny
    root = tmp_path_factory.mktemp("learned")
    enc = EncoderConfig(image_size=32, n_slots=5, slot_dim=32, cnn_channels=8, decoder_channels=8)
    save_encoder(root / "enc.pt", build_video_model(enc, seed=0), enc)
    slots = write_slots(data, str(root / "enc.pt"), root / "slots")
    d = dataclasses.replace(cfg.data, slot_dir=str(slots), n_slots=5, slot_dim=32)
    return dataclasses.replace(cfg, data=d), data, str(root / "enc.pt")


def test_learned_slots_are_drawn_through_the_encoders_decoder(learned, tmp_path):
    cfg, data, enc = learned
    ctx = st.StageContext(tmp_path, options={"videos": 1}, encoder=enc, episode_dir=data)
    st.final_validation(cfg, untrained(cfg), ctx)
    (path,) = (tmp_path / "videos").glob("rollout_*.gif")
    th, f = cfg.data.history, cfg.data.frameskip
    assert gif_frames(path) == th + (32 - 1 - f * (th - 1)) // f
    nameless = st.StageContext(tmp_path / "x", options={"videos": 1}, episode_dir=data)
    with pytest.raises(ValueError, match=r"^stages\.final_validation\.videos: .*decoder"):
        st.final_validation(cfg, untrained(cfg), nameless)


def test_decoders_draw_pixels_or_alpha_masks_coloured_by_slot_index():
    from cjepa.encoders import EncoderConfig
    from cjepa.encoders.train import build_video_model

    slots = np.random.default_rng(0).standard_normal((3, 4, 32)).astype(np.float32)
    cnn = EncoderConfig(image_size=32, n_slots=4, slot_dim=32, cnn_channels=8, decoder_channels=8)
    pixels = decoder_draw(build_video_model(cnn, seed=0))(slots, [0, 1, 2, 3])
    assert pixels.shape == (3, 32, 32, 3) and pixels.dtype == np.uint8
    small = dict(backbone="dinov2", image_size=28, vit_depth=1, proj_hidden=32, decoder_hidden=32,
                 n_slots=4, slot_dim=32)  # fmt: skip
    model = build_video_model(EncoderConfig(**small), seed=0)
    masks = decoder_draw(model)(slots[:, :3], [0, 2, 3])  # slot 1 removed: others keep colours
    with torch.no_grad():
        _, alpha = model.decoder(torch.from_numpy(slots[:, :3]))  # (T, 3, P = 2 x 2 patches)
    owner = np.array([0, 2, 3])[alpha.argmax(1).numpy()]  # (T, P)
    np.testing.assert_array_equal(masks, PALETTE[owner].reshape(3, 2, 2, 3))


def test_an_encoder_without_a_slot_decoder_is_named(learned, tmp_path):
    from cjepa.encoders import EncoderConfig
    from cjepa.encoders.base import save_encoder
    from cjepa.encoders.video import PatchModel

    cfg, data, _ = learned
    patch = EncoderConfig(kind="patch", backbone="dinov2", image_size=28, vit_depth=1)
    save_encoder(tmp_path / "p.pt", PatchModel(patch), patch)
    with pytest.raises(ValueError, match=r"^stages\.counterfactual\.videos: .*no slot decoder"):
        slot_drawer(cfg, data, str(tmp_path / "p.pt"), "counterfactual", "cpu")
