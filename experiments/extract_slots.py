"""Extract slots from episode shards with a frozen encoder (once; training reads the slots).

    python experiments/extract_slots.py --data data/collide --encoder oracle --out data/slots
    python experiments/extract_slots.py --data data/collide --encoder runs/enc.pt \\
        --out data/slots --actors 2 --batch-size 16
    python experiments/extract_slots.py --data data/collide --encoder oracle --out data/slots \\
        --no-ray
    # on a cluster (data and out on storage every node mounts at the same path):
    RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python experiments/extract_slots.py --data /shared/collide --encoder oracle \\
        --out /shared/slots

Writes OUT/<encoder_hash[:12]>/<shard stem>.parquet (one slot shard per episode shard) and a
manifest.json there. Re-running is cheap and safe: complete shards are kept, corrupt or missing
ones are (re)made, so a killed run is finished by running the same command again. Without an
address a local Ray starts (RAY_ADDRESS, set by `ray job submit`, joins that cluster instead).
Paths are made absolute here; under `ray job submit` the working directory is an uploaded copy,
so give absolute paths on shared storage.
"""

from __future__ import annotations

import argparse
import logging
import os

from cjepa import cli
from cjepa.distributed.extract import extract_local, extract_ray


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="directory of episode shards")
    p.add_argument("--encoder", required=True, help="'oracle', 'oracle:<world>' or a checkpoint")
    p.add_argument("--out", required=True, help="output root (a subdirectory per encoder hash)")
    p.add_argument("--batch-size", type=int, default=8, help="whole episodes per encoder call")
    p.add_argument("--actors", type=int, default=None, help="default: by resources")
    p.add_argument("--gpus-per-actor", type=float, default=None, help="default: 1 if GPUs exist")
    p.add_argument("--cpus-per-actor", type=float, default=None, help="default: by resources")
    p.add_argument("--no-ray", action="store_true", help="extract in this process")
    p.add_argument("--device", default=None, help="--no-ray device (default: cuda if available)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data, out = os.path.abspath(args.data), os.path.abspath(args.out)
    if args.no_ray:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        report = extract_local(data, args.encoder, out, batch_size=args.batch_size, device=device)
    else:
        report = extract_ray(
            data,
            args.encoder,
            out,
            batch_size=args.batch_size,
            actors=args.actors,
            gpus_per_actor=args.gpus_per_actor,
            cpus_per_actor=args.cpus_per_actor,
        )
    rate = f" ({report.frames_per_s:.0f} frames/s)" if report.frames_extracted else ""
    print(
        f"{report.out}: {len(report.written)} written, {len(report.rewritten)} rewritten, "
        f"{len(report.kept)} kept; {report.episodes} episodes, {report.frames} frames; "
        f"{report.frames_extracted} frames extracted in {report.seconds:.1f} s{rate}"
    )


if __name__ == "__main__":
    cli.run(main)
