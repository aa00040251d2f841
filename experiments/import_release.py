"""Import the official C-JEPA release: predictor weights and pre-extracted slot pickles.

    python experiments/import_release.py --slots clevrer_slots.pkl --trust-pickle \
        --out runs/release/slots
    python experiments/import_release.py --predictor clevrer_final_predictor.ckpt \
        --set data.slot_dir=runs/release/slots/val --out runs/release/predictor.pt
    python experiments/evaluate.py --checkpoint runs/release/predictor.pt \
        --stage final_validation --set final_validation.windows=slot_dir

--predictor: an official state dict or Lightning checkpoint (read with weights_only=True),
written as a cjepa ``predictor.pt`` (variant official); --config YAML and --set KEY=VALUE give
what the weights do not say (data.n_slots, predictor.heads, data.history or data.n_future).
--slots: the official ``{split: {video: (T, N, D)}}`` pickle, written as slot shards under
OUT/<split>/. A pickle (the slot file, a released *_object.ckpt) is read only with
--trust-pickle, and then still with nothing from it imported or run (see docs/release.md).
docs/release.md has the key mapping and what was checked against the official source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cjepa import cli
from cjepa.config import apply_overrides, read_yaml


def import_predictor(args: argparse.Namespace) -> None:
    from cjepa import release

    data = read_yaml(args.config) if args.config else {}
    data = apply_overrides(data, args.set)
    cfg, state, record = release.import_predictor(
        args.predictor, data, trust_pickle=args.trust_pickle
    )
    release.save_release_checkpoint(args.out, cfg, state, record)
    d, p = cfg.data, cfg.predictor
    print(
        f"wrote {args.out}: {p.depth} blocks, width {p.width}, heads {p.heads} (from the "
        f"config: not stored in the weights), slots {d.n_slots} x {d.slot_dim}, T_h "
        f"{d.history} + T_p {d.n_future}, aux {p.aux_encoding}; prefix {record['prefix']!r}, "
        f"{record['ignored_keys']} keys of other modules ignored"
    )


def import_slots(args: argparse.Namespace) -> None:
    from cjepa.data import release_slots
    from cjepa.encoders.base import file_sha256

    if args.set or args.config:
        raise ValueError("--config/--set apply to --predictor, not to --slots")
    slots = release_slots.read_slot_pickle(args.slots, trust_pickle=args.trust_pickle)
    report = release_slots.import_slot_pickle(
        slots,
        args.out,
        source=str(args.slots),
        sha256=file_sha256(args.slots),
        shard_size=args.shard_size,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    for split, n in report.videos.items():
        written, kept = len(report.written[split]), len(report.kept[split])
        print(f"{args.out}/{split}: {n} videos, {written} shards written, {kept} kept")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--predictor", type=Path, help="official predictor .ckpt")
    what.add_argument("--slots", type=Path, help="official slot pickle .pkl")
    p.add_argument("--out", type=Path, required=True, help="predictor.pt, or a directory")
    p.add_argument("--config", type=Path, help="experiment YAML (with --predictor)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow reading pickles (--slots, *_object.ckpt)"
    )
    p.add_argument("--shard-size", type=int, default=64, help="videos per slot shard")
    args = p.parse_args()
    (import_predictor if args.predictor else import_slots)(args)


if __name__ == "__main__":
    cli.run(main)
