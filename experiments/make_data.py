"""Generate episode shards for a world (collide or Push-T) into a directory.

    python experiments/make_data.py --world collide --episodes 1000 --seed 0 --out data/collide
    python experiments/make_data.py --world collide --episodes 8 --seed 0 --out /tmp/c \\
        --frames 32 --size 64 --workers 2 --shard-size 4
    python experiments/make_data.py --world pusht --episodes 200 --seed 0 --out data/pusht
    python experiments/make_data.py --world pusht --episodes 200 --seed 0 --out data/rnd \\
        --policy random

Push-T's default policy is ``scripted`` (the expert: env success, coverage > 0.95, in 31 of 50
200-step episodes vs 0 of 50 for ``random``; ``pusht.policy_stats``), because the planning
protocol's goals are states 25 steps later on these trajectories.

Re-running the same command is cheap: shards that exist and validate are kept, corrupt ones are
rewritten, and missing ones are made. Output does not depend on --workers.

--from imports a local copy of a published dataset instead (``cjepa.data.importer``; nothing is
downloaded; docs/data.md says where to get them), into shards of world clevrer or pusht:

    python experiments/make_data.py --from clevrer ~/data/clevrer --split train --out data/clevrer
    python experiments/make_data.py --from dinowm_pusht ~/data/pusht_noise --split train val \
        --out data/dinowm_pusht
    python experiments/make_data.py --from clevrer ~/data/clevrer --limit 100 --size 96 \
        --out data/clevrer100
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from cjepa import cli
from cjepa.data.generate import generate_shards
from cjepa.data.importer import LAYOUTS, import_published
from cjepa.worlds import WorldSpec, get_world, world_names

WORLD_ONLY = ("episodes", "seed", "workers", "frames", "policy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--world", choices=world_names(), help="simulate a world")
    source.add_argument(
        "--from",
        dest="layout",
        nargs=2,
        metavar=("LAYOUT", "PATH"),
        help=f"import a published dataset: LAYOUT in {sorted(LAYOUTS)}",
    )
    p.add_argument("--episodes", type=int, help="(--world; required)")
    p.add_argument("--seed", type=int, help="(--world; required)")
    p.add_argument("--split", nargs="+", help="(--from) splits to import (default train)")
    p.add_argument("--limit", type=int, help="(--from) only the first N episodes of each split")
    p.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    p.add_argument("--shard-size", type=int, default=50, help="episodes per shard")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    # World options: passed to the factory only when given, so each world keeps its defaults.
    p.add_argument("--frames", type=int, default=None, help="frames per episode")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (also clevrer)")
    p.add_argument(
        "--policy",
        choices=["random", "scripted", "mixed"],
        default=None,
        help="(pusht; default scripted)",
    )
    p.add_argument("--no-questions", action="store_true", help="skip VQA questions (collide)")
    args = p.parse_args(argv)
    given = [f"--{k}" for k in WORLD_ONLY if getattr(args, k) is not None]
    given += ["--no-questions"] * args.no_questions
    if args.layout and given:
        p.error(f"{', '.join(given)}: only with --world, not with --from")
    if args.world and (args.episodes is None or args.seed is None):
        p.error("--world needs --episodes and --seed")
    if args.world and (args.split or args.limit is not None):
        p.error("--split and --limit: only with --from")
    return args


def world_options(spec: WorldSpec, flags: dict[str, Any]) -> dict[str, Any]:
    """The factory options of ``flags`` (None: not given). A flag not given takes the world's
    ``make_data_defaults`` (Push-T: policy scripted), else is left out so the factory's own
    default applies. The flags' order is kept: the options are stored in shards and manifest."""
    defaults = spec.make_data_defaults
    out = {k: defaults.get(k) if v is None else v for k, v in flags.items()}
    out.update({k: v for k, v in defaults.items() if k not in out})
    return {k: v for k, v in out.items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    if args.layout:
        layout, path = args.layout
        options = {} if args.size is None else {"size": args.size}
        report = import_published(
            layout,
            path,
            args.out,
            splits=args.split,
            shard_size=args.shard_size,
            limit=args.limit,
            options=options,
        )
    else:
        report = simulate(args)
    print(
        f"{report.out}: {len(report.written)} written, {len(report.rewritten)} rewritten, "
        f"{len(report.kept)} kept, {len(report.orphans)} orphan(s) "
        f"in {time.perf_counter() - start:.1f} s"
    )


def simulate(args: argparse.Namespace):
    """``generate_shards`` for ``--world``."""
    spec = get_world(args.world)
    flags = {spec.length_option: args.frames, "size": args.size, "policy": args.policy}
    world_kwargs = world_options(spec, flags)
    if args.no_questions:
        world_kwargs["questions"] = False
    return generate_shards(
        args.world,
        args.episodes,
        args.seed,
        args.out,
        shard_size=args.shard_size,
        workers=args.workers,
        world_kwargs=world_kwargs,
    )


if __name__ == "__main__":
    cli.run(main)
