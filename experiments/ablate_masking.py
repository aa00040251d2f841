"""The masking ablation: data -> encoder -> Ray Data slot extraction -> Ray Tune sweep of Ray
Train runs -> table, every run tracked in MLflow.

    python experiments/ablate_masking.py                       # smoke preset, collide world
    python experiments/ablate_masking.py --preset tiny --world pusht
    python experiments/ablate_masking.py --resume              # continue the latest sweep
    python experiments/ablate_masking.py experiment.train.steps=800 --sweep-set seeds=[0,1]
    ray job submit --working-dir . --runtime-env-json \
      '{"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:///'$PWD'/mlruns.db"}}' \
      -- python experiments/ablate_masking.py --root $PWD/runs/ablate

Errors in the preset or its inputs print one line and exit 2 (``--debug``: the traceback); an
interrupted sweep (Ctrl-C) exits 130 and ``--resume`` continues it. Without ``RAY_ADDRESS`` a
local Ray starts; with it (as under ``ray job submit``) the job joins
that cluster. Runs land in ``MLFLOW_TRACKING_URI`` or ``sqlite:///<cwd>/mlruns.db``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cjepa import cli
from cjepa.distributed.pipeline import check_ablation, load_ablation, run_ablation
from cjepa.distributed.runtime import init_ray
from cjepa.worlds import world_names

PRESETS = Path(__file__).resolve().parent / "configs" / "ablate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="smoke", help=f"a preset in {PRESETS} or a YAML path")
    parser.add_argument("--world", default="collide", choices=world_names())
    parser.add_argument("--root", help="where data, slots and sweeps live (absolute on clusters)")
    parser.add_argument("--sweep-id", help="name of the sweep (default: preset-world-time)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    parser.add_argument(
        "--sweep-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the sweep spec, e.g. seeds=[0,1]",
    )
    parser.add_argument("overrides", nargs="*", help="dotted preset overrides, e.g. encoder=PATH")
    args = parser.parse_args()

    preset = Path(args.preset)
    path = preset if preset.suffix == ".yaml" else PRESETS / f"{args.preset}.yaml"
    overrides = [*args.overrides, *([f"root={args.root}"] if args.root else [])]
    cfg, preset_dir = load_ablation(path, overrides)
    # Bad config, sweep spec, stage names and an unreachable tracking store fail here, in
    # seconds, before Ray starts or any data is made.
    check_ablation(
        cfg, preset_dir, world=args.world, sweep_overrides=args.sweep_set, overrides=overrides
    )
    init_ray(log_to_driver=False)  # worker errors still reach the driver as trial errors
    run_ablation(
        cfg,
        preset_dir,
        world=args.world,
        sweep_id=args.sweep_id,
        resume=args.resume,
        sweep_overrides=args.sweep_set,
    )


if __name__ == "__main__":
    cli.run(main)
