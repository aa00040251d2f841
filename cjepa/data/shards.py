"""Parquet shards: recorded episodes and extracted slots, with versioned, validated schemas.

Episode shards live in ``cjepa.data.episode_shards``, the shared writing and validating helpers
in ``cjepa.data.shard_io``; this module holds slot shards and re-exports the public names.

The episode-shard schema (kind ``"episodes"``) is documented in ``cjepa.data.episode_shards``.

Slot shards (kind ``"slots"``, ``SLOT_SCHEMA_VERSION = 1``), one row per (episode, frame):
``episode_id`` string, ``frame`` int32, ``slots`` fixed_size_list<float32>[N * D] (row-major
(N, D)).

File key-value metadata (both kinds): ``cjepa.kind``, ``cjepa.schema_version``,
``cjepa.metadata`` (JSON object given by the writer); slot shards add ``cjepa.n_slots``,
``cjepa.slot_dim``, ``cjepa.encoder_hash`` and ``cjepa.encoder_config`` (JSON).

Writes are atomic (hidden temp file in the same directory, fsync, ``os.replace``) and
deterministic (fixed compression, no timestamps), so equal inputs give byte-identical files.
Readers validate everything and raise ``ShardError`` naming the file and the field at fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cjepa.data.episode_shards import (
    EPISODE_SCHEMA,
    iter_episode_shard,
    read_episode_shard,
    write_episode_shard,
)
from cjepa.data.shard_io import (
    EPISODE_SCHEMA_VERSION,
    SLOT_SCHEMA_VERSION,
    TEMP_SUFFIX,
    ShardError,
    atomic_write,
    atomic_write_bytes,
    check_schema,
    dumps,
    file_metadata,
    loads_json,
    open_shard,
    temp_path_for,
    write_parquet,
)

__all__ = [
    "EPISODE_SCHEMA",
    "EPISODE_SCHEMA_VERSION",
    "SLOT_SCHEMA_VERSION",
    "TEMP_SUFFIX",
    "ShardError",
    "SlotShard",
    "atomic_write",
    "atomic_write_bytes",
    "iter_episode_shard",
    "load_slot_episodes",
    "read_episode_shard",
    "read_shard_metadata",
    "read_slot_shard",
    "temp_path_for",
    "write_episode_shard",
    "write_slot_shard",
]

_SLOT_ROWS_PER_GROUP = 65536


def read_shard_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded file metadata of any shard, without reading its rows.

    Returns:
        ``{"kind", "schema_version", "num_rows", "metadata"}`` plus, for slot shards,
        ``"n_slots", "slot_dim", "encoder_hash", "encoder_config"``.
    """
    pf, meta = open_shard(path, None)
    kind = meta["cjepa.kind"]
    out: dict[str, Any] = {
        "kind": kind,
        "schema_version": int(meta["cjepa.schema_version"]),
        "num_rows": pf.metadata.num_rows,
        "metadata": loads_json(path, "metadata 'cjepa.metadata'", meta.get("cjepa.metadata", "{}")),
    }
    if kind == "slots":
        out.update(_slot_meta(path, meta))
    return out


# --------------------------------------------------------------------------- slot shards


@dataclass
class SlotShard:
    """The rows of one slot shard.

    Attributes:
        episode_ids: (R,) episode id of each row.
        frames: (R,) int32 frame index of each row.
        slots: (R, N, D) float32.
    """

    path: str
    episode_ids: list[str]
    frames: np.ndarray
    slots: np.ndarray
    encoder_hash: str
    encoder_config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


def _slot_schema(n: int, d: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("episode_id", pa.string(), nullable=False),
            pa.field("frame", pa.int32(), nullable=False),
            pa.field("slots", pa.list_(pa.float32(), n * d), nullable=False),
        ]
    )


def write_slot_shard(
    path: str | Path,
    episode_ids: Sequence[str],
    frames: Sequence[int] | np.ndarray,
    slots: np.ndarray,
    *,
    encoder_hash: str,
    encoder_config: dict[str, Any],
    metadata: dict | None = None,
) -> None:
    """Atomically write per-frame slots.

    Args:
        episode_ids: (R,) episode of each row.
        frames: (R,) non-negative frame index of each row.
        slots: (R, N, D) float32.
        encoder_hash: identifies the frozen encoder weights that produced the slots.
        encoder_config: JSON-able encoder configuration.
    """
    slots = np.asarray(slots)
    frames = np.asarray(frames)
    if slots.ndim != 3 or slots.dtype != np.float32:
        raise ValueError(
            f"{path}: slots must be (R, N, D) float32, got {slots.shape} {slots.dtype}"
        )
    r, n, d = slots.shape
    if len(episode_ids) != r or frames.shape != (r,):
        raise ValueError(
            f"{path}: {len(episode_ids)} episode_ids and frames {frames.shape} for {r} slot rows"
        )
    if r and (frames.dtype.kind not in "iu" or frames.min() < 0 or frames.max() > 2**31 - 1):
        raise ValueError(f"{path}: frames must be non-negative int32 indices")
    if not encoder_hash:
        raise ValueError(f"{path}: encoder_hash must be a non-empty string")
    _check_finite(path, list(episode_ids), frames, slots, ValueError)
    flat = pa.array(np.ascontiguousarray(slots, dtype="<f4").reshape(-1), type=pa.float32())
    table = pa.table(
        [
            pa.array(list(episode_ids), type=pa.string()),
            pa.array(frames.astype(np.int32), type=pa.int32()),
            pa.FixedSizeListArray.from_arrays(flat, n * d),
        ],
        schema=_slot_schema(n, d),
    )
    extra = {"n_slots": str(n), "slot_dim": str(d), "encoder_hash": encoder_hash}
    extra["encoder_config"] = dumps(encoder_config)
    meta = file_metadata("slots", SLOT_SCHEMA_VERSION, metadata, **extra)
    write_parquet(path, table.schema.with_metadata(meta), [table], _SLOT_ROWS_PER_GROUP)


