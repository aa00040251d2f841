"""The published DINO-WM Push-T layout read into :class:`EpisodeData` (``load_dinowm_pusht``).

Shape legend: N episodes, T_max stored steps, T = seq_lengths[i], H x W pixels.

**DINO-WM Push-T** (``gaoyuezhou/dino_wm``; checked against ``datasets/pusht_dset.py`` in several
public forks): a split folder (``pusht_noise/train``, ``.../val``) with ``states.pth``
(N, T_max, 5: agent x, y, block x, y, angle), ``velocities.pth`` (N, T_max, 2: agent vx, vy),
``rel_actions.pth`` / ``abs_actions.pth`` (N, T_max, 2, pixels; DINO-WM divides them by 100
when loading), ``seq_lengths.pkl`` (N valid lengths) and ``obses/episode_{i:03d}``. For Push-T
the forks read ``obses/episode_{i:03d}.mp4``; its point-maze / wall datasets use ``.pth``
tensors (T, H, W, 3) uint8. Both are accepted here (``.pth`` first).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cjepa.data.episode import EpisodeData
from cjepa.data.layout import LayoutError, read_video
from cjepa.data.plain_pickle import PlainUnpickler

# Same columns and order as cjepa.worlds.pusht.STATE_COLUMNS (a test checks they agree); not
# imported from there so that reading data does not import gym-pusht and pygame.
_STATES_PTH_COLUMNS = ("agent_x", "agent_y", "block_x", "block_y", "block_angle")
DINOWM_STATE_COLUMNS: tuple[str, ...] = (*_STATES_PTH_COLUMNS, "agent_vx", "agent_vy")


def _load_seq_lengths(path: Path, n: int, t_max: int) -> list[int]:
    if not path.is_file():
        raise LayoutError(f"{path}: file not found (field seq_lengths)")
    try:  # a pickle only because DINO-WM publishes it so: plain data, never code
        with path.open("rb") as f:
            raw = PlainUnpickler(f).load()
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
    root: str | Path, *, split: str | None = None, start: int = 0, limit: int | None = None
) -> Iterator[EpisodeData]:
    """Yield DINO-WM Push-T episodes in file order.

    Args:
        root: a split folder holding ``states.pth`` etc., or its parent when ``split`` is given.
        split: optional sub-folder name (DINO-WM uses ``train`` and ``val``).
        start: skip the first ``start`` episodes without reading their obses.
        limit: stop after this many episodes (counted from ``start``).

    Returns:
        Iterator of EpisodeData with frames (T, H, W, 3) uint8 at the stored resolution, states
        (T, 1, 7) float32 in :data:`DINOWM_STATE_COLUMNS` order, actions (T, 2) float32 relative
        in pixels (as stored, not divided by 100); T = seq_lengths[i]. ``info["abs_actions"]``
        holds the absolute actions when ``abs_actions.pth`` exists.
    """
    base = Path(root) / split if split else Path(root)
    states, rel, absolute, lengths = _load_arrays(base)
    name = split or base.name
    n = states.shape[0]
    for i in range(start, n if limit is None else min(n, start + limit)):
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


def count_dinowm_pusht(root: str | Path, *, split: str | None = None) -> int:
    """The number of episodes ``load_dinowm_pusht`` yields, after checking every array's shape,
    ``seq_lengths`` and that each episode has its obses file (none decoded), so that an import
    fails with one LayoutError naming the file before it writes anything."""
    base = Path(root) / split if split else Path(root)
    n = _load_arrays(base)[0].shape[0]
    for i in range(n):
        stem = base / "obses" / f"episode_{i:03d}"
        if not (stem.with_suffix(".pth").is_file() or stem.with_suffix(".mp4").is_file()):
            raise LayoutError(f"{stem}.pth (or .mp4): file not found (field obses)")
    return n


def _load_arrays(
    base: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[int]]:
    """A split folder's arrays, checked: states (N, T_max, 7) (velocities joined when stored
    apart), relative actions (N, T_max, 2), absolute actions or None, and the N lengths."""
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
    return states, rel, absolute, lengths
