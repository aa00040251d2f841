"""Slot extraction: episode shards -> slot shards with a frozen object-centric encoder.

C-JEPA trains on slots extracted once from a frozen encoder, so extraction is a batch
inference job over the episode shards of ``experiments/make_data.py``. It runs on Ray Data
(``extract_ray``) or in one process (``extract_local``, the reference and the ``--no-ray``
path); both write the same files.

Layout::

    DATA/<stem>.parquet                       episode shards (+ DATA/manifest.json)
    OUT/<encoder_hash[:12]>/<stem>.parquet    one slot shard per episode shard, same stem
    OUT/<encoder_hash[:12]>/manifest.json     written atomically once every shard is done

A slot shard holds one row per (episode, frame), episodes in their stored order and frames
0..T-1 (``cjepa.data.shards.write_slot_shard``: encoder hash and config in the file metadata);
its ``cjepa.metadata`` names the source shard, copies the source's generation metadata and
lists its ``[episode_id, T]`` pairs, which is how a re-run recognises a complete, current shard.

Design: one Ray Data row per *source shard*, not per episode. An actor of the pool (a
callable class holding the frozen encoder, ``compute=ray.data.ActorPoolStrategy``) reads its
shard, encodes whole episodes ``batch_size`` at a time (temporal slot propagation lives in the
encoder, so an episode is never split), writes the slot shard atomically and returns a small
status row. Rows per episode, with Ray Data's ``write_parquet``, would need a group-by before
writing (no streaming), would name files itself and are not atomic; per-shard rows give
atomic shards with the source's stem, a stored order inside each shard, resume by skipping
valid shards (checked on the driver before any actor starts), and retry for free: a shard
redone after an actor crash just replaces the file. The cost is that an actor reads and
writes serially with encoding; shards are small (tens of episodes), so GPU idle time is a
small fraction, and overlapping it is a possible next step.

Resources: ``plan_actors`` sizes the pool from ``ray.cluster_resources()``: one GPU per actor
when the cluster has GPUs, else CPU actors with fractional CPUs that leave a reserve for Ray
Data's own tasks (a pool taking every CPU deadlocks a 2-CPU machine silently).

Encoders: a spec string (``"oracle"``, ``"oracle:<world>"`` or a checkpoint path) loaded with
``cjepa.encoders.load_encoder``, or any picklable factory ``factory(device) -> SlotEncoder``
(tests and benchmarks pass their own). Each actor builds its own encoder and checks that its
hash matches the one the driver planned with.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import torch
from tqdm import tqdm

from cjepa.data.episode import EpisodeData
from cjepa.data.generate import MANIFEST
from cjepa.data.shards import (
    SLOT_SCHEMA_VERSION,
    ShardError,
    atomic_write_bytes,
    iter_episode_shard,
    read_shard_metadata,
    read_slot_shard,
    write_slot_shard,
)
from cjepa.data.splits import list_shards
from cjepa.distributed.runtime import cluster_resources, init_ray, quiet_ray_data
from cjepa.encoders.base import SlotEncoder

log = logging.getLogger(__name__)

HASH_PREFIX = 12  # characters of the encoder hash naming the output directory


EncoderFactory = Callable[[str], SlotEncoder]  # factory(device) -> encoder


# --------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class SpecLoader:
    """A picklable factory loading an encoder spec with ``cjepa.encoders.load_encoder``."""

    spec: str

    def __call__(self, device: str = "cpu") -> SlotEncoder:
        try:
            from cjepa.encoders import load_encoder
        except ImportError as e:
            raise RuntimeError(
                f"encoder spec {self.spec!r} needs cjepa.encoders.load_encoder, which cannot be "
                f"imported ({e})"
            ) from e
        return load_encoder(self.spec, device=device)


def encoder_factory(encoder: str | EncoderFactory) -> EncoderFactory:
    """Resolve ``encoder`` (a spec string or a factory) to a factory ``f(device)``.

    Raises:
        ValueError: a string that is neither ``oracle``, ``oracle:<world>`` nor a path.
        FileNotFoundError: a checkpoint path that does not exist.
    """
    if callable(encoder):
        return encoder
    if not isinstance(encoder, str) or not encoder:
        raise ValueError(f"encoder must be a spec string or a factory, got {encoder!r}")
    if encoder == "oracle" or encoder.startswith("oracle:"):
        return SpecLoader(encoder)
    path = Path(encoder).expanduser()
    if path.is_file():
        return SpecLoader(str(path.resolve()))
    if path.suffix in (".pt", ".pth", ".ckpt") or "/" in encoder:
        raise FileNotFoundError(f"encoder checkpoint {encoder!r} does not exist")
    raise ValueError(
        f"unknown encoder spec {encoder!r}: want 'oracle', 'oracle:<world>' or the path of a "
        "checkpoint file"
    )


@dataclass(frozen=True)
class EncoderInfo:
    """What the outputs record about the encoder."""

    hash: str
    config: dict[str, Any]
    n_slots: int
    slot_dim: int

    @classmethod
    def of(cls, encoder: SlotEncoder) -> EncoderInfo:
        name = type(encoder).__name__
        for attr in ("n_slots", "slot_dim", "config", "hash", "encode_episodes"):
            if not hasattr(encoder, attr):
                raise TypeError(f"encoder {name} has no {attr!r}; see SlotEncoder")
        n, d = encoder.n_slots, encoder.slot_dim
        if not all(isinstance(v, int | np.integer) and v >= 1 for v in (n, d)):
            raise ValueError(f"encoder {name}: n_slots, slot_dim = {n!r}, {d!r}, want ints >= 1")
        if not isinstance(encoder.hash, str) or not encoder.hash:
            raise ValueError(f"encoder {name}: hash must be a non-empty string")
        config = json.loads(json.dumps(encoder.config))  # JSON-normal, as stored
        return cls(encoder.hash, config, int(n), int(d))


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ShardTask:
    """One episode shard to (re)extract; paths are absolute."""

    source: str
    target: str
    episodes: int
    frames: int


@dataclass
class ExtractReport:
    """What an extraction did; shard names are file names in ``out``."""

    out: Path
    encoder_hash: str
    kept: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    episodes: int = 0  # in the whole output
    frames: int = 0  # in the whole output
    frames_extracted: int = 0  # by this run
    seconds: float = 0.0  # extraction wall time (no Ray start-up; actor start-up included)
    shard_seconds: dict[str, float] = field(default_factory=dict)  # read + encode + write

    @property
    def frames_per_s(self) -> float:
        return self.frames_extracted / self.seconds if self.seconds > 0 else float("nan")


def source_signature(source: str | Path) -> dict[str, Any]:
    """What a slot shard records about its episode shard, read without decoding frames.

    Returns:
        ``{"source": file name, "source_metadata": the shard's cjepa.metadata (e.g. world,
        seed, world options), "episodes": [[episode_id, T], ...] in stored order}``.
    """
    meta = read_shard_metadata(source)  # checks the kind and schema version
    if meta["kind"] != "episodes":
        raise ShardError(f"{source}: metadata cjepa.kind is {meta['kind']!r}, want episodes")
    try:
        table = pq.read_table(source, columns=["episode_id", "n_frames"])
        ids, lengths = (table.column(c).to_pylist() for c in ("episode_id", "n_frames"))
        episodes = [[str(eid), int(t)] for eid, t in zip(ids, lengths, strict=True)]
    except (pa.ArrowException, OSError, TypeError, ValueError) as e:
        raise ShardError(f"{source}: episode ids/lengths are unreadable ({e})") from e
    return {"source": Path(source).name, "source_metadata": meta["metadata"], "episodes": episodes}


def check_slot_shard(
    target: str | Path, info: EncoderInfo, signature: dict[str, Any]
) -> str | None:
    """Why ``target`` is not a complete slot shard for this encoder and source, or None.

    Args:
        signature: ``source_signature(source)``.
    """
    target = Path(target)
    if not target.exists():
        return "missing"
    try:
        shard = read_slot_shard(target)  # full decode: page checksums catch corruption
    except ShardError as e:
        return str(e)
    if shard.encoder_hash != info.hash:
        return f"encoder_hash {shard.encoder_hash[:16]}..., want {info.hash[:16]}..."
    if shard.slots.shape[1:] != (info.n_slots, info.slot_dim):
        return f"slots (N, D) = {shard.slots.shape[1:]}, want {(info.n_slots, info.slot_dim)}"
    if shard.metadata != signature:
        return (
            f"its recorded source differs from {signature['source']} (name, metadata or episodes)"
        )
    lengths = signature["episodes"]
    ids = [eid for eid, t in lengths for _ in range(t)]
    frames = np.concatenate([np.arange(t) for _, t in lengths]) if lengths else np.zeros(0)
    if shard.episode_ids != ids or not np.array_equal(shard.frames, frames):
        return "rows are not each episode's frames 0..T-1 in order"
    return None


def plan_extraction(
    data: str | Path, out: str | Path, info: EncoderInfo
) -> tuple[Path, list[ShardTask], list[ShardTask], dict[str, str]]:
    """Find the work: every episode shard of ``data`` whose slot shard is not complete.

    Returns:
        ``(out_dir, todo, kept, reasons)``; ``reasons`` maps a redone shard that existed to
        why it is redone.

    Raises:
        FileNotFoundError: ``data`` is not a directory.
        ValueError: ``data`` holds no episode shards.
        ShardError: an unreadable ``*.parquet`` file in ``data``.
    """
    data = Path(data).expanduser().resolve()
    if not data.is_dir():
        raise FileNotFoundError(f"data directory {str(data)!r} does not exist")
    sources = list_shards(data, kind="episodes")
    if not sources:
        raise ValueError(
            f"data directory {str(data)!r} holds no episode shards (*.parquet); make them with "
            "experiments/make_data.py"
        )
    out_dir = Path(out).expanduser().resolve() / info.hash[:HASH_PREFIX]
    todo, kept, reasons = [], [], {}
    for source in sources:
        signature = source_signature(source)
        lengths = signature["episodes"]
        task = ShardTask(
            str(source), str(out_dir / source.name), len(lengths), sum(t for _, t in lengths)
        )
        reason = check_slot_shard(task.target, info, signature)
        if reason is None:
            kept.append(task)
        else:
            todo.append(task)
            if reason != "missing":
                reasons[source.name] = reason
                log.warning("%s will be redone: %s", task.target, reason)
    planned = {source.name for source in sources}
    strays = sorted(p.name for p in list_shards(out_dir) if p.name not in planned)
    if strays:  # readers take every shard of the folder: refuse to mix datasets
        raise ValueError(
            f"{out_dir} holds slot shards with no episode shard in {data} "
            f"({', '.join(strays[:3])}{', ...' if len(strays) > 3 else ''}); the episodes "
            "changed since they were extracted: delete that folder or extract elsewhere"
        )
    return out_dir, todo, kept, reasons


# --------------------------------------------------------------------------- the work


def _chunks(items: Iterable[EpisodeData], size: int) -> Iterator[list[EpisodeData]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def extract_shard(
    encoder: SlotEncoder, info: EncoderInfo, source: str, target: str, batch_size: int
) -> dict[str, Any]:
    """Encode every episode of ``source`` (whole videos) and atomically write ``target``.

    Args:
        batch_size: episodes per ``encode_episodes`` call (episodes are never split).

    Returns:
        a status row ``{"source", "target", "episodes", "frames", "seconds"}``.
    """
    start = time.perf_counter()
    n, d = info.n_slots, info.slot_dim
    signature = source_signature(source)
    ids: list[str] = []
    frames: list[np.ndarray] = []
    slots: list[np.ndarray] = []
    lengths: list[list[str | int]] = []
    for chunk in _chunks(iter_episode_shard(source), batch_size):
        with torch.no_grad():
            encoded = encoder.encode_episodes(chunk)
        if len(encoded) != len(chunk):
            raise ValueError(f"encoder returned {len(encoded)} results for {len(chunk)} episodes")
        for ep, s in zip(chunk, encoded, strict=True):
            s = np.asarray(s, dtype=np.float32)  # (T, N, D)
            if s.shape != (ep.n_frames, n, d):
                raise ValueError(
                    f"{source}: encoder returned slots {s.shape} for episode {ep.episode_id!r}, "
                    f"want (T={ep.n_frames}, N={n}, D={d})"
                )
            ids.extend([ep.episode_id] * ep.n_frames)
            frames.append(np.arange(ep.n_frames, dtype=np.int32))
            slots.append(s)
            lengths.append([ep.episode_id, ep.n_frames])
    if lengths != signature["episodes"]:  # the file changed under us
        raise ShardError(f"{source}: episodes differ from its own id/length columns")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    write_slot_shard(
        target,
        ids,
        np.concatenate(frames) if frames else np.zeros(0, np.int32),
        np.concatenate(slots) if slots else np.zeros((0, n, d), np.float32),  # (R, N, D)
        encoder_hash=info.hash,
        encoder_config=info.config,
        metadata=signature,
    )
    return {
        "source": source,
        "target": target,
        "episodes": len(lengths),
        "frames": len(ids),
        "seconds": time.perf_counter() - start,
    }


class ShardExtractor:
    """Ray Data callable class: one frozen encoder per actor, one batch = some shard paths."""

    def __init__(self, factory: EncoderFactory, encoder_hash: str, batch_size: int) -> None:
        device = "cuda" if ray.get_gpu_ids() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES
        self.encoder = factory(device)
        self.info = EncoderInfo.of(self.encoder)
        if self.info.hash != encoder_hash:
            raise ValueError(
                f"actor on node {ray.get_runtime_context().get_node_id()} loaded encoder "
                f"{self.info.hash[:16]}..., the driver planned with {encoder_hash[:16]}...: "
                "is the checkpoint the same file on every node?"
            )
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [
            extract_shard(self.encoder, self.info, str(s), str(t), self.batch_size)
            for s, t in zip(batch["source"], batch["target"], strict=True)
        ]
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@dataclass(frozen=True)
class ActorPlan:
    """Size and per-actor resources of the extraction actor pool."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float


