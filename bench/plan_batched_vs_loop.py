"""Batched CEM (all episodes in one solver call) vs the official one-episode-at-a-time loop.

    python bench/plan_batched_vs_loop.py                      # CPU-sized budget (< ~3 min)
    python bench/plan_batched_vs_loop.py --samples 300 --elites 30 --iterations 30 --device cuda

Both arms plan the same E episodes with the same CEM budget and the same random-weight predictor
of the paper's Push-T shape (SPEC sections 4, 7, 9): N = 4 slots of D = 128, proprio (P = 4) and
action (2 x frameskip 5 = 10) entity tokens, history 3, n_future 1, width 128, depth 6, 16 heads
x 64, MLP 2048, so 4 frames x 6 entities = 24 tokens per sequence. The batched arm makes one
``plan`` call whose cost rolls all E x S candidates per predictor step; the loop arm makes E
calls of S candidates (SPEC section 9: the official code plans the 50 environments one at a
time). Prints wall times, predictor forwards and the speed-up. Weights are random, so the plans
are meaningless; only the timing is measured (both arms' final costs are printed as a check).
On a CPU the predictor is compute-bound, so batching gains little there, and one huge batch can
fall out of cache (``--max-batch`` chunks it); the gain the batching is for is on a GPU.
After a one-episode warm-up plan, the two arms alternate ``--repeats`` times (batched, loop,
batched, ...) so that a load change on a shared machine hits both; times are medians over the
repeats. ``--quick`` shrinks every size (4 episodes, depth 1, 2 samples x 1 iteration, horizon 2)
so the script runs in seconds (for tests; the ratio then means little).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cjepa.config import PredictorConfig
from cjepa.planning import CEMConfig, CEMSolver, WorldModelCost
from cjepa.predictor import SlotPredictor


def paper_predictor(args: argparse.Namespace, device: torch.device) -> SlotPredictor:
    cfg = PredictorConfig(depth=args.depth)  # the paper's defaults otherwise
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = SlotPredictor(
            cfg,
            slot_dim=args.slot_dim,
            history=args.history,
            n_future=1,
            action_dim=2 * args.frameskip,
            proprio_dim=4,
        )
    return model.to(device).eval()


def episodes(args: argparse.Namespace, model: SlotPredictor, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    e, th, n, d = args.episodes, args.history, args.slots, args.slot_dim
    x = {
        "history_slots": torch.randn(e, th, n, d, generator=g),
        "goal_slots": torch.randn(e, n, d, generator=g),
        "history_actions": torch.randn(e, th - 1, model.action_dim, generator=g),
        "history_proprio": torch.randn(e, th, 4, generator=g),
        "goal_proprio": torch.randn(e, 4, generator=g),
    }
    return {k: v.to(device) for k, v in x.items()}


def solve(model, x, args, device, seed) -> tuple[torch.Tensor, dict]:
    cost = WorldModelCost(model, **x, max_batch=args.max_batch)
    g = torch.Generator(device=device).manual_seed(seed)
    cem = CEMConfig(
        samples=args.samples, elites=args.elites, iterations=args.iterations, horizon=args.horizon
    )
    r = CEMSolver(cem).solve(cost, x["goal_slots"].shape[0], model.action_dim, generator=g)
    return r.cost, cost.stats()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float, dict, torch.Tensor]:
    """Wall and process-CPU seconds of ``fn()`` (a list of ``solve`` results), summed stats
    and the concatenated final costs."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    results = fn()
    sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats: dict = {}
    for _, st in results:
        stats = {k: stats.get(k, 0) + v for k, v in st.items()}
    return wall, cpu, stats, torch.cat([c for c, _ in results])


def median_run(runs: list[tuple]) -> tuple[float, float, dict, torch.Tensor]:
    """Median wall and CPU seconds over repeats (the counters and costs are the same each)."""
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    return wall, cpu, runs[0][2], runs[0][3]


QUICK = {"episodes": 4, "samples": 2, "elites": 2, "iterations": 1, "horizon": 2, "depth": 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--samples", type=int, default=6, help="paper: 300")
    p.add_argument("--elites", type=int, default=2, help="paper: 30")
    p.add_argument("--iterations", type=int, default=2, help="paper: 30")
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--history", type=int, default=3)
    p.add_argument("--frameskip", type=int, default=5)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--slot-dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--max-batch", type=int, default=None, help="rows per predictor forward")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per arm (median)")
    p.add_argument("--quick", action="store_true", help=f"tiny sizes for tests: {QUICK}")
    args = p.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    device = torch.device(args.device)
    model = paper_predictor(args, device)
    x = episodes(args, model, device)
    e = args.episodes
    print(
        f"device {device}, torch threads {torch.get_num_threads()}; {e} episodes; CEM "
        f"{args.samples} samples / {args.elites} elites / {args.iterations} iterations, horizon "
        f"{args.horizon}; predictor N={args.slots} D={args.slot_dim} +proprio/action tokens, "
        f"history {args.history}, depth {args.depth}, width {model.cfg.width}, "
        f"{model.cfg.heads}x{model.cfg.head_dim} heads, MLP {model.cfg.mlp_dim}; median of "
        f"{args.repeats} repeats per arm after a warm-up plan"
    )
    solve(model, {k: v[:1] for k, v in x.items()}, args, device, 0)  # warm-up
    runs: dict[str, list[tuple]] = {"batched": [], "loop": []}
    for _ in range(args.repeats):
        runs["batched"].append(timed(lambda: [solve(model, x, args, device, args.seed)], device))
        runs["loop"].append(
            timed(
                lambda: [
                    solve(model, {k: v[i : i + 1] for k, v in x.items()}, args, device, i)
                    for i in range(e)
                ],
                device,
            )
        )
    arms = {name: median_run(rs) for name, rs in runs.items()}
    (batched_s, batched_cpu, batched, batched_cost) = arms["batched"]
    (loop_s, loop_cpu, loop, loop_cost) = arms["loop"]
    print(
        f"{'arm':<10}{'wall s':>9}{'cpu s':>9}{'wall s/ep':>11}{'forwards':>10}{'rows/fwd':>10}"
        f"{'cost':>9}"
    )
    for name, s, cpu, st, c in (
        ("batched", batched_s, batched_cpu, batched, batched_cost),
        ("loop", loop_s, loop_cpu, loop, loop_cost),
    ):
        rows = st["rows_forwarded"] / st["forward_calls"]
        print(
            f"{name:<10}{s:>9.2f}{cpu:>9.2f}{s / e:>11.4f}{st['forward_calls']:>10}{rows:>10.0f}"
            f"{c.mean().item():>9.4f}"
        )
    print(
        f"speed-up (loop / batched): wall {loop_s / batched_s:.2f}x, "
        f"process CPU time {loop_cpu / batched_cpu:.2f}x (CPU time is the fairer number on a "
        "shared machine; on CUDA it only counts the host)"
    )


if __name__ == "__main__":
    main()
