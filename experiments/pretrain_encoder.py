"""Pre-train a video slot encoder on a world's episode shards; report held-out FG-ARI.

    python experiments/make_data.py --world collide --episodes 200 --seed 0 --out data/collide
    python experiments/pretrain_encoder.py --data data/collide --out runs/enc_cnn \
        --config experiments/configs/encoders/cnn_collide.yaml
    python experiments/pretrain_encoder.py --data data/collide --out runs/enc_cnn \
        --config experiments/configs/encoders/cnn_collide.yaml train.steps=200   # smoke
    python experiments/pretrain_encoder.py --data data/collide --out runs/enc_dino \
        --config experiments/configs/encoders/dinov2_collide.yaml \
        encoder.dinov2_weights=/path/to/dinov2_vits14_pretrain.pth --device cuda
    python experiments/pretrain_encoder.py --out runs/patch --export-patch \
        --config experiments/configs/encoders/patch_dinov2.yaml \
        encoder.dinov2_weights=/path/to/dinov2_vits14_pretrain.pth

An existing ``<out>/checkpoint.pt`` is continued with ``--resume`` (seeded generators included)
or discarded with ``--fresh``; without either the script refuses to touch it. The
trained encoder is ``<out>/encoder.pt`` (``cjepa.encoders.load_encoder(path)``); FG-ARI of the
trained and of the random-init model on held-out episodes goes to ``<out>/fg_ari.json``.
``--export-patch`` writes the (untrained) DINOv2 patch baseline to ``<out>/encoder.pt``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from cjepa import cli
from cjepa.encoders.base import file_sha256, save_encoder
from cjepa.encoders.config import load_encoder_experiment
from cjepa.encoders.train import CHECKPOINT_NAME, ENCODER_NAME, fit_encoder, load_episodes
from cjepa.encoders.video import PatchModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML preset (default: dataclass defaults)")
    parser.add_argument("--data", default=None, help="directory of episode shards")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true", help="continue <out>/checkpoint.pt")
    parser.add_argument("--fresh", action="store_true", help="discard --out and start over")
    parser.add_argument("--export-patch", action="store_true", help="write the patch encoder only")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    args = parser.parse_intermixed_args()  # options may follow the dotted overrides

    exp = load_encoder_experiment(args.config, args.overrides)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    if (out / CHECKPOINT_NAME).exists() and not args.resume:
        parser.error(f"{out / CHECKPOINT_NAME} exists: pass --resume to continue or --fresh")
    if args.export_patch:
        if exp.encoder.dinov2_weights is None:
            parser.error("--export-patch needs encoder.dinov2_weights=/path/to/weights.pth")
        save_encoder(out / ENCODER_NAME, PatchModel(exp.encoder), exp.encoder)
        print(f"patch encoder -> {out / ENCODER_NAME} (sha256 {file_sha256(out / ENCODER_NAME)})")
        return
    if args.data is None:
        parser.error("--data is required to train")
    t0 = time.perf_counter()
    episodes = load_episodes(args.data)
    enc, tc = exp.encoder, exp.train
    print(f"{len(episodes)} episodes from {args.data}; {enc.backbone} video encoder, "
          f"N={enc.n_slots} D={enc.slot_dim} @ {enc.image_size}px; {tc.steps} steps of "
          f"{tc.batch_size} x {tc.clip_len}-frame clips -> {out}")  # fmt: skip
    result = fit_encoder(exp, episodes, out, device=args.device, resume=args.resume)
    metrics = result.metrics
    if not metrics["finished"]:
        print(f"stopped at step {metrics['step']} of {tc.steps}")
        return
    if "fg_ari_skipped" in metrics:  # e.g. Push-T: no instance masks to score against
        print(f"\nheld-out FG-ARI not computed: {metrics['fg_ari_skipped']}")
    else:
        print(
            f"\nheld-out FG-ARI on {len(metrics['val_episodes'])} episodes x "
            f"{metrics['eval_frames']} frames (slot-attention masks; video = time flattened):"
        )
        for name in ("trained", "random_init"):
            m = metrics[name]
            print(
                f"  {name:<12} fg_ari {m['fg_ari']:.3f}  video {m['fg_ari_video']:.3f}  "
                f"decoder masks {m['fg_ari_decoder']:.3f}"
            )
    metrics["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"encoder": str(out / ENCODER_NAME), "sha256": file_sha256(out / ENCODER_NAME),
                      "wall_s": metrics["wall_s"]}))  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