def plan_actors(
    resources: Mapping[str, float],
    n_shards: int,
    *,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
) -> ActorPlan:
    """Size the actor pool from the cluster's resources.

    Rule: a CPU reserve of ``min(1, CPU / 4)`` stays free for Ray Data's own tasks (an actor
    pool holding every CPU starves them and hangs without an error). GPUs in the cluster ->
    one GPU per actor and one actor per GPU; otherwise ``floor(CPU - reserve)`` actors (at
    least 1). CPUs per actor default to ``min(1, (CPU - reserve) / actors)``, so a 2-CPU
    machine runs 1 actor on 1 CPU, or 2 actors on 0.75 CPU each. Never more actors than
    shards.

    Args:
        resources: ``ray.cluster_resources()``.
        n_shards: shards to extract.
        actors, gpus_per_actor, cpus_per_actor: overrides; None -> the rule above.

    Raises:
        ValueError: overrides the cluster cannot hold (the pool would wait forever).
    """
    cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    if cpus <= 0:
        raise ValueError(f"the Ray cluster reports no CPUs ({dict(resources)})")
    reserve = min(1.0, cpus / 4)
    budget = cpus - reserve
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    if gpus_per_actor < 0 or (gpus_per_actor > 0 and gpus_per_actor > gpus):
        raise ValueError(
            f"gpus_per_actor={gpus_per_actor} but the cluster has {gpus:g} GPU(s); "
            "use 0 for CPU actors"
        )
    if actors is None:
        actors = int(gpus / gpus_per_actor + 1e-9) if gpus_per_actor > 0 else int(budget)
    elif actors < 1:
        raise ValueError(f"actors must be >= 1, got {actors}")
    elif gpus_per_actor > 0 and actors * gpus_per_actor > gpus + 1e-9:
        raise ValueError(
            f"actors={actors} x gpus_per_actor={gpus_per_actor} exceeds the cluster's "
            f"{gpus:g} GPU(s)"
        )
    actors = max(1, min(actors, max(n_shards, 1)))
    if cpus_per_actor is None:
        cpus_per_actor = math.floor(min(1.0, budget / actors) * 100) / 100
        if cpus_per_actor < 0.01:
            raise ValueError(f"{actors} actors cannot share the cluster's {cpus:g} CPUs")
    elif cpus_per_actor <= 0 or actors * cpus_per_actor > budget + 1e-9:
        raise ValueError(
            f"actors={actors} x cpus_per_actor={cpus_per_actor} leaves less than {reserve:g} of "
            f"the cluster's {cpus:g} CPUs for Ray Data's own tasks; the pipeline could deadlock"
        )
    return ActorPlan(actors, cpus_per_actor, gpus_per_actor)


