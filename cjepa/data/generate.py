"""Generate episode shards from a world, in parallel, idempotently.

Episode indices ``0..episodes-1`` are cut into shards of ``shard_size`` consecutive indices,
``{world}-s{seed}-{first:06d}-{last:06d}.parquet``. A world factory is a pure function of
``(episode_index, seed, **world_kwargs)``, so a shard's bytes depend only on its name and the
world kwargs: re-running keeps shards that exist and validate, rewrites corrupt ones, and the
worker count never changes the output.
"""

from __future__ import annotations

import inspect
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cjepa.data.episode import EpisodeData
from cjepa.data.shards import (
    EPISODE_SCHEMA_VERSION,
    ShardError,
    atomic_write_bytes,
    read_episode_shard,
    read_shard_metadata,
    write_episode_shard,
)
from cjepa.worlds.registry import get_world

log = logging.getLogger(__name__)

WorldFactory = Callable[..., EpisodeData]

MANIFEST = "manifest.json"


def resolve_world(name: str) -> WorldFactory:
    """The episode factory of a registered world (``cjepa.worlds.WORLDS``)."""
    return get_world(name).factory()


def shard_name(world: str, seed: int, first: int, last: int) -> str:
    return f"{world}-s{seed}-{first:06d}-{last:06d}.parquet"


