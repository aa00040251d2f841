"""What episode and slot shards share: versions, the error readers raise, atomic writes, fixed
Parquet writer options, and the validating readers of file metadata, schemas and cells.

``cjepa.data.shards`` documents the layouts and re-exports the public names.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EPISODE_SCHEMA_VERSION = 1
SLOT_SCHEMA_VERSION = 1
VERSIONS = {"episodes": EPISODE_SCHEMA_VERSION, "slots": SLOT_SCHEMA_VERSION}
TEMP_SUFFIX = ".tmp"  # temp files are ".<final name>.<random>.tmp": hidden and not *.parquet

# Fixed writer options: determinism needs fixed settings; zstd-3 is fast and squeezes the
# mostly-flat rendered frames well. Rows are written in groups so readers can stream.
# Page CRCs let the reader tell a flipped byte from data (silent corruption -> ShardError).
WRITE_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": False,
    "write_page_checksum": True,
}


class ShardError(ValueError):
    """A shard file is unreadable or does not match its schema."""


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


def write_parquet(
    path: str | Path, schema: pa.Schema, tables: Iterable[pa.Table], rows_per_group: int
) -> None:
    """Atomically write ``tables`` (each ``schema``) as consecutive row groups of one file.

    Streaming table by table bounds a writer's memory to one row group, not a whole shard.
    """

    def write(f: BinaryIO) -> None:
        with pq.ParquetWriter(f, schema, **WRITE_OPTIONS) as writer:
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


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def file_metadata(kind: str, version: int, metadata: dict | None, **extra: str) -> dict:
    meta = {"cjepa.kind": kind, "cjepa.schema_version": str(version)}
    meta["cjepa.metadata"] = dumps(metadata if metadata is not None else {})
    meta.update({f"cjepa.{k}": v for k, v in extra.items()})
    return meta


def parquet_file(path: str | Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as e:  # ValueError: bad UTF-8 in footer
        raise ShardError(f"{path}: not a readable Parquet shard ({e})") from e


def open_shard(path: str | Path, kind: str | None) -> tuple[pq.ParquetFile, dict[str, str]]:
    """Open a shard, check its kind (any known kind if None) and schema version.

    Returns:
        the open file and its ``cjepa.*`` key-value metadata as strings.
    """
    pf = parquet_file(path)
    raw = pf.schema_arrow.metadata or {}
    meta = {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in raw.items()
        if k.startswith(b"cjepa.")
    }
    found = meta.get("cjepa.kind")
    if found not in VERSIONS or kind not in (None, found):
        want = kind or " or ".join(VERSIONS)
        raise ShardError(f"{path}: metadata cjepa.kind is {found!r}, want {want}")
    if meta.get("cjepa.schema_version") != str(VERSIONS[found]):
        raise ShardError(
            f"{path}: metadata cjepa.schema_version is {meta.get('cjepa.schema_version')!r}, "
            f"this reader understands {VERSIONS[found]}"
        )
    return pf, meta


def check_schema(path: str | Path, actual: pa.Schema, expected: pa.Schema) -> None:
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


def loads_json(path: str | Path, where: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: {where} is not valid JSON ({e})") from e


def read_array(
    path, where: str, buf: pa.Buffer | None, dtype: np.dtype, shape: tuple
) -> np.ndarray:
    """Decode a bytes cell to an owned array of ``shape``, checking its length first."""
    if buf is None:
        raise ShardError(f"{path}: {where} is null")
    want = int(np.prod(shape)) * dtype.itemsize
    if buf.size != want or min(shape, default=0) < 0:
        raise ShardError(f"{path}: {where} holds {buf.size} bytes, shape {shape} needs {want}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
