"""Encoder quality vs C-JEPA's gain: the learned-slot ablation on encoders of increasing FG-ARI.

    python experiments/pretrain_encoder.py --data data/collide-encoder \
        --out runs/encoders/cnn_collide --config experiments/configs/encoders/cnn_collide.yaml \
        train.snapshot_every=1000                 # encoder-step001000.pt ... along one run
    python experiments/encoder_quality.py \
        --encoders runs/encoders/cnn_collide/encoder-step00{1,2,3,4}000.pt

For each encoder, in order (the oracle last unless ``--encoders`` names ``oracle`` or
``--no-oracle`` is given), the ``--preset`` ablation
(default ``smoke-learned``: OC-JEPA and object masking at |M| = ``--budget``, three seeds) runs
end to end on the collide world with ``encoder=<that checkpoint>``: extraction, sweep, every
evaluation stage (the object-naming ones through slot-object alignment), controls, MLflow. The
encoder's FG-ARI and alignment are scored on the same held-out episodes. ``<out>/points.json``
keeps one entry per finished encoder (a rerun skips those whose checkpoint is unchanged), and
``<out>/encoder_quality.md`` / ``.png`` hold the C-JEPA minus OC-JEPA differences with their
95% intervals against FG-ARI (``cjepa.distributed.encoder_study``). Exit 1 if a trial failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cjepa import cli
from cjepa.distributed.encoder_study import run_study, study_figure, study_table
from cjepa.distributed.runtime import init_ray

PRESETS = Path(__file__).resolve().parent / "configs" / "ablate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", required=True,
                        help="checkpoints in order; 'oracle' places the oracle")  # fmt: skip
    parser.add_argument("--preset", default="smoke-learned", help="ablation preset or YAML")
    parser.add_argument("--budget", type=int, default=4, help="C-JEPA's object budget |M|")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/analysis/encoder_quality")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle point")
    parser.add_argument("overrides", nargs="*", help="dotted preset overrides")
    args = parser.parse_args()

    preset = Path(args.preset)
    preset = preset if preset.suffix == ".yaml" else PRESETS / f"{args.preset}.yaml"
    encoders = [e if e == "oracle" else str(Path(e).resolve()) for e in args.encoders]
    encoders += [] if args.no_oracle or "oracle" in encoders else ["oracle"]
    out = Path(args.out)
    init_ray(log_to_driver=False)
    points, failed = run_study(preset, encoders, out, budget=args.budget, seeds=args.seeds,
                               overrides=args.overrides)  # fmt: skip
    table = study_table(points, args.budget)
    (out / "encoder_quality.md").write_text(table + "\n")
    figure = study_figure(points, out / "encoder_quality.png", args.budget)
    print(f"\n{table}\n\n[encoder-quality] {out / 'encoder_quality.md'}, {figure}", flush=True)
    if failed:
        raise SystemExit(f"[encoder-quality] {failed} trial(s) failed; see the sweeps above")


if __name__ == "__main__":
    cli.run(main)
