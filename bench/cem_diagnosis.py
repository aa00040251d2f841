"""Why CEM loses to the true actions under the model's own cost: one setting changed at a time.

    OMP_NUM_THREADS=1 python bench/cem_diagnosis.py --model runs/h/wm/checkpoint.pt \
        --data runs/h/pusht --episodes 10 --json runs/h/cem_diagnosis.json
    OMP_NUM_THREADS=1 python bench/cem_diagnosis.py --model ... --data ... \
        --only "base;returns best"

E episodes of the ``cjepa`` protocol (held-out, non-trivial starts; the model's history) are
restored; the cost is the planner's own (``WorldModelPlanner.cost_fn``: predictor rollout,
Hungarian slot MSE + proprio MSE at the last step, candidates clipped to the train range). The
reference is the stored ("true") action sequence from the start to the goal (offset / frameskip
blocks). For each CEM variant the returned plan (as executed: clipped) is scored by the same
cost; printed per variant: the fraction of episodes where the plan scores <= the true sequence,
the median of plan cost / true cost, the lowest cost CEM sampled / true cost, and wall time.
Also printed: where the true sequence ranks among 128 random N(0, 1) candidates.
``--quick``: builds tiny Push-T data and an untrained tiny predictor on the fly and runs 2
episodes of two variants (seconds, for tests: the figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cjepa.evaluation.stage import load_state, model_from_state
from cjepa.planning.cem import CEMConfig, CEMSolver
from cjepa.planning.pusht_eval import PlanProtocol, Rollout, load_data, select_episodes
from cjepa.planning.pusht_planners import world_model_planner

BASE = {"samples": 128, "elites": 16, "iterations": 10, "init_std": 1.0}
# name -> (CEMConfig overrides, options): options "noclip", "scale", "horizon", "raw0"
VARIANTS: dict[str, tuple[dict, dict]] = {
    "base 128/16/10": ({}, {}),
    "budget 64/8/5": ({"samples": 64, "elites": 8, "iterations": 5}, {}),
    "budget 128/16/30": ({"iterations": 30}, {}),
    "budget 300/30/10": ({"samples": 300, "elites": 30}, {}),
    "budget 300/30/30 (paper)": ({"samples": 300, "elites": 30, "iterations": 30}, {}),
    "init_std 0.5": ({"init_std": 0.5}, {}),
    "init_std 2.0": ({"init_std": 2.0}, {}),
    "no clip in the cost": ({}, {"noclip": True}),
    "init mean = raw zero action (no z-score offset)": ({}, {"raw0": True}),
    "min_std 0.1": ({"min_std": 0.1}, {}),
    "min_std 0.3": ({"min_std": 0.3}, {}),
    "momentum 0.3": ({"momentum": 0.3}, {}),
    "momentum 0.7": ({"momentum": 0.7}, {}),
    "elites 8 (of 128)": ({"elites": 8}, {}),
    "elites 32 (of 128)": ({"elites": 32}, {}),
    "returns best": ({"returns": "best"}, {}),
    "returns best, 300/30/30": (
        {"samples": 300, "elites": 30, "iterations": 30, "returns": "best"},
        {},
    ),
    "cost x 100": ({}, {"scale": 100.0}),
    "horizon 3 (vs true, 3 blocks)": ({}, {"horizon": 3}),
    "horizon 4 (vs true, 4 blocks)": ({}, {"horizon": 4}),
    "warm start: true sequence + N(0, 0.5)": ({}, {"warm": 0.5}),
    "data covariance": ({}, {"cov": True}),
    "data covariance, returns best": ({"returns": "best"}, {"cov": True}),
    "data covariance, 128/16/30": ({"iterations": 30}, {"cov": True}),
    "data covariance, 128/16/30, returns best": (
        {"iterations": 30, "returns": "best"},
        {"cov": True},
    ),
    "returns best, 128/16/30": ({"iterations": 30, "returns": "best"}, {}),
}


def block_cholesky(planner, train_actions: np.ndarray) -> torch.Tensor:
    """(f*2, f*2) Cholesky factor of the covariance of normalised train action blocks."""
    f = planner.f
    blocks = planner.normalise(train_actions[: len(train_actions) // f * f]).reshape(-1, 2 * f)
    cov = torch.cov(blocks.T.double()) + 1e-6 * torch.eye(2 * f, dtype=torch.float64)
    return torch.linalg.cholesky(cov).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=False, help="predictor checkpoint (oracle Push-T slots)")
    p.add_argument("--data", required=False, help="Push-T episode shards")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="episode draw and CEM generator seed")
    p.add_argument("--cem-seeds", type=int, default=1, help="CEM runs per variant (seeds 0..)")
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument("--only", default=None, help="name prefixes of variants, separated by ;")
    p.add_argument("--json", default=None)
    p.add_argument("--quick", action="store_true", help="tiny data and model made on the fly")
    args = p.parse_args()
    if not args.quick and not (args.model and args.data):
        p.error("--model and --data are required (or --quick)")
    if not args.quick:
        run(args)
        return
    from _quick_pusht import quick_run

    def set_args(model: Path, data: Path) -> None:
        args.model, args.data = str(model), data
        args.episodes, args.only = 2, args.only or "base;budget 64"

    quick_run(lambda: run(args), set_args)


def run(args: argparse.Namespace) -> None:
    """The measurement itself (module doc) for parsed ``args``."""
    cfg, state = load_state(args.model)
    model = model_from_state(cfg, state, "cpu")
    prot = PlanProtocol.preset(
        "cjepa", episodes=args.episodes, seeds=[args.seed], split=args.split,
        val_fraction=cfg.data.val_fraction,
    )  # fmt: skip
    data = load_data(args.data, prot.val_fraction, prot.split)
    planner = world_model_planner(cfg, model, prot, encoder=None, source=args.model)
    roll = Rollout(select_episodes(data, prot, args.seed), prot)
    planner.begin(roll, args.seed)
    cost = planner.cost_fn(roll)  # WorldModelCost for the start states
    b, f = roll.batch, planner.f
    true = planner.normalise(roll.stored_actions).reshape(b, -1, 2 * f)  # (B, H_true, f*2)
    clipped = lambda c: cost(planner.clip(c))  # noqa: E731  the planner's cost

    with torch.no_grad():
        c_true = clipped(true[:, None])[:, 0]  # (B,)
        g = torch.Generator().manual_seed(args.seed)
        rand = torch.randn(b, 128, *true.shape[1:], generator=g)
        c_rand = clipped(rand)
    rank = (c_rand < c_true[:, None]).sum(1)  # 0 = the true sequence beats all 128
    chol = block_cholesky(planner, data.train_actions)
    print(
        f"{b} episodes; true sequence ranks first among 128 random candidates in "
        f"{int((rank == 0).sum())}/{b}; median true cost {c_true.median():.4f}, median "
        f"random cost {c_rand.median():.4f}, best random / true median "
        f"{(c_rand.min(1).values / c_true).median():.2f}"
    )
    rows = []
    names = [n for n in VARIANTS if args.only is None or n.startswith(tuple(args.only.split(";")))]
    for name in names:
        over, opt = VARIANTS[name]
        kw = {**BASE, **over}
        h = opt.get("horizon", true.shape[1])
        ref = clipped(true[:, None, :h])[:, 0] if h != true.shape[1] else c_true
        base_cost = cost if opt.get("noclip") else clipped
        scale = opt.get("scale", 1.0)
        fn = (lambda c, fn=base_cost, k=scale: k * fn(c)) if scale != 1.0 else base_cost
        # "cov": CEM over y with actions = y @ L^T per block, L L^T = the train split's
        # covariance of normalised action blocks (N(0, 1) in y = the data's block statistics)
        lift = (lambda y: y @ chol.T) if opt.get("cov") else (lambda y: y)
        fn_a = fn
        fn = lambda c, fn_a=fn_a, lift=lift: fn_a(lift(c))  # noqa: E731
        init = None
        if opt.get("raw0"):
            init = planner.normalise(np.zeros((b, h * f, 2))).reshape(b, h, 2 * f)
        if "warm" in opt:
            gw = torch.Generator().manual_seed(args.seed + 1)
            init = true[:, :h] + opt["warm"] * torch.randn(true[:, :h].shape, generator=gw)
        fracs, ratios, best_ratios, walls = [], [], [], []
        for cs in range(args.cem_seeds):
            t0 = time.perf_counter()
            with torch.no_grad():
                r = CEMSolver(CEMConfig(horizon=h, **kw)).solve(
                    fn, b, 2 * f, generator=torch.Generator().manual_seed(cs), init_mean=init
                )
                c_plan = clipped(lift(r.actions)[:, None])[:, 0]
            walls.append(time.perf_counter() - t0)
            fracs.append(float((c_plan <= ref).float().mean()))
            ratios.append(float((c_plan / ref).median()))
            best_ratios.append(float((r.cost / scale / ref).median()))
        row = {
            "variant": name,
            "cem": kw,
            "options": opt,
            "plan_le_true": float(np.mean(fracs)),
            "median_plan_over_true": float(np.mean(ratios)),
            "median_best_sampled_over_true": float(np.mean(best_ratios)),
            "wall_s": float(np.mean(walls)),
        }
        rows.append(row)
        print(
            f"{name:48s} plan <= true {row['plan_le_true']:.2f} | plan/true "
            f"{row['median_plan_over_true']:.3f} | best sampled/true "
            f"{row['median_best_sampled_over_true']:.3f} | {row['wall_s']:.1f} s",
            flush=True,
        )
    roll.close()
    if args.json:
        out = {
            "model": args.model,
            "episodes": [[i, s] for i, s in zip(roll.ids, roll.starts, strict=True)],
            "true_rank_among_128_random": rank.tolist(),
            "true_cost": c_true.tolist(),
            "rows": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
