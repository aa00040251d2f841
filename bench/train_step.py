"""Where `make run`'s training step goes: forward, backward, optimiser; loop vs foreach Adam.

    python bench/train_step.py                 # the reference trial's shapes, 60 steps x 5
    python bench/train_step.py predictor.depth=6

The reference sweep (`make run`) spends ~83% of its trials training (docs/benchmarks.md,
`bench/smoke_wall.py`). This script trains the same predictor at the same shapes as one of its
trials (width 64, depth 3, 4 x 16 heads, MLP 256, 7 slots x 128, history 4 + 2 future, batch 32,
AdamW, grad clip 1) on synthetic slots, and times in one run, alternating over repeats:

- a whole ``train_step`` with the per-parameter Adam loop (torch's CPU default) and with the
  ``foreach`` update that ``cjepa.steps.build_optimizer`` uses;
- its parts: forward + loss, backward, optimiser step (loop / foreach / fused).

Medians over ``--repeats``, after a warm-up pass. It also checks that ``foreach`` gives the
loop's weights bit for bit. ``--quick``: a tiny predictor, 3 steps, 1 repeat (for tests).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from cjepa.config import load_config
from cjepa.data.sources import load_windows
from cjepa.steps import forward_loss, train_step
from cjepa.train import TrainLoop

REFERENCE = [  # experiments/configs/ablate/smoke.yaml's trial shapes on synthetic slots
    "data.slot_dim=128",
    "data.synthetic.n_objects=7",
    "data.history=4",
    "data.n_future=2",
    "predictor.width=64",
    "predictor.depth=3",
    "predictor.heads=4",
    "predictor.head_dim=16",
    "predictor.mlp_dim=256",
    "optim.optimizer=adamw",
    "optim.weight_decay=0.01",
    "train.batch_size=32",
]


def adam(model: torch.nn.Module, cfg, impl: str) -> torch.optim.Optimizer:
    flags = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, **flags[impl]
    )


def timed(fn, n: int) -> float:
    """Milliseconds per call of ``fn`` over ``n`` calls."""
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1e3


def measure(cfg, batches: list, repeats: int) -> dict[str, list[float]]:
    base = TrainLoop(cfg, *load_windows(cfg.data)).model
    arms = {impl: copy.deepcopy(base) for impl in ("loop", "foreach")}  # whole steps
    arm_opts = {impl: adam(m, cfg, impl) for impl, m in arms.items()}
    parts = copy.deepcopy(base)  # forward / backward / each optimiser on its own
    part_opts = {impl: adam(parts, cfg, impl) for impl in ("loop", "foreach", "fused")}
    n, clip = len(batches), cfg.optim.grad_clip
    out: dict[str, list[float]] = {}

    def step(impl):
        model, opt = arms[impl], arm_opts[impl]
        return lambda i: train_step(model, batches[i], opt, loss=cfg.loss, grad_clip=clip)

    def forward(i):
        return forward_loss(parts, batches[i], cfg.loss)["loss"]

    def backward(i):
        parts.zero_grad(set_to_none=True)
        forward(i).backward()

    for rep in range(repeats + 1):  # rep 0 is the warm-up
        figures = {f"step, {impl} Adam": timed(step(impl), n) for impl in arms}
        figures["forward + loss"] = timed(forward, n)
        figures["forward + loss + backward"] = timed(backward, n)
        for impl, opt in part_opts.items():
            figures[f"optimiser step, {impl}"] = timed(lambda _i, o=opt: o.step(), n)
        if rep:
            for k, v in figures.items():
                out.setdefault(k, []).append(v)
    pairs = zip(arms["loop"].parameters(), arms["foreach"].parameters(), strict=True)
    out["same weights"] = [float(all(torch.equal(a, b) for a, b in pairs))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/smoke.yaml")
    parser.add_argument("--steps", type=int, default=60, help="steps per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny predictor, 3 steps, 1 repeat")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tiny = ["predictor.width=16", "predictor.depth=1", "predictor.mlp_dim=32"]
    if args.quick:
        args.steps, args.repeats = 3, 1
    cfg = load_config(args.config, [*REFERENCE, *(tiny if args.quick else []), *args.overrides])
    train, _ = load_windows(cfg.data)
    gen = torch.Generator().manual_seed(0)
    masks = TrainLoop(cfg, train, None).masks
    batches = []
    for _ in range(args.steps):
        batch = train.sample(cfg.train.batch_size, gen)
        batch["mask"] = masks(cfg.train.batch_size, cfg.data.history, batch["slots"].shape[2])
        batches.append(batch)
    res = measure(cfg, batches, args.repeats)
    same = bool(res.pop("same weights")[0])
    p = cfg.predictor
    print(
        f"torch threads 1; predictor width {p.width}, depth {p.depth}, batch "
        f"{cfg.train.batch_size}, {cfg.data.n_slots} slots x {cfg.data.slot_dim}; "
        f"{args.steps} steps per pass, median of {args.repeats} after a warm-up pass"
    )
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        print(f"{k:<28} {v:8.2f} ms")
    ratio = med["step, loop Adam"] / med["step, foreach Adam"]
    print(f"train step, loop / foreach Adam: {ratio:.3f}x")
    print(f"foreach weights equal the loop's: {same}")


if __name__ == "__main__":
    main()
