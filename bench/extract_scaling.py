"""Slot-extraction throughput: one process vs Ray Data with 1 and 2 encoder actors.

    python bench/extract_scaling.py                       # oracle if cjepa.encoders exists
    python bench/extract_scaling.py --encoder torch       # a SAVi-like torch encoder (real cost)
    python bench/extract_scaling.py --data /tmp/ex_data/collide --encoder runs/enc.pt

Same episodes, same encoder, a fresh output directory per run (nothing is skipped). Times are
extraction only: Ray's start-up is excluded, actor start-up (process, imports, encoder load) is
included; "busy" sums the per-shard read + encode + write times, so wall - busy / actors is the
pipeline's overhead. The outputs of all runs are checked equal. On a small machine actors share
the cores with each other and with Ray's own processes: read the ratios with the core count.
The three runs alternate ``--repeats`` times (local, ray x1, ray x2, local, ...), each into a
fresh folder; the figures are medians over the repeats (the first Ray run's actor start-up
is the warm-up that Ray's worker pool pays once; it is included in every run, as in use).
``--quick``: 8 episodes in shards of 4, one repeat (seconds, for tests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cjepa.data.generate import generate_shards
from cjepa.data.shards import read_slot_shard
from cjepa.data.splits import list_shards
from cjepa.distributed.extract import extract_local, extract_ray
from cjepa.distributed.runtime import init_ray


class TorchCostEncoder:
    """A fake encoder with a real encoder's cost profile (stand-in for a SAVi-style model).

    A 3-layer CNN over all frames at once, then slot attention run frame by frame with the
    slots of frame t-1 as the queries of frame t (temporal propagation, a sequential loop).
    Fixed random weights: the numbers mean nothing, the cost is what is measured.
    """

    def __init__(self, device: str = "cpu", n_slots: int = 7, slot_dim: int = 64) -> None:
        self.n_slots, self.slot_dim, self.device = n_slots, slot_dim, device
        self.config = {"kind": "bench-torch", "n_slots": n_slots, "slot_dim": slot_dim, "seed": 0}
        text = json.dumps(self.config, sort_keys=True)
        self.hash = hashlib.sha256(text.encode()).hexdigest()
        torch.manual_seed(0)
        d = slot_dim
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, d, 3, padding=1),
        ).to(device).eval()  # fmt: skip
        self.q, self.k, self.v = (nn.Linear(d, d).to(device).eval() for _ in range(3))
        self.gru = nn.GRUCell(d, d).to(device).eval()
        self.init = torch.randn(n_slots, d, device=device)

    @torch.no_grad()
    def encode_episodes(self, episodes):
        out = []
        for ep in episodes:
            x = torch.from_numpy(ep.frames).to(self.device).permute(0, 3, 1, 2).float() / 255
            feats = self.cnn(x).flatten(2).transpose(1, 2)  # (T, M, D)
            keys, values = self.k(feats), self.v(feats)  # (T, M, D)
            slots, frames = self.init, []
            for t in range(feats.shape[0]):
                for _ in range(2):  # slot-attention iterations
                    attn = (self.q(slots) @ keys[t].T).softmax(dim=0)  # (N, M), over slots
                    attn = attn / attn.sum(dim=1, keepdim=True)
                    slots = self.gru(attn @ values[t], slots)  # (N, D)
                frames.append(slots)
            out.append(torch.stack(frames).cpu().numpy().astype(np.float32))  # (T, N, D)
        return out


def pick_encoder(name: str):
    if name == "torch":
        return TorchCostEncoder, "TorchCostEncoder (fake, SAVi-like cost, random weights)"
    if name == "auto":
        try:
            from cjepa.encoders import load_encoder  # noqa: F401
        except ImportError:
            return TorchCostEncoder, "TorchCostEncoder (cjepa.encoders missing; fake, real cost)"
        name = "oracle"
    return name, f"{name!r} via cjepa.encoders.load_encoder"


def same_outputs(a: Path, b: Path) -> bool:
    for pa in list_shards(a):
        sa, sb = read_slot_shard(pa), read_slot_shard(b / pa.name)
        if sa.episode_ids != sb.episode_ids or not np.allclose(sa.slots, sb.slots, atol=1e-5):
            return False
    return len(list_shards(a)) == len(list_shards(b))


def median_report(reports: list):
    """The report of median frames/s among repeats (its times are that run's)."""
    rate = statistics.median_low([r.frames_per_s for r in reports])
    return next(r for r in reports if r.frames_per_s == rate)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=None, help="episode shards (default: make collide data)")
    p.add_argument("--episodes", type=int, default=192, help="when making data")
    p.add_argument("--shard-size", type=int, default=8, help="when making data")
    p.add_argument("--encoder", default="auto", help="auto | oracle | torch | checkpoint path")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads of the plain loop (Ray gives an "
        "actor as many as its whole CPUs, at least 1: 1 here)",
    )  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="runs per arm (median)")
    p.add_argument("--quick", action="store_true", help="8 episodes, 1 repeat (for tests)")
    args = p.parse_args()
    if args.quick:
        args.episodes, args.shard_size, args.repeats = 8, 4, 1
    torch.set_num_threads(args.threads)
    encoder, label = pick_encoder(args.encoder)
    with tempfile.TemporaryDirectory(prefix="extract_bench_") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            data = tmp / "data"
            generate_shards(
                "collide", args.episodes, 0, data, shard_size=args.shard_size, workers=1
            )
        print(f"encoder: {label}")
        print(
            f"machine: {os.cpu_count()} cores; plain loop torch threads: {torch.get_num_threads()}"
        )
        start = time.perf_counter()
        init_ray()
        print(f"ray.init: {time.perf_counter() - start:.1f} s (excluded)")
        arms = {
            "local": lambda out: extract_local(data, encoder, out, batch_size=args.batch_size),
            **{
                f"ray x{n}": lambda out, n=n: extract_ray(
                    data, encoder, out, batch_size=args.batch_size, actors=n, progress=False
                )
                for n in (1, 2)
            },
        }
        reps: dict[str, list] = {name: [] for name in arms}
        for i in range(args.repeats):
            for name, fn in arms.items():
                reps[name].append(fn(tmp / f"{name.replace(' ', '')}-{i}"))
        runs = {name: median_report(rs) for name, rs in reps.items()}
        ref = runs["local"]
        shards = len(ref.shard_seconds)
        print(
            f"data: {args.data or 'generated collide'} ({shards} shards, {ref.frames} frames); "
            f"median of {args.repeats} repeats"
        )
        print("run       frames/s   wall s  vs local   busy s  (busy: sum of per-shard times)")
        for name, r in runs.items():
            ratio = r.frames_per_s / ref.frames_per_s
            busy = sum(r.shard_seconds.values())
            print(f"{name:8s} {r.frames_per_s:9.1f} {r.seconds:8.2f}    x{ratio:.2f} {busy:8.2f}")
        two_vs_one = runs["ray x2"].frames_per_s / runs["ray x1"].frames_per_s
        print(f"ray x2 / ray x1: x{two_vs_one:.2f}")
        equal = all(same_outputs(ref.out, r.out) for r in runs.values())
        print(f"outputs equal: {equal}")


if __name__ == "__main__":
    main()