# --------------------------------------------------------------------------- entry points


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 episode, got {batch_size}")


def _report(out_dir: Path, info: EncoderInfo, todo, kept, reasons) -> ExtractReport:
    report = ExtractReport(out=out_dir, encoder_hash=info.hash)
    report.kept = sorted(Path(t.target).name for t in kept)
    for t in todo:
        name = Path(t.target).name
        (report.rewritten if name in reasons else report.written).append(name)
    report.written.sort()
    report.rewritten.sort()
    return report


def _bar(total: int, progress: bool | None, desc: str) -> tqdm:
    disable = None if progress is None else not progress  # tqdm: None -> shown only on a TTY
    return tqdm(total=total, unit="frame", desc=desc, disable=disable)


def _finish(report: ExtractReport, info: EncoderInfo, data: str | Path, tasks) -> ExtractReport:
    """Write the manifest (atomically, only if it changed) and list orphans."""
    tasks = sorted(tasks, key=lambda t: Path(t.target).name)
    report.episodes = sum(t.episodes for t in tasks)
    report.frames = sum(t.frames for t in tasks)
    planned = {Path(t.target).name for t in tasks}
    report.orphans = sorted(p.name for p in list_shards(report.out) if p.name not in planned)
    if report.orphans:
        log.warning("%s holds slot shards with no episode shard: %s", report.out, report.orphans)
    source: dict[str, Any] = {}
    try:  # the dataset's identity, when make_data wrote a manifest
        src = json.loads((Path(data).expanduser().resolve() / MANIFEST).read_text())
        source = {k: src[k] for k in ("world", "seed") if k in src}
    except (OSError, ValueError):
        pass
    manifest = {
        "kind": "slots",
        "schema_version": SLOT_SCHEMA_VERSION,
        "encoder_hash": info.hash,
        "encoder_config": info.config,
        "n_slots": info.n_slots,
        "slot_dim": info.slot_dim,
        "source": source,
        "total_episodes": report.episodes,
        "total_frames": report.frames,
        "shards": [
            {"file": Path(t.target).name, "episodes": t.episodes, "frames": t.frames} for t in tasks
        ],
    }
    payload = (json.dumps(manifest, indent=2) + "\n").encode()
    path = report.out / MANIFEST
    if not path.exists() or path.read_bytes() != payload:  # a no-op re-run writes nothing
        atomic_write_bytes(path, payload)
    return report


