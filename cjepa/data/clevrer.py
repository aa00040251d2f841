"""The published CLEVRER layout read into :class:`EpisodeData` (``load_clevrer``).

Shape legend: T frames, H = W = ``size`` pixels, K objects.

**CLEVRER** (Yi et al. 2020). Field names below were checked against public code that parses
the released files (object_property / motion_trajectory / collision readers and question
loaders on GitHub), not against the release itself:

- ``video_XXXXX.mp4`` (480 x 320, 128 frames), usually under ``video_{split}/video_AAAAA-BBBBB/``.
- ``annotation_XXXXX.json``: ``scene_index``, ``video_filename``, ``object_property``
  [{object_id, color, material, shape}], ``motion_trajectory`` [{frame_id, objects: [{object_id,
  location [x, y, z], orientation [3], velocity [3], angular_velocity [3],
  inside_camera_view}]}], ``collision`` [{object_ids [2], frame_id, location}].
- ``{split}.json`` question files: [{scene_index, video_filename, questions: [{question_id,
  question, question_type, program, answer (descriptive) | choices: [{choice_id, choice,
  program, answer: "correct" | "wrong"}]}]}]; the test split has no answers.
- Not confirmed: what the three ``orientation`` numbers are. We read ``orientation[-1]`` as the
  rotation about the vertical axis; treat the ``angle`` column as a best guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cjepa.data.episode import EpisodeData
from cjepa.data.layout import LayoutError, field, read_json, read_video

CLEVRER_STATE_COLUMNS: tuple[str, ...] = ("x", "y", "vx", "vy", "angle", "present")
"""Per-object CLEVRER state columns: world-frame ``location[:2]``, ``velocity[:2]`` as stored
(scene units, not pixels), ``orientation[-1]`` (0 if absent), ``present`` =
``inside_camera_view`` (1.0 / 0.0). An object missing from a frame's list is all zeros."""


def _index_by_number(base: Path, prefix: str, suffix: str) -> dict[int, Path]:
    """{scene index: path} for every ``{prefix}_NNNNN{suffix}`` below ``base``."""
    pattern = re.compile(rf"^{prefix}_(\d+){re.escape(suffix)}$")
    found: dict[int, Path] = {}
    for path in sorted(base.rglob(f"{prefix}_*{suffix}")):
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _split_dir(root: Path, kind: str, split: str) -> Path:
    # The release unpacks to video_{split}/ and annotation_{split}/; a flat root also works.
    sub = root / f"{kind}_{split}"
    return sub if sub.is_dir() else root


def normalize_clevrer_question(question: dict[str, Any], where: str) -> dict[str, Any]:
    """One CLEVRER question -> the cjepa question dict.

    Returns ``{"type": "descriptive", "question", "answer", "question_id"}`` or
    ``{"type": "explanatory" | "predictive" | "counterfactual", "question", "choices":
    [{"text", "correct"}], "question_id"}``; ``answer`` / ``correct`` are None when the file
    carries no answers (test split).
    """
    qtype = field(question, "question_type", where)
    text = field(question, "question", where)
    out: dict[str, Any] = {"type": qtype, "question": text}
    if qtype == "descriptive":
        out["answer"] = question.get("answer")
    else:
        choices = []
        for j, choice in enumerate(field(question, "choices", where)):
            answer = choice.get("answer") if isinstance(choice, dict) else None
            if answer not in (None, "correct", "wrong"):
                raise LayoutError(
                    f"{where}: choices[{j}].answer must be correct/wrong, got {answer!r}"
                )
            correct = None if answer is None else answer == "correct"
            choices.append(
                {"text": field(choice, "choice", f"{where} choices[{j}]"), "correct": correct}
            )
        out["choices"] = choices
    out["question_id"] = question.get("question_id")
    return out


def _load_questions(root: Path, split: str) -> dict[int, list[dict[str, Any]]]:
    for path in (root / "questions" / f"{split}.json", root / f"{split}.json"):
        if path.is_file():
            break
    else:
        return {}
    entries = read_json(path)
    if not isinstance(entries, list):
        raise LayoutError(f"{path}: expected a list of scenes, got {type(entries).__name__}")
    by_scene: dict[int, list[dict[str, Any]]] = {}
    for i, entry in enumerate(entries):
        where = f"{path} [{i}]"
        scene = int(field(entry, "scene_index", where))
        qs = field(entry, "questions", where)
        by_scene[scene] = [
            normalize_clevrer_question(q, f"{where} questions[{j}]") for j, q in enumerate(qs)
        ]
    return by_scene


def clevrer_states(
    annotation: dict[str, Any], where: str, n_objects: int | None = None
) -> np.ndarray:
    """CLEVRER annotation -> (T_ann, K, 6) float32 in :data:`CLEVRER_STATE_COLUMNS` order.

    K = len(object_property), or ``n_objects`` (padding with absent objects) when given, so that
    episodes stack; an ``n_objects`` below the scene's count raises.
    """
    props = field(annotation, "object_property", where)
    trajectory = field(annotation, "motion_trajectory", where)
    column = {
        int(field(p, "object_id", f"{where} object_property")): k for k, p in enumerate(props)
    }
    k_total = len(props) if n_objects is None else n_objects
    if k_total < len(props):
        raise LayoutError(f"{where}: {len(props)} objects exceed n_objects={n_objects}")
    states = np.zeros((len(trajectory), k_total, len(CLEVRER_STATE_COLUMNS)), dtype=np.float32)
    for t, frame in enumerate(trajectory):
        fwhere = f"{where} motion_trajectory[{t}]"
        fid = int(frame.get("frame_id", t))  # place rows by frame_id, not list position
        if not 0 <= fid < len(trajectory):
            raise LayoutError(f"{fwhere}: frame_id {fid} outside [0, {len(trajectory)})")
        for obj in field(frame, "objects", fwhere):
            oid = int(field(obj, "object_id", fwhere))
            if oid not in column:
                raise LayoutError(f"{fwhere}: object_id {oid} not in object_property")
            loc = field(obj, "location", fwhere)
            vel = obj.get("velocity", [0.0, 0.0])
            orient = obj.get("orientation") or [0.0]
            present = bool(obj.get("inside_camera_view", True))
            if len(loc) < 2 or len(vel) < 2:
                raise LayoutError(f"{fwhere}: location/velocity of object {oid} too short")
            states[fid, column[oid]] = (loc[0], loc[1], vel[0], vel[1], orient[-1], float(present))
    return states


