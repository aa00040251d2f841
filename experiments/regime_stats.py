"""Statistics of a collide world regime under the oracle encoder: is there dynamics to learn?

    python experiments/regime_stats.py                                   # collide-v2, oracle-v2
    python experiments/regime_stats.py --generator collide-v1 --oracle v1 --frameskip 2
    python experiments/regime_stats.py --episodes 300 --frames 64 --history 4 --n-future 2

Simulates episodes in memory (nothing is written), encodes them with the oracle and scores every
window (stride 1) of the smoke window shape: collisions per window, share of windows with one,
share of present future cells that are interaction cells (``cjepa.evaluation.dynamics``),
copy-last vs constant-velocity error on present cells, and how much of a slot's variance the
object's state vs its identity code explains. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm import tqdm

from cjepa import cli
from cjepa.data.windows import SlotWindows
from cjepa.encoders.oracle import OracleEncoder
from cjepa.evaluation.dynamics import DynamicsScore, labels_for, window_cells
from cjepa.worlds.collide import make_episode


def identity_share(enc: OracleEncoder, episodes) -> dict[str, float]:
    """Variance of the state part and the identity part of present object slots, as shares of
    the slot variance (the two parts are summed, so the shares need not add to exactly 1)."""
    state_parts, id_parts, slots = [], [], []
    for ep in episodes:
        feats, attrs = enc.features(ep)
        present = feats[..., 6] > 0.5  # (L, K)
        state = np.tanh(feats @ enc.w1 + enc.b1) @ enc.w2  # (L, K, D)
        ident = np.broadcast_to(attrs @ enc.w_attr, state.shape)
        state_parts.append(state[present])
        id_parts.append(ident[present])
        slots.append((state + ident)[present])
    total = np.concatenate(slots).var(0).sum()
    return {
        "state_share": float(np.concatenate(state_parts).var(0).sum() / total),
        "identity_share": float(np.concatenate(id_parts).var(0).sum() / total),
        "slot_variance": float(np.concatenate(slots).var(0).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="collide-v2")
    parser.add_argument("--oracle", default="v2", help="oracle version: v1 or v2")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history", type=int, default=4)
    parser.add_argument("--n-future", type=int, default=2)
    parser.add_argument("--frameskip", type=int, default=2)
    args = parser.parse_args()

    episodes = [
        make_episode(
            i,
            seed=args.seed,
            frames=args.frames,
            size=16,
            questions=False,
            generator=args.generator,
        )
        for i in tqdm(range(args.episodes), desc="simulate", leave=False)
    ]
    enc = OracleEncoder("collide", version=f"oracle-{args.oracle}")
    slots = [torch.from_numpy(z) for z in enc.encode_episodes(episodes)]
    windows = SlotWindows(slots, history=args.history, n_future=args.n_future,
                          frameskip=args.frameskip)  # fmt: skip
    labels = labels_for(episodes, enc.n_slots)
    score = DynamicsScore()
    n_collisions, with_collision = 0, 0
    span = (args.history + args.n_future - 1) * args.frameskip
    for ep in episodes:
        frames = [c[0] for c in ep.info["collisions"]]
        for s in range(ep.n_frames - span):
            n = sum(s < f <= s + span for f in frames)
            n_collisions += n
            with_collision += n > 0
    for rows in torch.arange(len(windows)).split(4096):
        batch = windows.get(rows)["slots"]
        present, interaction = window_cells(labels, windows.frames(rows), args.history)
        copy = batch[:, args.history - 1 : args.history].expand_as(batch[:, args.history :])
        score.add(copy, batch, present, interaction)  # "future" = copy-last here
    res = score.result()
    out = {
        "generator": args.generator,
        "oracle": enc.version,
        "window": f"{args.history}+{args.n_future} at frameskip {args.frameskip}",
        "windows": len(windows),
        "collisions_per_window": n_collisions / len(windows),
        "windows_with_collision": with_collision / len(windows),
        "interaction_share": res["interaction_share"],
        "copy_last_all": res["copy_last_all"],
        "copy_last_present": res["copy_last_present"],
        "linear_present": res["linear_present"],
        "copy_last_interaction": res["copy_last_interaction"],
        "linear_interaction": res["linear_interaction"],
        "linear_free": res["linear_free"],
        **identity_share(enc, episodes),
    }
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    cli.run(main)
