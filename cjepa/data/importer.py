"""Import a local copy of a published dataset into episode shards (``make_data.py --from``).

    import_published("clevrer", "/data/clevrer", "data/clevrer", splits=["train"])
    import_published("dinowm_pusht", "/data/pusht_noise", "data/dinowm", splits=["train", "val"])

Layouts (:data:`LAYOUTS`) and the platform world their shards are:

- ``clevrer`` (``cjepa.data.clevrer``: ``video_{split}/``, ``annotation_{split}/``,
  ``questions/``) -> world ``clevrer`` (data only, ``cjepa.worlds.clevrer``). Frames are resized
  to ``size`` (default 64) and objects padded to ``n_objects`` (default 6) so episodes stack;
  ``info["collisions"]`` becomes the platform's ``[frame, i, j]`` with i, j state columns (the
  release's records stay in ``info["clevrer_collisions"]``).
- ``dinowm_pusht`` (``cjepa.data.dinowm``: ``{split}/states.pth`` etc.) -> world ``pusht``:
  the same 7 state columns and relative actions in pixels as cjepa's Push-T, so extraction,
  training and planning read the shards as their own; ``meta["source"]`` keeps the origin.

The output has ``generate_shards``' layout: shards of ``shard_size`` consecutive episodes of one
split, ``{layout}-{split}-{first:06d}-{last:06d}.parquet``, and ``manifest.json`` naming the
world, the layout, the absolute source path, the splits and options. Re-running keeps every
shard that exists, validates and was made from the same source; rewrites corrupt ones; and
refuses a directory that holds another dataset. Before anything is written, each split's files
are checked without decoding (every video has its annotation; every array has its shape and
every episode its obses file), so a bad layout fails with one LayoutError naming the file and
leaves nothing behind. A file found malformed later stops the import with the shards completed
so far (each whole: writes are atomic) and no manifest; the same command continues it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cjepa.data.clevrer import count_clevrer, load_clevrer
from cjepa.data.dinowm import count_dinowm_pusht, load_dinowm_pusht
from cjepa.data.episode import EpisodeData
from cjepa.data.generate import MANIFEST, GenerateReport, no_bar, shard_status
from cjepa.data.layout import LayoutError
from cjepa.data.shards import EPISODE_SCHEMA_VERSION, atomic_write_bytes, write_episode_shard

log = logging.getLogger(__name__)

#: ``load(root, split, start, count, options)`` -> the episodes ``start .. start + count - 1``.
Loader = Callable[[Path, str, int, int, Mapping[str, Any]], Iterator[EpisodeData]]


@dataclass(frozen=True)
class Layout:
    """A published layout: the platform world its episodes become, how to count and check a
    split's files (``count(root, split) -> N``, raising LayoutError), how to read them, and its
    options with their defaults."""

    name: str
    world: str
    count: Callable[[Path, str], int]
    load: Loader
    options: Mapping[str, Any]
    default_split: str = "train"


def _clevrer_collisions(ep: EpisodeData) -> EpisodeData:
    """The platform's collide conventions: collisions as ``[frame, i, j]`` state columns."""
    column = {obj["object_id"]: k for k, obj in enumerate(ep.info.get("objects") or [])}
    collisions = []
    for c in ep.info.get("collisions") or []:
        ids = c["object_ids"]
        if len(ids) != 2 or not all(o in column for o in ids):
            where = ep.meta.get("annotation_path")
            raise LayoutError(f"{where}: collision at frame {c['frame_id']}: object_ids {ids}")
        i, j = sorted(column[o] for o in ids)
        collisions.append([c["frame_id"], i, j])
    info = {**ep.info, "collisions": collisions, "clevrer_collisions": ep.info.get("collisions")}
    return dataclasses.replace(ep, info=info)


def _load_clevrer(root, split, start, count, options) -> Iterator[EpisodeData]:
    episodes = load_clevrer(root, split=split, start=start, limit=count, **options)
    return (_clevrer_collisions(ep) for ep in episodes)


