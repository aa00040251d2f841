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

Resources: ``plan_actors`` (``cjepa.distributed.extract_plan``, with the encoder factories and
``plan_extraction``; re-exported here) sizes the pool from ``ray.cluster_resources()``: one GPU
per actor when the cluster has GPUs, else CPU actors with fractional CPUs that leave a reserve
for Ray Data's own tasks (a pool taking every CPU deadlocks a 2-CPU machine silently).

Encoders: a spec string (``"oracle"``, ``"oracle:<world>"`` or a checkpoint path) loaded with
``cjepa.encoders.load_encoder``, or any picklable factory ``factory(device) -> SlotEncoder``
(tests and benchmarks pass their own). Each actor builds its own encoder and checks that its
hash matches the one the driver planned with.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
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
    write_slot_shard,
)
from cjepa.data.splits import list_shards
from cjepa.distributed.extract_plan import (
    HASH_PREFIX,
    ActorPlan,
    EncoderFactory,
    EncoderInfo,
    ExtractionFailed,
    ExtractReport,
    ShardTask,
    SpecLoader,
    check_slot_shard,
    encoder_factory,
    failure_of,
    plan_actors,
    plan_extraction,
    source_signature,
)
from cjepa.distributed.runtime import cluster_resources, init_ray, quiet_ray_data
from cjepa.encoders.base import SlotEncoder

__all__ = [
    "HASH_PREFIX",
    "ActorPlan",
    "EncoderFactory",
    "EncoderInfo",
    "ExtractReport",
    "ExtractionFailed",
    "ShardExtractor",
    "ShardTask",
    "SpecLoader",
    "build_dataset",
    "check_slot_shard",
    "encode_shard",
    "encoder_factory",
    "extract_local",
    "extract_ray",
    "extract_shard",
    "plan_actors",
    "plan_extraction",
    "run_pool",
    "source_signature",
]

log = logging.getLogger(__name__)
ACTOR_START_S = 600  # the longest wait for the actor pool (encoder loads, runtime env setup)


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
    ids, frames, slots, lengths = encode_shard(encoder, info, source, batch_size)
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


def encode_shard(
    encoder: SlotEncoder, info: EncoderInfo, source: str, batch_size: int
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[list[str | int]]]:
    """Every episode of ``source`` encoded, ``batch_size`` whole episodes per call: the slot
    rows' episode ids, per-episode frame indices (T,) and slots (T, N, D), and the
    ``[episode_id, T]`` pairs in stored order."""
    n, d = info.n_slots, info.slot_dim
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
    return ids, frames, slots, lengths


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
        out = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        node = ray.get_runtime_context().get_node_id()  # which node extracted these shards
        out["node"] = np.array([node] * len(rows))
        return out


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
            bar.update(report.record(extract_shard(enc, info, t.source, t.target, batch_size)))
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
    ds = ds.map_batches(
        ShardExtractor,
        batch_size=1,
        batch_format="numpy",
        # One shard in flight per actor, or Ray Data queues them on the driver node's actors.
        compute=ray.data.ActorPoolStrategy(size=plan.actors, max_tasks_in_flight_per_actor=1),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor,
        fn_constructor_kwargs=dict(factory=factory, encoder_hash=info.hash, batch_size=batch_size),
    )
    # Every actor is up before the first shard is handed out (so each node gets its share);
    # a pool that cannot start within ACTOR_START_S fails with Ray Data's message.
    ds.context.wait_for_min_actors_s = ACTOR_START_S
    return ds


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
        run_pool(build_dataset(todo, factory, info, plan, batch_size), todo, plan, report, progress)
        report.seconds = time.perf_counter() - start
    return _finish(report, info, data_dir, [*todo, *kept])


def run_pool(
    ds: ray.data.Dataset,
    todo: list[ShardTask],
    plan: ActorPlan,
    report: ExtractReport,
    progress: bool | None,
) -> None:
    """Drain the pipeline ``ds``, recording each shard's status row in ``report``; a failure
    raises :class:`ExtractionFailed` saying how many shards were done (kept: a re-run resumes)."""
    done, failure = 0, None
    with _bar(sum(t.frames for t in todo), progress, f"slots x{plan.actors}") as bar:
        try:
            for row in ds.iter_rows():
                done += 1
                bar.update(report.record(row))
        except Exception as err:  # Ray's error holds the actor pool: raise a plain one instead
            log.error("%s", str(err))  # not err itself: a log handler may keep the record
            failure = failure_of(err, done, len(todo))
    if failure is not None:
        del ds  # the raised error's frames must not hold the pipeline either
        gc.collect()  # the pool's actors (and their CPUs) go now, not at the next collection
        raise failure
