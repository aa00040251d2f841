"""Parquet shards: recorded episodes and extracted slots, with versioned, validated schemas.

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

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cjepa.data.episode import EpisodeData

EPISODE_SCHEMA_VERSION = 1
SLOT_SCHEMA_VERSION = 1
_VERSIONS = {"episodes": EPISODE_SCHEMA_VERSION, "slots": SLOT_SCHEMA_VERSION}
TEMP_SUFFIX = ".tmp"  # temp files are ".<final name>.<random>.tmp": hidden and not *.parquet

# Fixed writer options: determinism needs fixed settings; zstd-3 is fast and squeezes the
# mostly-flat rendered frames well. Rows are written in groups so readers can stream.
# Page CRCs let the reader tell a flipped byte from data (silent corruption -> ShardError).
_WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": False,
    "write_page_checksum": True,
}
_EPISODE_ROWS_PER_GROUP = 8
_SLOT_ROWS_PER_GROUP = 65536

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


class ShardError(ValueError):
    """A shard file is unreadable or does not match its schema."""


# --------------------------------------------------------------------------- atomic writes


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temp name beside ``path`` (never matched by ``*.parquet`` listings)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file so that ``path`` holds either nothing/the old file or the complete new one.

    ``write`` fills a temp file in the same directory (same filesystem, so ``os.replace`` is an
    atomic rename); the data is fsynced before the rename and the directory after it, so a
    crash cannot leave a half shard under the final name. On error the temp file is removed; a
    killed writer may leave one behind, which listings ignore.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def _write_parquet(
    path: str | Path, schema: pa.Schema, tables: Iterable[pa.Table], rows_per_group: int
) -> None:
    """Atomically write ``tables`` (each ``schema``) as consecutive row groups of one file.

    Streaming table by table bounds a writer's memory to one row group, not a whole shard.
    """

    def write(f: BinaryIO) -> None:
        with pq.ParquetWriter(f, schema, **_WRITE_OPTIONS) as writer:
            for table in tables:
                writer.write_table(table, row_group_size=rows_per_group)

    atomic_write(path, write)


def _json_default(obj: Any) -> Any:
    # Worlds often put numpy scalars into info/meta; store them as plain JSON numbers.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def _file_metadata(kind: str, version: int, metadata: dict | None, **extra: str) -> dict:
    meta = {"cjepa.kind": kind, "cjepa.schema_version": str(version)}
    meta["cjepa.metadata"] = _dumps(metadata if metadata is not None else {})
    meta.update({f"cjepa.{k}": v for k, v in extra.items()})
    return meta


# --------------------------------------------------------------------------- episode shards


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
        "questions": None if ep.questions is None else _dumps(ep.questions),
        "info": _dumps(ep.info),
        "meta": _dumps(ep.meta),
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
    meta = _file_metadata("episodes", EPISODE_SCHEMA_VERSION, metadata)
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

    _write_parquet(path, schema, groups(), _EPISODE_ROWS_PER_GROUP)


def _parquet_file(path: str | Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as e:  # ValueError: bad UTF-8 in footer
        raise ShardError(f"{path}: not a readable Parquet shard ({e})") from e


def _open(path: str | Path, kind: str | None) -> tuple[pq.ParquetFile, dict[str, str]]:
    """Open a shard, check its kind (any known kind if None) and schema version.

    Returns:
        the open file and its ``cjepa.*`` key-value metadata as strings.
    """
    pf = _parquet_file(path)
    raw = pf.schema_arrow.metadata or {}
    meta = {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in raw.items()
        if k.startswith(b"cjepa.")
    }
    found = meta.get("cjepa.kind")
    if found not in _VERSIONS or kind not in (None, found):
        want = kind or " or ".join(_VERSIONS)
        raise ShardError(f"{path}: metadata cjepa.kind is {found!r}, want {want}")
    if meta.get("cjepa.schema_version") != str(_VERSIONS[found]):
        raise ShardError(
            f"{path}: metadata cjepa.schema_version is {meta.get('cjepa.schema_version')!r}, "
            f"this reader understands {_VERSIONS[found]}"
        )
    return pf, meta


def _check_schema(path: str | Path, actual: pa.Schema, expected: pa.Schema) -> None:
    if actual.names != expected.names:
        missing = [n for n in expected.names if n not in actual.names]
        extra = [n for n in actual.names if n not in expected.names]
        raise ShardError(
            f"{path}: columns differ from the schema (missing {missing}, unexpected {extra}"
            f"{', order differs' if not missing and not extra else ''})"
        )
    for f in expected:
        if not actual.field(f.name).type.equals(f.type):
            raise ShardError(
                f"{path}: column {f.name!r} has type {actual.field(f.name).type}, want {f.type}"
            )


def _loads(path: str | Path, where: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: {where} is not valid JSON ({e})") from e


def _array(path, where: str, buf: pa.Buffer | None, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """Decode a bytes cell to an owned array of ``shape``, checking its length first."""
    if buf is None:
        raise ShardError(f"{path}: {where} is null")
    want = int(np.prod(shape)) * dtype.itemsize
    if buf.size != want or min(shape, default=0) < 0:
        raise ShardError(f"{path}: {where} holds {buf.size} bytes, shape {shape} needs {want}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _episode_from_row(path, cols: dict[str, pa.Array], i: int) -> EpisodeData:
    def scalar(name: str) -> Any:
        return cols[name][i].as_py()

    def buf(name: str) -> pa.Buffer | None:
        v = cols[name][i]
        return v.as_buffer() if v.is_valid else None

    eid = scalar("episode_id")
    for name in ("episode_id", "world", "n_frames", "frame_height", "frame_width", "state_k",
                 "state_f", "info", "meta"):  # fmt: skip
        if scalar(name) is None:
            raise ShardError(f"{path}: episode row {i}: required field {name!r} is null")
    at = f"episode {eid!r} field"
    t, h, w = scalar("n_frames"), scalar("frame_height"), scalar("frame_width")
    frames = _array(path, f"{at} 'frames'", buf("frames"), np.dtype(np.uint8), (t, h, w, 3))
    states = _array(
        path,
        f"{at} 'states'",
        buf("states"),
        np.dtype("<f4"),
        (t, scalar("state_k"), scalar("state_f")),
    )
    actions = None
    if (scalar("action_dim") is None) != (buf("actions") is None):
        raise ShardError(f"{path}: {at} 'action_dim' and 'actions' must be null together")
    if scalar("action_dim") is not None:
        actions = _array(
            path, f"{at} 'actions'", buf("actions"), np.dtype("<f4"), (t, scalar("action_dim"))
        )
    masks = None
    if (scalar("masks_dtype") is None) != (buf("masks") is None):
        raise ShardError(f"{path}: {at} 'masks_dtype' and 'masks' must be null together")
    if scalar("masks_dtype") is not None:
        try:
            mdt = np.dtype(scalar("masks_dtype"))
        except TypeError as e:
            raise ShardError(f"{path}: {at} 'masks_dtype' {scalar('masks_dtype')!r} invalid") from e
        if mdt.kind not in "iu":
            raise ShardError(f"{path}: {at} 'masks_dtype' {mdt} is not an integer dtype")
        masks = _array(path, f"{at} 'masks'", buf("masks"), mdt, (t, h, w))
    questions = None
    if scalar("questions") is not None:
        questions = _loads(path, f"{at} 'questions'", scalar("questions"))
    info = _loads(path, f"{at} 'info'", scalar("info"))
    meta = _loads(path, f"{at} 'meta'", scalar("meta"))
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


def iter_episode_shard(path: str | Path) -> Iterator[EpisodeData]:
    """Yield the shard's episodes in stored order, one row group in memory at a time."""
    pf, _ = _open(path, "episodes")
    _check_schema(path, pf.schema_arrow, EPISODE_SCHEMA)
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


