"""Loaders that read published dataset layouts into :class:`EpisodeData`.

Shape legend: T frames, H = W = ``size`` pixels, K objects (or state entities), F features.

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

**DINO-WM Push-T** (``gaoyuezhou/dino_wm``; checked against ``datasets/pusht_dset.py`` in several
public forks): a split folder (``pusht_noise/train``, ``.../val``) with ``states.pth``
(N, T_max, 5: agent x, y, block x, y, angle), ``velocities.pth`` (N, T_max, 2: agent vx, vy),
``rel_actions.pth`` / ``abs_actions.pth`` (N, T_max, 2, pixels; DINO-WM divides them by 100
when loading), ``seq_lengths.pkl`` (N valid lengths) and ``obses/episode_{i:03d}``. For Push-T
the forks read ``obses/episode_{i:03d}.mp4``; its point-maze / wall datasets use ``.pth``
tensors (T, H, W, 3) uint8. Both are accepted here (``.pth`` first).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cjepa.data.episode import EpisodeData

CLEVRER_STATE_COLUMNS: tuple[str, ...] = ("x", "y", "vx", "vy", "angle", "present")
"""Per-object CLEVRER state columns: world-frame ``location[:2]``, ``velocity[:2]`` as stored
(scene units, not pixels), ``orientation[-1]`` (0 if absent), ``present`` =
``inside_camera_view`` (1.0 / 0.0). An object missing from a frame's list is all zeros."""

# Same columns and order as cjepa.worlds.pusht.STATE_COLUMNS (a test checks they agree); not
# imported from there so that reading data does not import gym-pusht and pygame.
_STATES_PTH_COLUMNS = ("agent_x", "agent_y", "block_x", "block_y", "block_angle")
DINOWM_STATE_COLUMNS: tuple[str, ...] = (*_STATES_PTH_COLUMNS, "agent_vx", "agent_vy")


class LayoutError(ValueError):
    """A published file is missing or malformed; the message names the file and the field."""


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise LayoutError(f"{where}: missing field {key!r}")
    return record[key]


