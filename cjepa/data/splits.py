"""Train/val splits as a pure function of the episode id, and shard listing.

The split never depends on which shard, machine or run an episode came from, so every loader
(and every worker of a distributed job) agrees on it without coordination.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from cjepa.data.shards import read_shard_metadata

SPLITS = ("train", "val")
SHARD_KINDS = ("episodes", "slots")


def split_unit(episode_id: str) -> float:
    """A stable pseudo-uniform number in [0, 1) for ``episode_id`` (first 8 bytes of SHA-256).

    hashlib rather than ``hash()``: Python salts string hashes per process.
    """
    digest = hashlib.sha256(episode_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(episode_id: str, val_fraction: float = 0.1) -> str:
    """``"val"`` for about ``val_fraction`` of ids, else ``"train"``; stable across runs."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction!r}")
    return "val" if split_unit(episode_id) < val_fraction else "train"


def split_ids(episode_ids: Iterable[str], val_fraction: float = 0.1) -> dict[str, list[str]]:
    """Partition ids into ``{"train": [...], "val": [...]}``, keeping their order."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for eid in episode_ids:
        out[split_of(eid, val_fraction)].append(eid)
    return out


def list_shards(directory: str | Path, kind: str | None = None) -> list[Path]:
    """The ``*.parquet`` shards of ``directory`` sorted by name, temp files excluded.

    Writers' temp files are hidden (leading ".") and end in ".tmp", so an interrupted write is
    never listed. With ``kind`` (``"episodes"`` or ``"slots"``) each footer is read and only
    shards of that kind are kept; an unreadable file then raises ``ShardError``.
    """
    if kind is not None and kind not in SHARD_KINDS:
        raise ValueError(f"kind must be one of {SHARD_KINDS} or None, got {kind!r}")
    paths = sorted(
        p for p in Path(directory).glob("*.parquet") if p.is_file() and not p.name.startswith(".")
    )
    if kind is None:
        return paths
    return [p for p in paths if read_shard_metadata(p)["kind"] == kind]
