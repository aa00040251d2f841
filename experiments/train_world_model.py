"""Train the C-JEPA predictor in one process and print its loss curves.

    python experiments/train_world_model.py --config experiments/configs/demo.yaml
    python experiments/train_world_model.py --config experiments/configs/smoke.yaml \
        masking.unit=tube masking.budget=2 predictor.aux_encoding=concat
    python experiments/train_world_model.py --config experiments/configs/demo.yaml --fresh

Re-running the same command resumes from ``<train.out_dir>/checkpoint.pt`` unless ``--fresh``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from cjepa import cli
from cjepa.config import load_config
from cjepa.data.sources import load_windows
from cjepa.tracking import JsonlTracker
from cjepa.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/demo.yaml")
    parser.add_argument("--fresh", action="store_true", help="discard out_dir and start over")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. predictor.depth=4")
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    out = Path(cfg.train.out_dir)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    print(
        f"config {args.config}: masking {cfg.masking.unit} |M|={cfg.masking.budget} "
        f"(ratio {cfg.masking.ratio:.2f}, {cfg.masking.sampling}), "
        f"aux {cfg.predictor.aux_encoding}, {cfg.train.steps} steps -> {out}"
    )
    train, val = load_windows(cfg.data)
    print(
        f"data: {len(train)} train / {len(val)} val windows of "
        f"{cfg.data.history}+{cfg.data.n_future} steps, "
        f"{cfg.data.n_slots} slots x {cfg.data.slot_dim}"
    )
    result = fit(cfg, train, val, out_dir=out, tracker=JsonlTracker(out / "metrics.jsonl"))

    last = result.history[-1] if result.history else {}
    summary = {
        "steps_per_s": round(result.steps_per_s, 2),
        "val_future": last.get("val/future_visible"),
        "val_copy_last": last.get("val/copy_last"),
        "val_hidden_history": last.get("val/history"),
    }
    print("\nloss curve (train loss / val future vs copy-last):")
    for row in result.history:
        val_text = ""
        if "val/future_visible" in row:
            val_text = f"   val {row['val/future_visible']:.4f} / {row['val/copy_last']:.4f}"
        hashes = "#" * bar(row["train/loss"], result.history)
        print(f"  {int(row['step']):>6}  {row['train/loss']:.4f} {hashes}{val_text}")
    print("summary:", json.dumps(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def bar(value: float, history: list[dict]) -> int:
    top = max(r["train/loss"] for r in history)
    return max(1, round(40 * value / top)) if top > 0 else 1


if __name__ == "__main__":
    cli.run(main)