def read_video(path: Path, size: int) -> np.ndarray:
    """Decode a video with cv2 into (T, size, size, 3) uint8 RGB (aspect ratio not kept).

    Squashing 480 x 320 CLEVRER frames to a square follows SAVi's 64 x 64 CLEVRER input.
    """
    if not path.is_file():
        raise LayoutError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if rgb.shape[:2] != (size, size):
                rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
            frames.append(rgb)
    finally:
        cap.release()
    if not frames:
        raise LayoutError(f"{path}: no frames could be decoded")
    return np.stack(frames).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# CLEVRER


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError and bad encodings
        raise LayoutError(f"{path}: not valid JSON ({err})") from err


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
    qtype = _field(question, "question_type", where)
    text = _field(question, "question", where)
    out: dict[str, Any] = {"type": qtype, "question": text}
    if qtype == "descriptive":
        out["answer"] = question.get("answer")
    else:
        choices = []
        for j, choice in enumerate(_field(question, "choices", where)):
            answer = choice.get("answer") if isinstance(choice, dict) else None
            if answer not in (None, "correct", "wrong"):
                raise LayoutError(
                    f"{where}: choices[{j}].answer must be correct/wrong, got {answer!r}"
                )
            correct = None if answer is None else answer == "correct"
            choices.append(
                {"text": _field(choice, "choice", f"{where} choices[{j}]"), "correct": correct}
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
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise LayoutError(f"{path}: expected a list of scenes, got {type(entries).__name__}")
    by_scene: dict[int, list[dict[str, Any]]] = {}
    for i, entry in enumerate(entries):
        where = f"{path} [{i}]"
        scene = int(_field(entry, "scene_index", where))
        qs = _field(entry, "questions", where)
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
    props = _field(annotation, "object_property", where)
    trajectory = _field(annotation, "motion_trajectory", where)
    column = {
        int(_field(p, "object_id", f"{where} object_property")): k for k, p in enumerate(props)
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
        for obj in _field(frame, "objects", fwhere):
            oid = int(_field(obj, "object_id", fwhere))
            if oid not in column:
                raise LayoutError(f"{fwhere}: object_id {oid} not in object_property")
            loc = _field(obj, "location", fwhere)
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
    limit: int | None = None,
    size: int = 64,
    n_objects: int | None = None,
    require_annotations: bool = True,
) -> Iterator[EpisodeData]:
    """Yield CLEVRER videos of ``split`` ("train", "validation", "test") in scene order.

    Args:
        root: folder holding ``video_{split}/``, ``annotation_{split}/`` and
            ``questions/{split}.json`` (or all files directly; searched recursively).
        limit: stop after this many episodes.
        size: output frame side; frames are (T, size, size, 3) uint8.
        n_objects: pad K to this many objects (CLEVRER has up to 6); None keeps the scene's K.
        require_annotations: if False, a scene without annotation gets states (T, 0, 6).

    Returns:
        Iterator of EpisodeData with states (T, K, 6) float32, actions None, questions in the
        cjepa format (None if no question file), and info with ``collisions``, ``objects``.
        T = min(video frames, annotation frames); both counts are kept in info.
    """
    root = Path(root)
    videos = _index_by_number(_split_dir(root, "video", split), "video", ".mp4")
    if not videos:
        raise LayoutError(f"{root}: no video_XXXXX.mp4 files found for split {split!r}")
    annotations = _index_by_number(_split_dir(root, "annotation", split), "annotation", ".json")
    questions = _load_questions(root, split)
    for count, (scene, video_path) in enumerate(sorted(videos.items())):
        if limit is not None and count >= limit:
            return
        frames = read_video(video_path, size)
        ann_path = annotations.get(scene)
        info: dict[str, Any] = {"scene_index": scene, "video_filename": video_path.name}
        info["n_video_frames"], info["n_annotation_frames"] = frames.shape[0], 0
        if ann_path is None:
            if require_annotations:
                raise LayoutError(f"annotation_{scene:05d}.json not found under {root}")
            states = np.zeros((frames.shape[0], n_objects or 0, 6), dtype=np.float32)
        else:
            annotation = _read_json(ann_path)
            states = clevrer_states(annotation, str(ann_path), n_objects)
            info["n_annotation_frames"] = states.shape[0]
            info["objects"] = [
                {k: p.get(k) for k in ("object_id", "color", "material", "shape")}
                for p in annotation["object_property"]
            ]
            info["collisions"] = [
                {
                    "frame_id": int(_field(c, "frame_id", f"{ann_path} collision")),
                    "object_ids": [
                        int(o) for o in _field(c, "object_ids", f"{ann_path} collision")
                    ],
                }
                for c in annotation.get("collision", [])
            ]
        t = min(frames.shape[0], states.shape[0])
        yield EpisodeData(
            episode_id=f"clevrer-{split}-{scene:05d}",
            world="clevrer",
            frames=frames[:t],
            states=states[:t],
            questions=questions.get(scene) if questions else None,
            info=info,
            meta={
                "source": "clevrer",
                "split": split,
                "size": size,
                "video_path": str(video_path),
                "annotation_path": None if ann_path is None else str(ann_path),
                "state_columns": list(CLEVRER_STATE_COLUMNS),
            },
        )


# --------------------------------------------------------------------------------------------
# DINO-WM Push-T


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers, numbers and numpy arrays/scalars.

    ``seq_lengths.pkl`` is read with pickle only because DINO-WM publishes it that way; refusing
    every other global keeps a tampered file from running code.
    """

    _ALLOWED = frozenset(
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ) | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_seq_lengths(path: Path, n: int, t_max: int) -> list[int]:
    if not path.is_file():
        raise LayoutError(f"{path}: file not found (field seq_lengths)")
    try:
        with path.open("rb") as f:
            raw = _PlainUnpickler(f).load()
        lengths = [int(x) for x in np.asarray(raw).reshape(-1)]
    except (pickle.UnpicklingError, TypeError, ValueError, EOFError) as err:
        raise LayoutError(f"{path}: seq_lengths is not a list of integers ({err})") from err
    if len(lengths) != n:
        raise LayoutError(f"{path}: seq_lengths has {len(lengths)} entries, states.pth has {n}")
    bad = [x for x in lengths if not 1 <= x <= t_max]
    if bad:
        raise LayoutError(f"{path}: seq_lengths {bad[:3]} outside [1, T_max={t_max}]")
    return lengths


def _load_array(path: Path, field: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """torch.load(weights_only=True) a tensor and check its shape (None = any size)."""
    if not path.is_file():
        raise LayoutError(f"{path}: file not found (field {field})")
    from cjepa.train import load_checkpoint  # weights-only; never repeats torch's unsafe advice

    try:
        value = load_checkpoint(path)
    except ValueError as err:
        raise LayoutError(f"field {field} could not be read as a tensor: {err}") from err
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    ok = array.ndim == len(shape) and all(
        s is None or s == a for s, a in zip(shape, array.shape, strict=True)
    )
    if not ok:
        want = "x".join("*" if s is None else str(s) for s in shape)
        raise LayoutError(f"{path}: field {field} has shape {array.shape}, expected {want}")
    return array


def _load_obses(obses: Path, index: int) -> np.ndarray:
    pth, mp4 = obses / f"episode_{index:03d}.pth", obses / f"episode_{index:03d}.mp4"
    if pth.is_file():
        frames = _load_array(pth, "obses", (None, None, None, 3))
        if frames.dtype != np.uint8:
            raise LayoutError(f"{pth}: field obses has dtype {frames.dtype}, expected uint8")
        return frames
    if mp4.is_file():
        cap = cv2.VideoCapture(str(mp4))
        side = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        return read_video(mp4, side)
    raise LayoutError(f"{pth} (or .mp4): file not found (field obses)")


def load_dinowm_pusht(
    root: str | Path, *, split: str | None = None, limit: int | None = None
) -> Iterator[EpisodeData]:
    """Yield DINO-WM Push-T episodes in file order.

    Args:
        root: a split folder holding ``states.pth`` etc., or its parent when ``split`` is given.
        split: optional sub-folder name (DINO-WM uses ``train`` and ``val``).
        limit: stop after this many episodes.

    Returns:
        Iterator of EpisodeData with frames (T, H, W, 3) uint8 at the stored resolution, states
        (T, 1, 7) float32 in :data:`DINOWM_STATE_COLUMNS` order, actions (T, 2) float32 relative
        in pixels (as stored, not divided by 100); T = seq_lengths[i]. ``info["abs_actions"]``
        holds the absolute actions when ``abs_actions.pth`` exists.
    """
    base = Path(root) / split if split else Path(root)
    states = _load_array(base / "states.pth", "states", (None, None, None))
    n, t_max, f = states.shape
    if f == 5:
        velocities = _load_array(base / "velocities.pth", "velocities", (n, t_max, 2))
        states = np.concatenate([states, velocities], axis=-1)
    elif f != 7:
        raise LayoutError(f"{base / 'states.pth'}: field states has {f} columns, expected 5 or 7")
    rel = _load_array(base / "rel_actions.pth", "rel_actions", (n, t_max, 2))
    abs_path = base / "abs_actions.pth"
    absolute = _load_array(abs_path, "abs_actions", (n, t_max, 2)) if abs_path.is_file() else None
    lengths = _load_seq_lengths(base / "seq_lengths.pkl", n, t_max)
    name = split or base.name
    for i in range(n if limit is None else min(n, limit)):
        t = lengths[i]
        frames = _load_obses(base / "obses", i)
        if frames.shape[0] < t:
            raise LayoutError(
                f"{base / 'obses'}/episode_{i:03d}: field obses has {frames.shape[0]} frames, "
                f"seq_lengths says {t}"
            )
        info: dict[str, Any] = {"seq_length": t}
        if absolute is not None:
            info["abs_actions"] = absolute[i, :t].astype(np.float64).tolist()
        yield EpisodeData(
            episode_id=f"dinowm-pusht-{name}-{i:06d}",
            world="dinowm_pusht",
            frames=np.ascontiguousarray(frames[:t]),
            states=states[i, :t, None, :].astype(np.float32),
            actions=rel[i, :t].astype(np.float32),
            info=info,
            meta={
                "source": "dinowm_pusht",
                "split": name,
                "episode_index": i,
                "path": str(base),
                "state_columns": list(DINOWM_STATE_COLUMNS),
                "action_space": "relative",
                "action_units": "pixels (DINO-WM divides by action_scale=100 when loading)",
            },
        )