def plan_shards(episodes: int, shard_size: int) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` episode-index ranges of each shard."""
    if episodes < 1 or shard_size < 1:
        raise ValueError(f"episodes and shard_size must be >= 1, got {episodes}, {shard_size}")
    return [(a, min(a + shard_size, episodes) - 1) for a in range(0, episodes, shard_size)]


def _check_kwargs(world: str, factory: WorldFactory, kwargs: dict[str, Any]) -> None:
    # Fail in the parent, before any worker starts, when an option does not apply to a world.
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"world {world!r} takes no option(s) {unknown}; it takes {list(params)}")


def shard_status(path: Path, meta: dict[str, Any], episodes: int) -> tuple[str, str]:
    """Whether an existing shard can be kept: ``("kept", "")`` when it holds ``episodes``
    episodes that all decode and was made with ``meta``; ``("written", "")`` when it does not
    exist; ``("rewritten", reason)`` when it is corrupt. A valid shard made with other metadata
    raises a ValueError (another dataset: never overwritten silently)."""
    if not path.exists():
        return "written", ""
    try:
        stored = read_shard_metadata(path)["metadata"]
        if stored != meta:
            raise ValueError(
                f"{path} was made with {stored}, this run asks for {meta}; "
                "use a fresh --out directory or delete the old shards"
            )
        n = len(read_episode_shard(path))  # full decode: catches corrupt pages too
        if n != episodes:
            raise ShardError(f"{path}: {n} episodes, want {episodes}")
        return "kept", ""
    except ShardError as e:
        return "rewritten", str(e)


def _ensure_shard(
    factory: WorldFactory, path: Path, first: int, last: int, seed: int, meta: dict[str, Any]
) -> tuple[str, int, str]:
    """Keep a valid existing shard or (re)write it. Runs in a worker process.

    Returns:
        (status, n_episodes, reason): status is "kept", "written" or "rewritten".
    """
    status, reason = shard_status(path, meta, last - first + 1)
    if status == "kept":
        return status, last - first + 1, reason

    def episodes() -> Iterator[EpisodeData]:  # lazily: the writer holds one row group at a time
        for i in range(first, last + 1):
            ep = factory(i, seed=seed, **meta["world_kwargs"])
            if ep.world != meta["world"]:
                raise ValueError(
                    f"episode {ep.episode_id!r} is world {ep.world!r}, not {meta['world']!r}"
                )
            yield ep

    write_episode_shard(path, episodes(), metadata=meta)
    return status, last - first + 1, reason


@dataclass
class GenerateReport:
    """What ``generate_shards`` did; file names are relative to the output directory."""

    out: Path
    kept: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def generate_shards(
    world: str,
    episodes: int,
    seed: int,
    out: str | Path,
    *,
    shard_size: int = 50,
    workers: int | None = None,
    world_kwargs: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> GenerateReport:
    """Make (or complete) the episode shards of one world/seed in ``out`` plus ``manifest.json``.

    Args:
        world: a registered world (``cjepa.worlds.WORLDS``).
        episodes: number of episodes, indices ``0..episodes-1``.
        seed: world seed passed to every factory call.
        shard_size: consecutive episode indices per shard.
        workers: processes (default ``os.cpu_count()``); 1 runs in this process.
        world_kwargs: extra keyword options of the world factory (e.g. frames, size, policy).
        progress: tqdm bar over episodes; None shows it only on a TTY.
    """
    out = Path(out)
    world_kwargs = json.loads(json.dumps(world_kwargs or {}))  # JSON-normal, as stored
    factory = resolve_world(world)  # an unknown or data-only world fails before out exists
    out.mkdir(parents=True, exist_ok=True)
    _check_kwargs(world, factory, world_kwargs)
    plan = plan_shards(episodes, shard_size)
    _check_manifest(out, world, seed, world_kwargs)
    _check_no_strays(out, world, seed, episodes, shard_size, plan)
    tasks = {}
    for first, last in plan:
        name = shard_name(world, seed, first, last)
        # Stored in the shard: a rerun checks an existing shard was made the same way.
        meta = dict(world=world, seed=seed, first=first, last=last, world_kwargs=world_kwargs)
        tasks[name] = (factory, out / name, first, last, seed, meta)
    report = GenerateReport(out=out)
    with tqdm(total=episodes, unit="ep", desc=f"{world} s{seed}", disable=no_bar(progress)) as bar:
        counts = _run_tasks(tasks, workers, report, bar)
    for lst in (report.kept, report.written, report.rewritten):
        lst.sort()
    report.orphans = sorted(
        p.name for p in out.glob(f"{world}-s{seed}-*.parquet") if p.name not in tasks
    )
    if report.orphans:
        log.warning(
            "%s holds shards outside this plan (not in the manifest): %s", out, report.orphans
        )
    _write_manifest(out, world, seed, episodes, shard_size, world_kwargs, plan, counts)
    return report


def _check_no_strays(
    out: Path, world: str, seed: int, episodes: int, shard_size: int, plan: list[tuple[int, int]]
) -> None:
    """Refuse shards of this world and seed made with another plan: readers take every shard,
    so another --episodes or --shard-size into the same directory would mix, not replace."""
    planned = {shard_name(world, seed, first, last) for first, last in plan}
    strays = sorted(p.name for p in out.glob(f"{world}-s{seed}-*.parquet") if p.name not in planned)
    if strays:
        raise ValueError(
            f"{out} holds shards of another plan ({', '.join(strays[:3])}"
            f"{', ...' if len(strays) > 3 else ''}: other --episodes or --shard-size than "
            f"{episodes} x {shard_size}); use another --out or delete the old dataset"
        )


def _run_tasks(
    tasks: dict[str, tuple], workers: int | None, report: GenerateReport, bar: tqdm
) -> dict[str, int]:
    """Run ``_ensure_shard`` per task, here (1 worker) or in spawned processes; record each
    result in ``report``. Returns the episode count per shard name."""
    counts: dict[str, int] = {}

    def record(name: str, result: tuple[str, int, str]) -> None:
        status, n, reason = result
        counts[name] = n
        getattr(report, status).append(name)
        if status == "rewritten":
            log.warning("%s was corrupt (%s); rewrote it", name, reason)
        bar.update(n)

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1:
        for name, args in tasks.items():
            record(name, _ensure_shard(*args))
        return counts
    # spawn: forking after pyarrow/torch started threads can deadlock
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = {pool.submit(_ensure_shard, *args): name for name, args in tasks.items()}
        try:
            for fut in as_completed(futures):
                record(futures[fut], fut.result())
        except BaseException:
            pool.shutdown(cancel_futures=True)  # stop queued shards on the first error
            raise
    return counts


def _check_manifest(out: Path, world: str, seed: int, world_kwargs: dict[str, Any]) -> None:
    """Refuse, before any work, to mix datasets in one directory.

    One directory holds one (world, seed, world options) dataset; adding shards made with other
    options, or clobbering another dataset's manifest, would silently mix data.
    """
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is corrupt; it will be rewritten", path)
            return
        if (old.get("world"), old.get("seed")) != (world, seed):
            raise ValueError(
                f"{out} already holds {old.get('world')!r} seed {old.get('seed')!r}; "
                f"use another --out for {world!r} seed {seed}"
            )
        old_kwargs = old.get("args", {}).get("world_kwargs")
        if old_kwargs != world_kwargs:
            raise ValueError(
                f"{out} was made with world options {old_kwargs}, this run asks for "
                f"{world_kwargs}; use another --out or delete the old dataset"
            )


def no_bar(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a ``progress`` flag."""
    return None if progress is None else not progress  # tqdm: disable=None -> off unless a TTY


def _write_manifest(out, world, seed, episodes, shard_size, world_kwargs, plan, counts) -> None:
    """Atomically write manifest.json if its content changed (a no-op rerun writes nothing)."""
    shards = []
    for first, last in plan:
        name = shard_name(world, seed, first, last)
        shards.append({"file": name, "first": first, "last": last, "episodes": counts[name]})
    manifest = {
        "kind": "episodes",
        "schema_version": EPISODE_SCHEMA_VERSION,
        "world": world,
        "seed": seed,
        "args": {"episodes": episodes, "shard_size": shard_size, "world_kwargs": world_kwargs},
        "total_episodes": sum(counts.values()),
        "shards": shards,
    }
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    path = out / MANIFEST
    if not path.exists() or path.read_bytes() != data:
        atomic_write_bytes(path, data)
