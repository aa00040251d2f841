"""Published-layout loaders on tiny fixtures written here (CLEVRER and DINO-WM Push-T)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

from cjepa.data import published
from cjepa.data.published import LayoutError, load_clevrer, load_dinowm_pusht
from cjepa.worlds import pusht
from tests.data.published_fixtures import (
    LENGTHS,
    N_FRAMES,
    QUESTIONS,
    clevrer_annotation,
    write_clevrer,
    write_dinowm,
)

# --------------------------------------------------------------------------------------------
# CLEVRER (fixture writers: tests/data/published_fixtures.py)


def test_clevrer_reads_frames_states_and_questions(tmp_path):
    eps = list(load_clevrer(write_clevrer(tmp_path), split="train", size=16))
    assert [e.episode_id for e in eps] == ["clevrer-train-00000", "clevrer-train-00001"]
    ep = eps[0]
    assert ep.world == "clevrer" and ep.actions is None
    assert ep.frames.shape == (N_FRAMES, 16, 16, 3) and ep.frames.dtype == np.uint8
    # RGB order: red channel high everywhere, blue low.
    assert ep.frames[..., 0].mean() > 150 and ep.frames[..., 2].mean() < 40
    assert ep.states.shape == (N_FRAMES, 2, len(published.CLEVRER_STATE_COLUMNS))
    assert ep.states.dtype == np.float32
    np.testing.assert_allclose(ep.states[5, 1], [1.5, -2.0, 0.1, -0.2, 0.5, 1.0], rtol=1e-6)
    assert ep.states[3, 0, 5] == 0.0  # inside_camera_view False
    assert np.all(ep.states[2, 1] == 0.0)  # missing from the frame's list
    assert eps[1].states.shape == (N_FRAMES, 3, 6)
    assert ep.info["collisions"] == [{"frame_id": 4, "object_ids": [0, 1]}]
    assert ep.info["objects"][0]["shape"] == "cube"
    assert ep.questions == [
        {
            "type": "descriptive",
            "question": "How many metal objects are moving?",
            "answer": "2",
            "question_id": 0,
        },
        {
            "type": "counterfactual",
            "question": "What will happen without the cube?",
            "choices": [
                {"text": "The sphere collides", "correct": True},
                {"text": "Nothing collides", "correct": False},
            ],
            "question_id": 1,
        },
    ]
    assert eps[1].questions is None or eps[1].questions == []
    json.dumps(ep.info), json.dumps(ep.meta), json.dumps(ep.questions)


def test_clevrer_flat_layout_limit_and_padding(tmp_path):
    root = write_clevrer(tmp_path, split="validation", nested=False)
    eps = list(load_clevrer(root, split="validation", size=8, limit=1, n_objects=6))
    assert len(eps) == 1 and eps[0].episode_id == "clevrer-validation-00000"
    assert eps[0].states.shape == (N_FRAMES, 6, 6)
    assert np.all(eps[0].states[:, 2:] == 0.0)  # padded objects are absent
    assert eps[0].questions[0]["type"] == "descriptive"
    with pytest.raises(LayoutError, match="n_objects"):
        list(load_clevrer(root, split="validation", size=8, n_objects=2))


def test_clevrer_frame_count_mismatch_keeps_the_shorter(tmp_path):
    root = write_clevrer(tmp_path)
    ann_path = next(root.rglob("annotation_00000.json"))
    ann = clevrer_annotation(0, 2, n_frames=N_FRAMES + 3)
    ann_path.write_text(json.dumps(ann))
    ep = next(iter(load_clevrer(root, size=8)))
    assert ep.n_frames == N_FRAMES and ep.states.shape[0] == N_FRAMES
    assert ep.info["n_annotation_frames"] == N_FRAMES + 3


def test_clevrer_missingclevrer_annotation(tmp_path):
    root = write_clevrer(tmp_path)
    os.remove(next(root.rglob("annotation_00001.json")))
    with pytest.raises(LayoutError, match=r"annotation_00001\.json"):
        list(load_clevrer(root, size=8))
    eps = list(load_clevrer(root, size=8, require_annotations=False))
    assert eps[1].states.shape == (N_FRAMES, 0, 6)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda a: a.pop("motion_trajectory"), r"annotation_00000\.json.*motion_trajectory"),
        (lambda a: a["motion_trajectory"][1]["objects"][0].pop("location"), "location"),
        (lambda a: a["motion_trajectory"][1]["objects"][0].update(object_id=9), "object_id 9"),
    ],
)
def test_clevrer_bad_annotation_names_file_and_field(tmp_path, edit, pattern):
    root = write_clevrer(tmp_path)
    path = next(root.rglob("annotation_00000.json"))
    ann = json.loads(path.read_text())
    edit(ann)
    path.write_text(json.dumps(ann))
    with pytest.raises(LayoutError, match=pattern):
        list(load_clevrer(root, size=8))


def test_clevrer_bad_question_names_file_and_field(tmp_path):
    root = write_clevrer(tmp_path)
    bad = json.loads(json.dumps(QUESTIONS))
    bad[0]["questions"][1]["choices"][0]["answer"] = "maybe"
    (root / "questions" / "train.json").write_text(json.dumps(bad))
    with pytest.raises(LayoutError, match=r"train\.json.*choices\[0\]\.answer"):
        list(load_clevrer(root, size=8))


def test_clevrer_test_split_without_answers():
    q = {"question_type": "predictive", "question": "What will happen next?"}
    q["choices"] = [{"choice_id": 0, "choice": "A collides"}]
    out = published.normalize_clevrer_question(q, "test.json")
    assert out["choices"] == [{"text": "A collides", "correct": None}]


def test_clevrer_no_videos(tmp_path):
    with pytest.raises(LayoutError, match=r"video_XXXXX\.mp4"):
        list(load_clevrer(tmp_path))


# --------------------------------------------------------------------------------------------
# DINO-WM Push-T: episodes made by cjepa's own Push-T world, written in DINO-WM's layout, so a
# round trip must give back the same arrays.


@pytest.fixture(scope="module")
def dinowm(tmp_path_factory):
    root = tmp_path_factory.mktemp("pusht_noise")
    eps = write_dinowm(root / "train", mp4_episode=2)
    return root, eps


def test_dinowm_round_trip_matches_the_world(dinowm):
    root, made = dinowm
    loaded = list(load_dinowm_pusht(root, split="train"))
    assert published.DINOWM_STATE_COLUMNS == pusht.STATE_COLUMNS
    assert [e.episode_id for e in loaded] == [f"dinowm-pusht-train-{i:06d}" for i in range(3)]
    for ep, ref in zip(loaded, made, strict=True):
        assert ep.world == "dinowm_pusht" and ep.meta["action_space"] == "relative"
        assert ep.states.shape == ref.states.shape and ep.states.dtype == np.float32
        assert ep.frames.shape == ref.frames.shape and ep.frames.dtype == np.uint8
        assert ep.actions.shape == ref.actions.shape and ep.actions.dtype == np.float32
        np.testing.assert_array_equal(ep.states, ref.states)
        np.testing.assert_array_equal(ep.actions, ref.actions)
        np.testing.assert_allclose(ep.info["abs_actions"], ref.info["abs_actions"])
    np.testing.assert_array_equal(loaded[0].frames, made[0].frames)  # .pth: lossless
    diff = np.abs(loaded[2].frames.astype(int) - made[2].frames.astype(int)).mean()
    assert diff < 10  # .mp4: lossy but the same picture


def test_dinowm_limit_and_direct_split_dir(dinowm):
    root, _ = dinowm
    eps = list(load_dinowm_pusht(root / "train", limit=1))
    assert len(eps) == 1 and eps[0].n_frames == LENGTHS[0]


@pytest.fixture
def split_dir(tmp_path):
    write_dinowm(tmp_path / "train")
    return tmp_path / "train"


def test_dinowm_missing_file_names_file_and_field(split_dir):
    os.remove(split_dir / "velocities.pth")
    with pytest.raises(LayoutError, match=r"velocities\.pth.*velocities"):
        list(load_dinowm_pusht(split_dir))


def test_dinowm_wrong_shape_names_file_and_field(split_dir):
    torch.save(torch.zeros(3, 9, 3), split_dir / "rel_actions.pth")
    with pytest.raises(LayoutError, match=r"rel_actions\.pth: field rel_actions has shape"):
        list(load_dinowm_pusht(split_dir))


def test_dinowm_short_obses_names_file(split_dir):
    torch.save(torch.zeros(2, 96, 96, 3, dtype=torch.uint8), split_dir / "obses/episode_001.pth")
    with pytest.raises(LayoutError, match=r"episode_001.*obses"):
        list(load_dinowm_pusht(split_dir))
    os.remove(split_dir / "obses/episode_001.pth")
    with pytest.raises(LayoutError, match=r"episode_001\.pth.*obses"):
        list(load_dinowm_pusht(split_dir))


def test_dinowm_seq_lengths_checks(split_dir):
    path = split_dir / "seq_lengths.pkl"
    path.write_bytes(pickle.dumps(np.array(LENGTHS, dtype=np.int64)))  # numpy arrays are fine
    assert [e.n_frames for e in load_dinowm_pusht(split_dir)] == list(LENGTHS)
    path.write_bytes(pickle.dumps([9, 6]))
    with pytest.raises(LayoutError, match=r"seq_lengths\.pkl.*2 entries"):
        list(load_dinowm_pusht(split_dir))
    path.write_bytes(pickle.dumps([9, 6, 99]))
    with pytest.raises(LayoutError, match="outside"):
        list(load_dinowm_pusht(split_dir))
    path.write_bytes(pickle.dumps(os.getcwd))  # a global that is not plain data: refused
    with pytest.raises(LayoutError, match="refusing"):
        list(load_dinowm_pusht(split_dir))


def test_dinowm_seven_column_states_need_no_velocities(split_dir):
    states = torch.load(split_dir / "states.pth", weights_only=True)
    vel = torch.load(split_dir / "velocities.pth", weights_only=True)
    torch.save(torch.cat([states, vel], dim=-1), split_dir / "states.pth")
    os.remove(split_dir / "velocities.pth")
    ep = next(iter(load_dinowm_pusht(split_dir)))
    assert ep.states.shape == (LENGTHS[0], 1, 7)
    torch.save(torch.zeros(3, 9, 4), split_dir / "states.pth")
    with pytest.raises(LayoutError, match="5 or 7"):
        list(load_dinowm_pusht(split_dir))
