"""Planning cost of an object-slot world model vs a patch-token one, same CEM budget.

    python bench/plan_object_vs_patch.py                    # CPU-sized budget (< ~3 min)
    python bench/plan_object_vs_patch.py --episodes 50 --samples 300 --elites 30 \
        --iterations 30 --device cuda

Both arms use the same predictor (the paper's Push-T shape: width 128, depth 6, 16 heads x 64,
MLP 2048, proprio and action entity tokens, history 3, n_future 1, frameskip 5) and plan the same
episodes with one batched ``plan`` call; only the tokens differ: the slot model sees N = 4 slots
of D = 128 per frame, matched to the goal by the Hungarian algorithm; the patch model sees the
196 DINOv2 ViT-S/14 patch tokens of D = 384 (DINO-WM's latents, SPEC section 2), compared in
place (``match="none"``). 4 frames x (N + 2) tokens: 24 vs 792 per sequence. This isolates the
token count's share of the planning time (the paper's "1.02% of the token budget" claim);
DINO-WM's own predictor (causal frame attention, concatenated actions) is not reproduced.
Weights are random; only time is measured. Prints per-cost-call and total times and the ratio.
Each arm is warmed up with one cost call, then planned ``--repeats`` times, the arms alternating
(slots, patches, slots, ...) so that a load change on a shared machine hits both; the figures are
medians over the repeats. ``--quick`` shrinks every size (1 episode, depth 1, 2 samples x 1
iteration, horizon 2) so the script runs in seconds (for tests; the ratio then means little).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cjepa.config import PredictorConfig
from cjepa.planning import CEMConfig, CEMSolver, WorldModelCost
from cjepa.predictor import SlotPredictor

ARMS = {"slots": {"tokens": 4, "dim": 128, "match": "hungarian"}}
ARMS["patches"] = {"tokens": 196, "dim": 384, "match": "none"}


def build(name: str, args: argparse.Namespace, device: torch.device) -> WorldModelCost:
    """The arm's random-weight predictor and cost on random starts and goals, warmed up."""
    spec = ARMS[name]
    n, d, th, e = spec["tokens"], spec["dim"], args.history, args.episodes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = SlotPredictor(
            PredictorConfig(depth=args.depth),
            slot_dim=d,
            history=th,
            n_future=1,
            action_dim=2 * args.frameskip,
            proprio_dim=4,
        )
    model = model.to(device).eval()
    g = torch.Generator().manual_seed(args.seed)
    x = {
        "history_slots": torch.randn(e, th, n, d, generator=g),
        "goal_slots": torch.randn(e, n, d, generator=g),
        "history_actions": torch.randn(e, th - 1, model.action_dim, generator=g),
        "history_proprio": torch.randn(e, th, 4, generator=g),
        "goal_proprio": torch.randn(e, 4, generator=g),
    }
    x = {k: v.to(device) for k, v in x.items()}
    cost = WorldModelCost(model, **x, match=spec["match"], max_batch=args.max_batch)
    cost(torch.zeros(e, 2, args.horizon, model.action_dim, device=device))  # warm-up
    return cost


def plan_once(cost: WorldModelCost, args: argparse.Namespace, device: torch.device) -> dict:
    """One timed batched CEM plan; returns its total and per-cost-call seconds and counters."""
    cost.reset_counters()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    CEMSolver(
        CEMConfig(
            samples=args.samples,
            elites=args.elites,
            iterations=args.iterations,
            horizon=args.horizon,
        )
    ).solve(
        cost,
        args.episodes,
        cost.model.action_dim,
        generator=torch.Generator(device=device).manual_seed(args.seed),
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total = time.perf_counter() - t0
    return {"total": total, "per_call": total / cost.cost_calls, **cost.stats()}


def arms(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    """Medians over ``args.repeats`` plans per arm, the arms alternating."""
    costs = {name: build(name, args, device) for name in ARMS}
    runs: dict[str, list[dict]] = {name: [] for name in ARMS}
    for _ in range(args.repeats):
        for name, cost in costs.items():
            runs[name].append(plan_once(cost, args, device))
    return {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }


QUICK = {"episodes": 1, "samples": 2, "elites": 2, "iterations": 1, "horizon": 2, "depth": 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=2, help="paper: 50")
    p.add_argument("--samples", type=int, default=6, help="paper: 300")
    p.add_argument("--elites", type=int, default=2, help="paper: 30")
    p.add_argument("--iterations", type=int, default=2, help="paper: 30")
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--history", type=int, default=3)
    p.add_argument("--frameskip", type=int, default=5)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--max-batch", type=int, default=None, help="rows per predictor forward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed plans per arm (median)")
    p.add_argument("--quick", action="store_true", help=f"tiny sizes for tests: {QUICK}")
    args = p.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    device = torch.device(args.device)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}; {args.episodes} episodes "
        f"in one batched plan; CEM {args.samples} samples / {args.elites} elites / "
        f"{args.iterations} iterations, horizon {args.horizon}; predictor depth {args.depth}, "
        f"history {args.history}, frameskip {args.frameskip}; median of {args.repeats} "
        "repeats per arm after a warm-up call"
    )
    results = arms(args, device)
    print(f"{'model':<9}{'tokens/frame':>13}{'per call s':>12}{'total s':>10}{'forwards':>10}")
    for name, r in results.items():
        tokens = f"{ARMS[name]['tokens']}+2"
        print(
            f"{name:<9}{tokens:>13}{r['per_call']:>12.3f}{r['total']:>10.2f}"
            f"{r['forward_calls']:>10.0f}"
        )
    ratio = results["patches"]["total"] / results["slots"]["total"]
    print(f"patch / slot planning time: {ratio:.1f}x")


if __name__ == "__main__":
    main()