def read_shard_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded file metadata of any shard, without reading its rows.

    Returns:
        ``{"kind", "schema_version", "num_rows", "metadata"}`` plus, for slot shards,
        ``"n_slots", "slot_dim", "encoder_hash", "encoder_config"``.
    """
    pf, meta = _open(path, None)
    kind = meta["cjepa.kind"]
    out: dict[str, Any] = {
        "kind": kind,
        "schema_version": int(meta["cjepa.schema_version"]),
        "num_rows": pf.metadata.num_rows,
        "metadata": _loads(path, "metadata 'cjepa.metadata'", meta.get("cjepa.metadata", "{}")),
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
    extra["encoder_config"] = _dumps(encoder_config)
    meta = _file_metadata("slots", SLOT_SCHEMA_VERSION, metadata, **extra)
    _write_parquet(path, table.schema.with_metadata(meta), [table], _SLOT_ROWS_PER_GROUP)


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
    out["encoder_config"] = _loads(
        path, "metadata 'cjepa.encoder_config'", meta.get("cjepa.encoder_config", "")
    )
    return out


def read_slot_shard(path: str | Path) -> SlotShard:
    """Read and validate a slot shard; rows keep their stored order."""
    pf, meta = _open(path, "slots")
    sm = _slot_meta(path, meta)
    n, d = sm["n_slots"], sm["slot_dim"]
    _check_schema(path, pf.schema_arrow, _slot_schema(n, d))
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
        metadata=_loads(path, "metadata 'cjepa.metadata'", meta.get("cjepa.metadata", "{}")),
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
