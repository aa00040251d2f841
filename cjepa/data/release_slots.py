"""Released pre-extracted slots (the official C-JEPA slot pickle) as cjepa slot shards.

The official extraction (galilai-group/cjepa ``extract_videosaur.py``) pickles
``{split: {video name: float32 array (T, N, D)}}`` (splits ``train``, ``val``, optionally
``test``; names such as ``video_10000.mp4``). ``import_slot_pickle`` writes, per split::

    OUT/<split>/slots-<k:05d>.parquet   up to ``shard_size`` videos each (episode id = name)
    OUT/<split>/manifest.json           written last, as slot extraction writes its own

Every split's shards carry one ``encoder_hash`` (the pickle's SHA-256; the encoder itself is
unknown) and ``encoder_config = {"kind": "release", ...}``, so splits of one file can be mixed
and slots of another file cannot. Shard writes are atomic; a re-run keeps shards whose recorded
videos match the plan and rewrites the others.

Reading a pickle can run code, so :func:`read_slot_pickle` refuses unless ``trust_pickle`` is
set, and even then reads it with ``PlainUnpickler`` (containers, numbers, strings and numpy
arrays only).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cjepa.data.layout import LayoutError
from cjepa.data.plain_pickle import load_plain
from cjepa.data.shard_io import ShardError, atomic_write_bytes
from cjepa.data.shards import read_shard_metadata, write_slot_shard
from cjepa.data.splits import list_shards

#: What a refused pickle prints (the CLI flag that opts in is ``--trust-pickle``).
REFUSAL = (
    "is a pickle, and loading a pickle can run arbitrary code; pass --trust-pickle only if "
    "you trust where the file came from (it is then read by a restricted unpickler that "
    "rebuilds numpy arrays and plain containers only)"
)

ReleaseSlots = dict[str, dict[str, np.ndarray]]


def read_slot_pickle(path: str | Path, *, trust_pickle: bool = False) -> ReleaseSlots:
    """``{split: {video name: (T, N, D) float32}}`` from an official slot pickle, validated:
    every array 3-D, floating, finite, with one (N, D) across the file.

    Raises:
        ValueError: ``trust_pickle`` is False (nothing was read), or a LayoutError naming the
            file and the split / video / global at fault.
    """
    path = Path(path)
    if not trust_pickle:
        raise ValueError(f"refusing to read {path}: it {REFUSAL}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: slot pickle not found")
    try:
        raw = load_plain(path)
    except pickle.UnpicklingError as err:
        if str(err).startswith("refusing to load global"):
            raise LayoutError(f"{path}: {err} (only numpy arrays and plain containers)") from err
        raise LayoutError(f"{path}: not a readable pickle ({err})") from err
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
        raise LayoutError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from err
    return check_slots(raw, str(path))


def check_slots(raw: Any, where: str) -> ReleaseSlots:
    """Validate the ``{split: {name: (T, N, D)}}`` layout; arrays come back float32."""
    if not isinstance(raw, dict) or not raw:
        raise LayoutError(f"{where}: want a non-empty dict {{split: {{video: array}}}}")
    out: ReleaseSlots = {}
    nd: tuple[tuple[int, int], str] | None = None
    for split, videos in raw.items():
        if not isinstance(split, str) or not split.isidentifier():
            raise LayoutError(f"{where}: split name {split!r} is not a plain name")
        if not isinstance(videos, dict) or not videos:
            raise LayoutError(f"{where}: split {split!r} is not a non-empty {{video: array}}")
        out[split] = {}
        for name, arr in videos.items():
            at = f"{where}: split {split!r} video {name!r}"
            if not isinstance(name, str | int) or not str(name) or str(name) in out[split]:
                raise LayoutError(f"{at}: the name must be a string, unique in its split")
            if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f" or arr.ndim != 3:
                got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr)
                raise LayoutError(f"{at}: want a float array (T, N, D), got {got}")
            if not np.isfinite(arr).all():
                raise LayoutError(f"{at}: non-finite slot values")
            nd = nd or (arr.shape[1:], f"split {split!r} video {name!r}")
            if arr.shape[1:] != nd[0]:
                raise LayoutError(f"{at}: (N, D) = {arr.shape[1:]}, but {nd[1]} has {nd[0]}")
            out[split][str(name)] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


@dataclass
class SlotImportReport:
    """What ``import_slot_pickle`` did, per split: file names relative to ``out/<split>``."""

    out: Path
    encoder_hash: str
    videos: dict[str, int] = field(default_factory=dict)
    written: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)


def _plan(videos: dict[str, np.ndarray], shard_size: int) -> list[list[str]]:
    names = list(videos)  # the pickle's order, as the official loaders iterate it
    return [names[i : i + shard_size] for i in range(0, len(names), shard_size)]


def _current(path: Path, meta: dict[str, Any]) -> bool:
    """Whether ``path`` is a complete shard of this plan (same source, split and videos)."""
    try:
        return path.is_file() and read_shard_metadata(path)["metadata"] == meta
    except (ShardError, OSError, ValueError):
        return False


def import_slot_pickle(
    slots: ReleaseSlots,
    out: str | Path,
    *,
    source: str,
    sha256: str,
    shard_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> SlotImportReport:
    """Write ``slots`` (from :func:`read_slot_pickle`) as slot shards under ``out/<split>/``.

    Args:
        source: the pickle's path or name, recorded in every shard and manifest.
        sha256: the pickle's digest: the shards' ``encoder_hash``.
        shard_size: videos per shard.
        progress: called with one line per shard written or kept.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    report = SlotImportReport(Path(out), sha256)
    config = {"kind": "release", "format": "cjepa-official-slots-pkl", "source": Path(source).name}
    for split, videos in slots.items():
        d = Path(out) / split
        plan = _plan(videos, shard_size)
        names = [f"slots-{k:05d}.parquet" for k in range(len(plan))]
        stray = sorted(p.name for p in list_shards(d) if p.name not in names) if d.is_dir() else []
        if stray:
            raise ValueError(f"{d} holds shards this import would not write: {stray[:5]}")
        d.mkdir(parents=True, exist_ok=True)
        report.videos[split], report.written[split], report.kept[split] = len(videos), [], []
        for k, (fname, chunk) in enumerate(zip(names, plan, strict=True)):
            meta = {"source": str(source), "sha256": sha256, "split": split}
            meta["episodes"] = [[n, int(videos[n].shape[0])] for n in chunk]
            done = _current(d / fname, meta)
            if not done:
                _write_shard(d / fname, {n: videos[n] for n in chunk}, sha256, config, meta)
            (report.kept if done else report.written)[split].append(fname)
            if progress is not None:
                verb = "kept" if done else "wrote"
                progress(f"[{split}] {verb} {fname} ({k + 1}/{len(plan)}, {len(chunk)} videos)")
        _write_manifest(d, split, videos, names, plan, sha256, config)
    return report


def _write_shard(path: Path, videos: dict[str, np.ndarray], sha256: str, config, meta) -> None:
    ids = [n for n, a in videos.items() for _ in range(a.shape[0])]
    frames = np.concatenate([np.arange(a.shape[0], dtype=np.int32) for a in videos.values()])
    rows = np.concatenate(list(videos.values()))  # (R, N, D)
    write_slot_shard(
        path, ids, frames, rows, encoder_hash=sha256, encoder_config=config, metadata=meta
    )


def _write_manifest(d: Path, split, videos, names, plan, sha256: str, config) -> None:
    n, dim = next(iter(videos.values())).shape[1:]
    manifest = {
        "kind": "slots",
        "encoder_hash": sha256,
        "encoder_config": config,
        "n_slots": int(n),
        "slot_dim": int(dim),
        "split": split,
        "total_episodes": len(videos),
        "total_frames": int(sum(a.shape[0] for a in videos.values())),
        "shards": [{"file": f, "episodes": len(c)} for f, c in zip(names, plan, strict=True)],
    }
    atomic_write_bytes(d / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