def extract_local(
    data: str | Path,
    encoder: str | EncoderFactory,
    out: str | Path,
    *,
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool | None = None,
) -> ExtractReport:
    """Extract slots in this process, shard by shard (the reference for ``extract_ray``).

    Args:
        data: directory of episode shards.
        encoder: spec string or factory ``f(device)``.
        out: output root; shards go to ``out/<encoder_hash[:12]>/``.
        batch_size: whole episodes per encoder call.
        progress: tqdm bar over frames; None -> only on a TTY.
    """
    _check_batch_size(batch_size)
    factory = encoder_factory(encoder)
    data_dir = Path(data).expanduser().resolve()
    if not data_dir.is_dir():  # before loading a possibly large encoder
        raise FileNotFoundError(f"data directory {str(data_dir)!r} does not exist")
    enc = factory(device)
    info = EncoderInfo.of(enc)
    out_dir, todo, kept, reasons = plan_extraction(data_dir, out, info)
    report = _report(out_dir, info, todo, kept, reasons)
    start = time.perf_counter()
    with _bar(sum(t.frames for t in todo), progress, "slots") as bar:
        for t in todo:
            row = extract_shard(enc, info, t.source, t.target, batch_size)
            report.frames_extracted += row["frames"]
            report.shard_seconds[Path(t.target).name] = row["seconds"]
            bar.update(row["frames"])
    report.seconds = time.perf_counter() - start
    return _finish(report, info, data_dir, [*todo, *kept])


