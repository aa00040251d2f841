"""Episode shards: one Parquet row per recorded episode (``write_episode_shard``,
``iter_episode_shard``, ``read_episode_shard``).

Episode shards (kind ``"episodes"``, ``EPISODE_SCHEMA_VERSION = 1``), one row per episode.
Arrays are stored as raw little-endian C-order bytes plus scalar shape columns, and Parquet's
zstd compresses them: lossless, no image codec dependency, identical bytes on every machine.

    column          type          null  holds
    episode_id      string        no    EpisodeData.episode_id (unique within the shard)
    world           string        no    EpisodeData.world
    n_frames        int32         no    T
    frame_height    int32         no    H
    frame_width     int32         no    W
    frames          large_binary  no    (T, H, W, 3) uint8
    state_k         int32         no    K
    state_f         int32         no    F
    states          large_binary  no    (T, K, F) float32
    action_dim      int32         yes   A (null iff actions is null)
    actions         large_binary  yes   (T, A) float32
    masks_dtype     string        yes   numpy dtype string of masks, e.g. "|u1", "<i4"
    masks           large_binary  yes   (T, H, W) integer instance masks
    questions       string        yes   JSON list of question dicts
    info            string        no    JSON object
    meta            string        no    JSON object

``cjepa.data.shards`` documents the file metadata and re-exports every public name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cjepa.data.episode import EpisodeData
from cjepa.data.shard_io import (
    EPISODE_SCHEMA_VERSION,
    ShardError,
    check_schema,
    dumps,
    file_metadata,
    loads_json,
    open_shard,
    read_array,
    write_parquet,
)

_EPISODE_ROWS_PER_GROUP = 8

EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("world", pa.string(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("frame_height", pa.int32(), nullable=False),
        pa.field("frame_width", pa.int32(), nullable=False),
        pa.field("frames", pa.large_binary(), nullable=False),
        pa.field("state_k", pa.int32(), nullable=False),
        pa.field("state_f", pa.int32(), nullable=False),
        pa.field("states", pa.large_binary(), nullable=False),
        pa.field("action_dim", pa.int32()),
        pa.field("actions", pa.large_binary()),
        pa.field("masks_dtype", pa.string()),
        pa.field("masks", pa.large_binary()),
        pa.field("questions", pa.string()),
        pa.field("info", pa.string(), nullable=False),
        pa.field("meta", pa.string(), nullable=False),
    ]
)


def _le_bytes(arr: np.ndarray) -> bytes:
    """C-order little-endian bytes of ``arr`` (the on-disk layout of every array column)."""
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _require_float32(ep: EpisodeData, name: str, arr: np.ndarray) -> None:
    if arr.dtype != np.float32:
        raise ValueError(
            f"episode {ep.episode_id!r}: {name} must be float32 (the stored dtype), got "
            f"{arr.dtype}; cast it in the world so the shard round-trips exactly"
        )


def _episode_row(ep: EpisodeData) -> dict[str, Any]:
    t, h, w, _ = ep.frames.shape
    _require_float32(ep, "states", ep.states)
    row: dict[str, Any] = {
        "episode_id": ep.episode_id,
        "world": ep.world,
        "n_frames": t,
        "frame_height": h,
        "frame_width": w,
        "frames": _le_bytes(ep.frames),
        "state_k": ep.states.shape[1],
        "state_f": ep.states.shape[2],
        "states": _le_bytes(ep.states),
        "action_dim": None,
        "actions": None,
        "masks_dtype": None,
        "masks": None,
        "questions": None if ep.questions is None else dumps(ep.questions),
        "info": dumps(ep.info),
        "meta": dumps(ep.meta),
    }
    if ep.actions is not None:
        _require_float32(ep, "actions", ep.actions)
        row["action_dim"] = ep.actions.shape[1]
        row["actions"] = _le_bytes(ep.actions)
    if ep.masks is not None:
        if ep.masks.dtype.kind not in "iu":
            raise ValueError(
                f"episode {ep.episode_id!r}: masks must be integer, got {ep.masks.dtype}"
            )
        row["masks_dtype"] = ep.masks.dtype.newbyteorder("<").str
        row["masks"] = _le_bytes(ep.masks)
    return row


def write_episode_shard(
    path: str | Path, episodes: Iterable[EpisodeData], *, metadata: dict | None = None
) -> None:
    """Atomically write ``episodes`` (in order) to one Parquet shard.

    Args:
        path: the final file name (``*.parquet``).
        episodes: records with unique ids (a generator is consumed lazily, a row group at a
            time); states/actions must be float32, masks integer.
        metadata: JSON-able dict stored as ``cjepa.metadata`` (e.g. the generation config).
    """
    meta = file_metadata("episodes", EPISODE_SCHEMA_VERSION, metadata)
    schema = EPISODE_SCHEMA.with_metadata(meta)

    def groups() -> Iterator[pa.Table]:
        seen: set[str] = set()
        rows: list[dict[str, Any]] = []
        for ep in episodes:
            if ep.episode_id in seen:
                raise ValueError(f"{path}: duplicate episode id {ep.episode_id!r}")
            seen.add(ep.episode_id)
            rows.append(_episode_row(ep))
            if len(rows) == _EPISODE_ROWS_PER_GROUP:
                yield pa.Table.from_pylist(rows, schema=schema)
                rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=schema)

    write_parquet(path, schema, groups(), _EPISODE_ROWS_PER_GROUP)


class _Cells:
    """Row ``i`` of a decoded row group: ``scalar(name)`` and ``buf(name)`` (None when null)."""

    def __init__(self, cols: dict[str, pa.Array], i: int) -> None:
        self.cols, self.i = cols, i

    def scalar(self, name: str) -> Any:
        return self.cols[name][self.i].as_py()

    def buf(self, name: str) -> pa.Buffer | None:
        v = self.cols[name][self.i]
        return v.as_buffer() if v.is_valid else None


_REQUIRED = ("episode_id", "world", "n_frames", "frame_height", "frame_width", "state_k",
             "state_f", "info", "meta")  # fmt: skip


def _episode_from_row(path, cols: dict[str, pa.Array], i: int) -> EpisodeData:
    row = _Cells(cols, i)
    scalar, buf = row.scalar, row.buf
    eid = scalar("episode_id")
    for name in _REQUIRED:
        if scalar(name) is None:
            raise ShardError(f"{path}: episode row {i}: required field {name!r} is null")
    at = f"episode {eid!r} field"
    t, h, w = scalar("n_frames"), scalar("frame_height"), scalar("frame_width")
    frames = read_array(path, f"{at} 'frames'", buf("frames"), np.dtype(np.uint8), (t, h, w, 3))
    states = read_array(
        path,
        f"{at} 'states'",
        buf("states"),
        np.dtype("<f4"),
        (t, scalar("state_k"), scalar("state_f")),
    )
    actions = _read_actions(path, row, at, t)
    masks = _read_masks(path, row, at, (t, h, w))
    questions = None
    if scalar("questions") is not None:
        questions = loads_json(path, f"{at} 'questions'", scalar("questions"))
    info = loads_json(path, f"{at} 'info'", scalar("info"))
    meta = loads_json(path, f"{at} 'meta'", scalar("meta"))
    try:
        return EpisodeData(
            episode_id=eid,
            world=scalar("world"),
            frames=frames,
            states=states,
            actions=actions,
            masks=masks,
            questions=questions,
            info=info,
            meta=meta,
        )
    except ValueError as e:
        raise ShardError(f"{path}: {e}") from e


def _read_actions(path, row: _Cells, at: str, t: int) -> np.ndarray | None:
    """(T, A) float32 actions, or None; ``action_dim`` and ``actions`` are null together."""
    if (row.scalar("action_dim") is None) != (row.buf("actions") is None):
        raise ShardError(f"{path}: {at} 'action_dim' and 'actions' must be null together")
    if row.scalar("action_dim") is None:
        return None
    shape = (t, row.scalar("action_dim"))
    return read_array(path, f"{at} 'actions'", row.buf("actions"), np.dtype("<f4"), shape)


def _read_masks(path, row: _Cells, at: str, shape: tuple[int, int, int]) -> np.ndarray | None:
    """(T, H, W) integer instance masks, or None; ``masks_dtype`` and ``masks`` are null
    together."""
    if (row.scalar("masks_dtype") is None) != (row.buf("masks") is None):
        raise ShardError(f"{path}: {at} 'masks_dtype' and 'masks' must be null together")
    if row.scalar("masks_dtype") is None:
        return None
    try:
        mdt = np.dtype(row.scalar("masks_dtype"))
    except TypeError as e:
        raise ShardError(f"{path}: {at} 'masks_dtype' {row.scalar('masks_dtype')!r} invalid") from e
    if mdt.kind not in "iu":
        raise ShardError(f"{path}: {at} 'masks_dtype' {mdt} is not an integer dtype")
    return read_array(path, f"{at} 'masks'", row.buf("masks"), mdt, shape)


def iter_episode_shard(path: str | Path) -> Iterator[EpisodeData]:
    """Yield the shard's episodes in stored order, one row group in memory at a time."""
    pf, _ = open_shard(path, "episodes")
    check_schema(path, pf.schema_arrow, EPISODE_SCHEMA)
    seen: set[str] = set()
    for g in range(pf.num_row_groups):
        try:
            batch = pf.read_row_group(g)
        except (pa.ArrowException, OSError, ValueError) as e:  # ValueError: bad UTF-8 in footer
            raise ShardError(f"{path}: row group {g} is unreadable ({e})") from e
        cols = {name: batch.column(name).combine_chunks() for name in batch.column_names}
        for i in range(batch.num_rows):
            ep = _episode_from_row(path, cols, i)
            if ep.episode_id in seen:
                raise ShardError(f"{path}: field 'episode_id' repeats {ep.episode_id!r}")
            seen.add(ep.episode_id)
            yield ep


def read_episode_shard(path: str | Path) -> list[EpisodeData]:
    """Read and validate every episode of a shard (see ``iter_episode_shard``)."""
    return list(iter_episode_shard(path))