def _load_dinowm(root, split, start, count, options) -> Iterator[EpisodeData]:
    episodes = load_dinowm_pusht(root, split=split, start=start, limit=count, **options)
    return (dataclasses.replace(ep, world="pusht") for ep in episodes)


def _count_dinowm(root: Path, split: str) -> int:
    if (root / "states.pth").is_file():
        raise LayoutError(
            f"{root} is a DINO-WM split folder; give the folder above it (e.g. pusht_noise/) "
            f"and --split {root.name}"
        )
    return count_dinowm_pusht(root, split=split)


LAYOUTS: dict[str, Layout] = {
    "clevrer": Layout(
        "clevrer",
        "clevrer",
        lambda root, split: count_clevrer(root, split=split),
        _load_clevrer,
        {"size": 64, "n_objects": 6},
    ),
    "dinowm_pusht": Layout("dinowm_pusht", "pusht", _count_dinowm, _load_dinowm, {}),
}


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown published layout {name!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def shard_name(layout: str, split: str, first: int, last: int) -> str:
    return f"{layout}-{split}-{first:06d}-{last:06d}.parquet"


@dataclass(frozen=True)
class _Shard:
    split: str
    first: int
    last: int
    name: str
    meta: dict[str, Any]  # stored in the shard: a rerun checks it was made from the same source

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def _options(layout: Layout, options: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(options or {})
    unknown = sorted(set(given) - set(layout.options))
    if unknown:
        raise ValueError(
            f"layout {layout.name!r} takes no option(s) {unknown}; "
            f"it takes {sorted(layout.options)}"
        )
    return json.loads(json.dumps({**layout.options, **given}))  # JSON-normal, as stored


def _plan(layout, root, splits, shard_size, limit, options) -> list[_Shard]:
    """Every shard of every split, after checking each split's files (``Layout.count``)."""
    if shard_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"shard_size and limit must be >= 1, got {shard_size}, {limit}")
    if len(set(splits)) != len(splits):
        raise ValueError(f"splits {splits} repeat a name")
    plan = []
    for split in splits:
        n = layout.count(root, split)
        n = n if limit is None else min(n, limit)
        for first in range(0, n, shard_size):
            last = min(first + shard_size, n) - 1
            meta = {"layout": layout.name, "path": str(root), "split": split}
            meta.update(first=first, last=last, options=options)
            plan.append(
                _Shard(split, first, last, shard_name(layout.name, split, first, last), meta)
            )
    return plan


def _take(episodes: Iterator[EpisodeData], shard: _Shard, world: str) -> Iterator[EpisodeData]:
    """Exactly ``shard.size`` episodes of ``world`` from ``episodes``; running short raises
    (inside the shard's write, so no short shard is left behind)."""
    for k in range(shard.size):
        ep = next(episodes, None)
        if ep is None:
            raise LayoutError(
                f"{shard.meta['path']}: split {shard.split!r} ended after episode "
                f"{shard.first + k - 1}; it was counted to hold {shard.last + 1}"
            )
        if ep.world != world:
            raise ValueError(f"episode {ep.episode_id!r} is world {ep.world!r}, not {world!r}")
        yield ep


def _runs(todo: list[_Shard]) -> Iterator[list[_Shard]]:
    """Shards to write grouped into runs of consecutive episodes of one split, so that each
    run opens the source once."""
    key = lambda s: s.split  # noqa: E731
    for _, group in groupby(todo, key):
        run: list[_Shard] = []
        for shard in group:
            if run and shard.first != run[-1].last + 1:
                yield run
                run = []
            run.append(shard)
        if run:
            yield run


def import_published(
    layout: str,
    root: str | Path,
    out: str | Path,
    *,
    splits: list[str] | None = None,
    shard_size: int = 50,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> GenerateReport:
    """Import (or complete the import of) ``splits`` of a published layout into ``out``.

    Args:
        layout: a :data:`LAYOUTS` name (``clevrer``, ``dinowm_pusht``).
        root: the local copy (CLEVRER's root; DINO-WM's folder holding ``train/``, ``val/``).
        splits: split names (default: the layout's ``train``); each is planned on its own.
        shard_size: consecutive episodes per shard.
        limit: import only the first ``limit`` episodes of each split.
        options: the layout's options (``Layout.options``), e.g. ``{"size": 96}`` for CLEVRER.
        progress: tqdm bar over episodes; None shows it only on a TTY.

    Returns:
        what was kept, written and rewritten (file names relative to ``out``).
    """
    spec = get_layout(layout)
    root, out = Path(root).expanduser().resolve(), Path(out)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a directory (the local copy of {layout})")
    options = _options(spec, options)
    splits = list(splits or [spec.default_split])
    plan = _plan(spec, root, splits, shard_size, limit, options)
    if not plan:
        raise LayoutError(f"{root}: splits {splits} hold no episodes")
    source = {"layout": layout, "path": str(root), "splits": splits, "options": options}
    _check_out(out, spec.world, source, {s.name for s in plan})
    out.mkdir(parents=True, exist_ok=True)
    report = GenerateReport(out=out)
    todo = []
    for shard in plan:
        status, reason = shard_status(out / shard.name, shard.meta, shard.size)
        getattr(report, status).append(shard.name)
        if status == "rewritten":
            log.warning("%s was corrupt (%s); rewriting it", shard.name, reason)
        if status != "kept":
            todo.append(shard)
    total = sum(s.size for s in plan)
    bar = tqdm(total=total, unit="ep", desc=f"import {layout}", disable=no_bar(progress))
    with bar:
        bar.update(total - sum(s.size for s in todo))
        for run in _runs(todo):
            episodes = spec.load(root, run[0].split, run[0].first, run[-1].last - run[0].first + 1,
                                 options)  # fmt: skip
            for shard in run:
                write_episode_shard(out / shard.name, _take(episodes, shard, spec.world),
                                    metadata=shard.meta)  # fmt: skip
                bar.update(shard.size)
    _write_manifest(out, spec.world, source, shard_size, limit, plan)
    return report


def _check_out(out: Path, world: str, source: dict[str, Any], planned: set[str]) -> None:
    """Refuse, before any work, a directory holding another dataset: another manifest, or
    shards this import would not write (readers take every shard of a directory)."""
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = None
            log.warning("%s is corrupt; it will be rewritten", path)
        if old is not None and (old.get("world"), old.get("source")) != (world, source):
            raise ValueError(
                f"{out} already holds world {old.get('world')!r} from {old.get('source')}; "
                f"use another --out for {source['layout']} from {source['path']}"
            )
    strays = sorted(p.name for p in out.glob("*.parquet") if p.name not in planned)
    if strays:
        more = ", ..." if len(strays) > 3 else ""
        raise ValueError(
            f"{out} holds shards this import does not make ({', '.join(strays[:3])}{more}: "
            "another dataset, or another --limit / --shard-size); use another --out"
        )


def _write_manifest(out, world, source, shard_size, limit, plan: list[_Shard]) -> None:
    """Atomically write manifest.json if its content changed (a no-op rerun writes nothing)."""
    shards = [
        {"file": s.name, "split": s.split, "first": s.first, "last": s.last, "episodes": s.size}
        for s in plan
    ]
    manifest = {
        "kind": "episodes",
        "schema_version": EPISODE_SCHEMA_VERSION,
        "world": world,
        "seed": None,
        "source": source,
        "args": {"shard_size": shard_size, "limit": limit},
        "total_episodes": sum(s.size for s in plan),
        "shards": shards,
    }
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    path = out / MANIFEST
    if not path.exists() or path.read_bytes() != data:
        atomic_write_bytes(path, data)