def build_dataset(
    tasks: list[ShardTask], factory: EncoderFactory, info: EncoderInfo, plan: ActorPlan,
    batch_size: int,
) -> ray.data.Dataset:  # fmt: skip
    """The Ray Data pipeline: one row per shard -> actor pool -> one status row per shard."""
    items = [{"source": t.source, "target": t.target} for t in tasks]
    # One block per shard so every actor can take work as soon as it is free.
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    return ds.map_batches(
        ShardExtractor,
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor,
        fn_constructor_kwargs={
            "factory": factory,
            "encoder_hash": info.hash,
            "batch_size": batch_size,
        },
    )


def extract_ray(
    data: str | Path,
    encoder: str | EncoderFactory,
    out: str | Path,
    *,
    batch_size: int = 8,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    progress: bool | None = None,
) -> ExtractReport:
    """Extract slots with a Ray Data actor pool (starts/joins Ray if needed, see ``init_ray``).

    Same outputs as ``extract_local``. Under a multi-node cluster ``data`` and ``out`` must be
    on storage every node sees at the same path. The driver loads the encoder once on CPU to
    learn its hash (the output directory) and validates existing shards before any actor starts.
    Ray Data's own progress bars are turned off in this process (a tqdm bar counts frames).

    Args:
        actors, gpus_per_actor, cpus_per_actor: pool size and per-actor resources; None ->
            sized from ``ray.cluster_resources()`` (see ``plan_actors``).
        Others as ``extract_local``.
    """
    _check_batch_size(batch_size)
    factory = encoder_factory(encoder)
    data_dir = Path(data).expanduser().resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {str(data_dir)!r} does not exist")
    info = EncoderInfo.of(factory("cpu"))
    out_dir, todo, kept, reasons = plan_extraction(data_dir, out, info)
    report = _report(out_dir, info, todo, kept, reasons)
    if todo:
        init_ray()
        quiet_ray_data(progress_bars=False)  # our tqdm bar counts frames instead
        plan = plan_actors(
            cluster_resources(),
            len(todo),
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            cpus_per_actor=cpus_per_actor,
        )
        log.info("extracting %d shard(s) with %s", len(todo), plan)
        start = time.perf_counter()
        ds = build_dataset(todo, factory, info, plan, batch_size)
        done = 0
        with _bar(sum(t.frames for t in todo), progress, f"slots x{plan.actors}") as bar:
            try:
                for row in ds.iter_rows():
                    done += 1
                    report.frames_extracted += int(row["frames"])
                    report.shard_seconds[Path(str(row["target"])).name] = float(row["seconds"])
                    bar.update(int(row["frames"]))
            except BaseException:
                log.error(
                    "extraction stopped with %d of %d shard(s) reported done; finished "
                    "shards are kept and the same command resumes",
                    done,
                    len(todo),
                )
                raise
        report.seconds = time.perf_counter() - start
    return _finish(report, info, data_dir, [*todo, *kept])