def load_clevrer(
    root: str | Path,
    *,
    split: str = "train",
    start: int = 0,
    limit: int | None = None,
    size: int = 64,
    n_objects: int | None = None,
    require_annotations: bool = True,
) -> Iterator[EpisodeData]:
    """Yield CLEVRER videos of ``split`` ("train", "validation", "test") in scene order.

    Args:
        root: folder holding ``video_{split}/``, ``annotation_{split}/`` and
            ``questions/{split}.json`` (or all files directly; searched recursively).
        start: skip the first ``start`` videos (in scene order) without reading them.
        limit: stop after this many episodes (counted from ``start``).
        size: output frame side; frames are (T, size, size, 3) uint8.
        n_objects: pad K to this many objects (CLEVRER has up to 6); None keeps the scene's K.
        require_annotations: if False, a scene without annotation gets states (T, 0, 6).

    Returns:
        Iterator of EpisodeData with states (T, K, 6) float32, actions None, questions in the
        cjepa format (None if no question file), and info with ``collisions``, ``objects``.
        T = min(video frames, annotation frames); both counts are kept in info.
    """
    root = Path(root)
    videos, annotations = _index(root, split)
    questions = _load_questions(root, split)
    scenes = sorted(videos.items())[start:]
    for count, (scene, video_path) in enumerate(scenes):
        if limit is not None and count >= limit:
            return
        frames = read_video(video_path, size)
        ann_path = annotations.get(scene)
        info: dict[str, Any] = {"scene_index": scene, "video_filename": video_path.name}
        info["n_video_frames"], info["n_annotation_frames"] = frames.shape[0], 0
        if ann_path is not None:
            states = _read_annotation(ann_path, n_objects, info)
        elif require_annotations:
            raise LayoutError(f"annotation_{scene:05d}.json not found under {root}")
        else:
            states = np.zeros((frames.shape[0], n_objects or 0, 6), dtype=np.float32)
        t = min(frames.shape[0], states.shape[0])
        yield EpisodeData(
            episode_id=f"clevrer-{split}-{scene:05d}",
            world="clevrer",
            frames=frames[:t],
            states=states[:t],
            questions=questions.get(scene) if questions else None,
            info=info,
            meta=_meta(split, size, video_path, ann_path),
        )


def _index(root: Path, split: str) -> tuple[dict[int, Path], dict[int, Path]]:
    """({scene: video path}, {scene: annotation path}) of ``split``; no video raises."""
    videos = _index_by_number(_split_dir(root, "video", split), "video", ".mp4")
    if not videos:
        raise LayoutError(f"{root}: no video_XXXXX.mp4 files found for split {split!r}")
    return videos, _index_by_number(_split_dir(root, "annotation", split), "annotation", ".json")


def count_clevrer(root: str | Path, *, split: str = "train") -> int:
    """The number of videos of ``split`` (what ``load_clevrer`` yields), after checking, without
    reading any, that each has its annotation file: a missing one raises a LayoutError naming
    it before an import writes anything."""
    videos, annotations = _index(Path(root), split)
    missing = sorted(set(videos) - set(annotations))
    if missing:
        raise LayoutError(
            f"annotation_{missing[0]:05d}.json not found under {root} (the annotation of "
            f"{videos[missing[0]].name}; {len(missing)} video(s) lack one)"
        )
    return len(videos)


def _meta(split: str, size: int, video_path: Path, ann_path: Path | None) -> dict[str, Any]:
    """Where a CLEVRER episode came from (``EpisodeData.meta``)."""
    return {
        "source": "clevrer",
        "split": split,
        "size": size,
        "video_path": str(video_path),
        "annotation_path": None if ann_path is None else str(ann_path),
        "state_columns": list(CLEVRER_STATE_COLUMNS),
    }


def _read_annotation(ann_path: Path, n_objects: int | None, info: dict[str, Any]) -> np.ndarray:
    """The states (T_ann, K, 6) of one annotation file; records its frame count, objects and
    collisions in ``info``."""
    annotation = read_json(ann_path)
    states = clevrer_states(annotation, str(ann_path), n_objects)
    info["n_annotation_frames"] = states.shape[0]
    info["objects"] = [
        {k: p.get(k) for k in ("object_id", "color", "material", "shape")}
        for p in annotation["object_property"]
    ]
    where = f"{ann_path} collision"
    info["collisions"] = [
        {
            "frame_id": int(field(c, "frame_id", where)),
            "object_ids": [int(o) for o in field(c, "object_ids", where)],
        }
        for c in annotation.get("collision", [])
    ]
    return states
