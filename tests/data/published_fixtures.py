"""Tiny fixtures in the published CLEVRER and DINO-WM Push-T layouts, written by the tests
themselves (nothing is downloaded): the loader tests (test_published.py) and the import tests
(test_import.py) share them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import torch

from cjepa.worlds import pusht

# --------------------------------------------------------------------------------------------
# CLEVRER: by default two scenes (2 and 3 objects), 6 frames of 48 x 32, nested the way the
# release unpacks.

N_FRAMES = 6


def write_video(path: Path, n_frames: int, width: int = 48, height: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
    assert writer.isOpened()
    for t in range(n_frames):
        bgr = np.zeros((height, width, 3), dtype=np.uint8)
        bgr[..., 2] = 200  # red in RGB
        bgr[:, : 6 * t + 4, 1] = 255
        writer.write(bgr)
    writer.release()


def clevrer_annotation(scene: int, n_objects: int, n_frames: int = N_FRAMES) -> dict:
    frames = []
    for t in range(n_frames):
        objects = []
        for k in range(n_objects):
            if k == 1 and t == 2:
                continue  # object 1 missing from frame 2's list
            objects.append(
                {
                    "object_id": k,
                    "location": [k + 0.1 * t, -k - 0.2 * t, 0.2],
                    "orientation": [0.0, 0.0, 0.5 * k],
                    "velocity": [0.1, -0.2, 0.0],
                    "angular_velocity": [0.0, 0.0, 0.0],
                    "inside_camera_view": not (k == 0 and t == 3),
                }
            )
        frames.append({"frame_id": t, "objects": objects})
    return {
        "scene_index": scene,
        "video_filename": f"video_{scene:05d}.mp4",
        "object_property": [
            {"object_id": k, "color": "red", "material": "metal", "shape": "cube"}
            for k in range(n_objects)
        ],
        "motion_trajectory": frames,
        "collision": [{"object_ids": [0, 1], "frame_id": 4, "location": [0.0, 0.0, 0.2]}],
    }


QUESTIONS = [
    {
        "scene_index": 0,
        "video_filename": "video_00000.mp4",
        "questions": [
            {
                "question_id": 0,
                "question_type": "descriptive",
                "question": "How many metal objects are moving?",
                "answer": "2",
                "program": ["filter_metal", "count"],
            },
            {
                "question_id": 1,
                "question_type": "counterfactual",
                "question": "What will happen without the cube?",
                "program": ["..."],
                "choices": [
                    {"choice_id": 0, "choice": "The sphere collides", "answer": "correct"},
                    {"choice_id": 1, "choice": "Nothing collides", "answer": "wrong"},
                ],
            },
        ],
    }
]


SCENES = ((0, 2), (1, 3))  # (scene index, objects)


def write_clevrer(
    root: Path,
    *,
    split: str = "train",
    nested: bool = True,
    scenes: tuple[tuple[int, int], ...] = SCENES,
    n_frames: int = N_FRAMES,
) -> Path:
    """Videos, annotations and a question file of ``scenes`` under ``root``; returns ``root``."""
    video_dir = root / f"video_{split}" / "video_00000-01000" if nested else root
    ann_dir = root / f"annotation_{split}" / "annotation_00000-01000" if nested else root
    ann_dir.mkdir(parents=True, exist_ok=True)
    for scene, n_objects in scenes:
        write_video(video_dir / f"video_{scene:05d}.mp4", n_frames)
        text = json.dumps(clevrer_annotation(scene, n_objects, n_frames))
        (ann_dir / f"annotation_{scene:05d}.json").write_text(text)
    qdir = root / "questions" if nested else root
    qdir.mkdir(parents=True, exist_ok=True)
    (qdir / f"{split}.json").write_text(json.dumps(QUESTIONS))
    return root


# --------------------------------------------------------------------------------------------
# DINO-WM Push-T: episodes made by cjepa's own Push-T world (so a round trip can be checked),
# written in DINO-WM's layout.

LENGTHS = (9, 6, 7)


def write_dinowm(
    split_dir: Path, *, mp4_episode: int | None = None, lengths: tuple[int, ...] = LENGTHS
) -> list:
    """Push-T episodes of ``lengths`` steps in DINO-WM's layout under ``split_dir`` (episode
    ``mp4_episode``'s obses as .mp4, the others as .pth); returns the episodes."""
    env = pusht.make_env(96)
    eps = [
        pusht.make_episode(i, seed=5, policy="scripted", steps=t, env=env)
        for i, t in enumerate(lengths)
    ]
    env.close()
    n, t_max = len(eps), max(lengths)
    states, vel = torch.zeros(n, t_max, 5), torch.zeros(n, t_max, 2)
    rel, absolute = torch.zeros(n, t_max, 2), torch.zeros(n, t_max, 2)
    (split_dir / "obses").mkdir(parents=True)
    for i, ep in enumerate(eps):
        t = ep.n_frames
        states[i, :t] = torch.from_numpy(ep.states[:, 0, :5])
        vel[i, :t] = torch.from_numpy(ep.states[:, 0, 5:])
        rel[i, :t] = torch.from_numpy(ep.actions)
        absolute[i, :t] = torch.tensor(ep.info["abs_actions"])
        if i == mp4_episode:
            path = split_dir / "obses" / f"episode_{i:03d}.mp4"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 96))
            for frame in ep.frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
        else:
            torch.save(torch.from_numpy(ep.frames), split_dir / "obses" / f"episode_{i:03d}.pth")
    torch.save(states, split_dir / "states.pth")
    torch.save(vel, split_dir / "velocities.pth")
    torch.save(rel, split_dir / "rel_actions.pth")
    torch.save(absolute, split_dir / "abs_actions.pth")
    with open(split_dir / "seq_lengths.pkl", "wb") as f:
        pickle.dump(list(lengths), f)
    return eps
