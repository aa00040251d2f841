"""Slot extraction, what to do: the encoder (spec or factory) and what the outputs record about
it, which episode shards need (re)extracting, and the size of the Ray Data actor pool.

``cjepa.distributed.extract`` does the work and re-exports every public name here; the layout
and design are documented there.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cjepa.data.shards import ShardError, read_shard_metadata, read_slot_shard
from cjepa.data.splits import list_shards
from cjepa.encoders.base import SlotEncoder

log = logging.getLogger("cjepa.distributed.extract")  # one logger for the whole extraction

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
    shard_nodes: dict[str, str] = field(default_factory=dict)  # Ray node id (extract_ray only)

    def record(self, row: Mapping[str, Any]) -> int:
        """Count one shard's status row (``extract_shard``'s; ``node``: the Ray node of the
        actor that extracted it); returns its frames."""
        name = Path(str(row["target"])).name
        self.frames_extracted += int(row["frames"])
        self.shard_seconds[name] = float(row["seconds"])
        if "node" in row:
            self.shard_nodes[name] = str(row["node"])
        return int(row["frames"])

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


# --------------------------------------------------------------------------- actor pool


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
    actors = _actor_count(actors, gpus_per_actor, gpus, budget, n_shards)
    cpus_per_actor = _cpus_per_actor(cpus_per_actor, actors, cpus, budget, reserve)
    return ActorPlan(actors, cpus_per_actor, gpus_per_actor)


def _actor_count(
    actors: int | None, gpus_per_actor: float, gpus: float, budget: float, n_shards: int
) -> int:
    """The pool size (``plan_actors``'s rule, or the checked override), at most one per shard."""
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
    return max(1, min(actors, max(n_shards, 1)))


def _cpus_per_actor(
    cpus_per_actor: float | None, actors: int, cpus: float, budget: float, reserve: float
) -> float:
    """CPUs per actor (``plan_actors``'s rule, or the checked override)."""
    if cpus_per_actor is None:
        cpus_per_actor = math.floor(min(1.0, budget / actors) * 100) / 100
        if cpus_per_actor < 0.01:
            raise ValueError(f"{actors} actors cannot share the cluster's {cpus:g} CPUs")
    elif cpus_per_actor <= 0 or actors * cpus_per_actor > budget + 1e-9:
        raise ValueError(
            f"actors={actors} x cpus_per_actor={cpus_per_actor} leaves less than {reserve:g} of "
            f"the cluster's {cpus:g} CPUs for Ray Data's own tasks; the pipeline could deadlock"
        )
    return cpus_per_actor


class ExtractionFailed(RuntimeError):
    """Ray Data slot extraction stopped on an error; finished shards are kept and the same
    command resumes. Raised instead of Ray's own error, whose traceback holds the actor pool's
    handles: its actors (and their CPUs) stayed reserved as long as anything kept that error.
    ``cjepa.cli.run`` prints its one line and exits 1."""

    exit_code = 1


#: The last line of a Python traceback, ``module.SomeError: message``.
_ERROR_LINE = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Interrupt|Exit): .+")


def failure_of(err: BaseException, done: int, total: int) -> ExtractionFailed:
    """:class:`ExtractionFailed` naming the first error in Ray's ``err`` (a remote traceback as
    text: the encoder's own error comes first, Ray Data's wrappers after it)."""
    lines = (line.strip() for line in str(err).splitlines())
    cause = next((line for line in lines if _ERROR_LINE.match(line)), None)
    cause = cause or f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
    return ExtractionFailed(
        f"slot extraction stopped after {done} of {total} shard(s): {cause}; finished shards "
        "are kept and the same command resumes"
    )