def _check_finite(path, episode_ids: list, frames: np.ndarray, slots: np.ndarray, error) -> None:
    """Refuse NaN/inf slots, naming the file, the first bad episode and frame, and the count."""
    bad = ~np.isfinite(slots).all(axis=(1, 2))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise error(
            f"{path}: non-finite slot values in {int(bad.sum())} row(s), first at episode "
            f"{episode_ids[i]!r} frame {int(frames[i])}"
        )


def _slot_meta(path, meta: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("n_slots", "slot_dim"):
        value = meta.get(f"cjepa.{key}", "")
        if not value.isdigit() or int(value) < 1:
            raise ShardError(f"{path}: metadata cjepa.{key} is {value!r}, want a positive integer")
        out[key] = int(value)
    if not meta.get("cjepa.encoder_hash"):
        raise ShardError(f"{path}: metadata cjepa.encoder_hash is missing or empty")
    out["encoder_hash"] = meta["cjepa.encoder_hash"]
    out["encoder_config"] = loads_json(
        path, "metadata 'cjepa.encoder_config'", meta.get("cjepa.encoder_config", "")
    )
    return out


def read_slot_shard(path: str | Path) -> SlotShard:
    """Read and validate a slot shard; rows keep their stored order."""
    pf, meta = open_shard(path, "slots")
    sm = _slot_meta(path, meta)
    n, d = sm["n_slots"], sm["slot_dim"]
    check_schema(path, pf.schema_arrow, _slot_schema(n, d))
    try:
        table = pf.read()
    except (pa.ArrowException, OSError, ValueError) as e:  # ValueError: bad UTF-8 in footer
        raise ShardError(f"{path}: rows are unreadable ({e})") from e
    values = table.column("slots").combine_chunks().flatten()
    named = zip(table.column_names, table.columns, strict=True)
    for name, col in [*named, ("slots values", values)]:
        if col.null_count:
            raise ShardError(f"{path}: field {name!r} has nulls")
    flat = values.to_numpy(zero_copy_only=False)
    episode_ids = table.column("episode_id").to_pylist()
    frames = table.column("frame").to_numpy().astype(np.int32)
    _check_finite(path, episode_ids, frames, flat.reshape(table.num_rows, n, d), ShardError)
    return SlotShard(
        path=str(path),
        episode_ids=episode_ids,
        frames=frames,
        slots=flat.astype(np.float32).reshape(table.num_rows, n, d),
        encoder_hash=sm["encoder_hash"],
        encoder_config=sm["encoder_config"],
        metadata=loads_json(path, "metadata 'cjepa.metadata'", meta.get("cjepa.metadata", "{}")),
    )


def load_slot_episodes(
    paths: Iterable[str | Path], *, encoder_hash: str | None = None
) -> dict[str, np.ndarray]:
    """Regroup slot rows from several shards into whole episodes.

    Every episode must have each frame 0..T-1 exactly once across all shards, and every shard
    must come from one encoder (the given ``encoder_hash``, else the first shard's). Frames
    missing after an episode's last stored frame cannot be seen here (T is not stored).

    Returns:
        ``{episode_id: (T, N, D) float32}`` in frame order, ids sorted.
    """
    rows: dict[str, list[tuple[int, str, np.ndarray]]] = {}
    ref: tuple[str, tuple] | None = None  # (first path, its (encoder_hash, N, D))
    for path in paths:
        shard = read_slot_shard(path)
        sig = (shard.encoder_hash, *shard.slots.shape[1:])
        ref = ref or (str(path), sig)
        if encoder_hash is not None and shard.encoder_hash != encoder_hash:
            raise ShardError(f"{path}: encoder_hash {shard.encoder_hash!r}, want {encoder_hash!r}")
        if sig != ref[1]:
            raise ShardError(
                f"{path}: (encoder_hash, N, D) = {sig} differs from {ref[0]}: {ref[1]}; "
                "slots of different encoders cannot be mixed"
            )
        for eid, frame, s in zip(shard.episode_ids, shard.frames, shard.slots, strict=True):
            rows.setdefault(eid, []).append((int(frame), str(path), s))
    out: dict[str, np.ndarray] = {}
    for eid in sorted(rows):
        ep = sorted(rows[eid], key=lambda x: x[0])
        idx = [f for f, _, _ in ep]
        if len(set(idx)) != len(idx):
            dup = sorted({f for f in idx if idx.count(f) > 1})
            where = sorted({p for f, p, _ in ep if f in dup})
            raise ShardError(f"episode {eid!r}: duplicate slot frames {dup[:10]} in {where}")
        if idx != list(range(len(idx))):
            missing = sorted(set(range(idx[-1] + 1)) - set(idx))
            raise ShardError(f"episode {eid!r}: slot frames missing {missing[:10]} (gap)")
        out[eid] = np.stack([s for _, _, s in ep])  # (T, N, D)
    return out
