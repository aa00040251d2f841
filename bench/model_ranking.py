"""Is a Push-T world model a good ranker of action plans? Its cost against the simulator's.

    OMP_NUM_THREADS=1 python bench/model_ranking.py --model runs/h/wm/checkpoint.pt \
        --data runs/h/pusht --episodes 10 --json runs/h/ranking.json

Planning picks the candidate the model scores best, so what matters is how the model's cost
orders candidates, not its one-step error. For E starts of the ``cjepa`` protocol (held out,
non-trivial) this scores the same candidate plans (H blocks to the goal step) two ways: the
planner's own cost (predictor rollout, Hungarian slot MSE + proprio at the last step) and the
oracle's (every candidate executed in an exact copy of the env, ``oracle_cost`` for the success
definition). Candidates per episode: the stored ("true") sequence, ``--random`` draws of
N(0, 1) in the planner's z-scored action space, and ``--local`` draws of true + N(0, 0.5).

Printed per model, over episodes (median): Spearman rank correlation of the two costs, the
oracle cost of the model's pick / the best oracle cost among the candidates, and the share of
episodes where the model's pick passes the success test at the plan's last step, beside the
same share for the oracle's own pick (the ceiling) and for a random candidate (the floor).
``--quick``: builds tiny Push-T data and an untrained tiny predictor on the fly (2 episodes,
16 + 8 candidates; seconds, for tests: the figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cjepa.evaluation.stage import load_state, model_from_state
from cjepa.planning.cost import slot_goal_cost
from cjepa.planning.pusht_eval import PlanProtocol, Rollout, load_data, select_episodes
from cjepa.planning.pusht_planners import OraclePlanner, oracle_cost, world_model_planner
from cjepa.worlds import pusht


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=False, nargs="+", help="predictor checkpoint(s)")
    p.add_argument("--data", required=False, help="Push-T episode shards")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random", type=int, default=96, help="N(0, 1) candidates per episode")
    p.add_argument("--local", type=int, default=32, help="true + N(0, 0.5) candidates")
    p.add_argument("--success", default="block", choices=("block", "public"))
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
        args.model, args.data = [str(model)], data
        args.episodes, args.random, args.local = 2, 16, 8

    quick_run(lambda: run(args), set_args)


def run(args: argparse.Namespace) -> None:
    """The measurement itself (module doc) for parsed ``args``."""
    torch.set_num_threads(1)

    rows = []
    for path in args.model:
        cfg, state = load_state(path)
        model = model_from_state(cfg, state, "cpu")
        prot = PlanProtocol.preset(
            "cjepa", episodes=args.episodes, seeds=[args.seed], success=args.success,
            val_fraction=cfg.data.val_fraction,
        )  # fmt: skip
        data = load_data(args.data, prot.val_fraction, prot.split)
        planner = world_model_planner(cfg, model, prot, encoder=None, source=path)
        oracle = OraclePlanner(planner.stats, prot, planner.f)
        roll = Rollout(select_episodes(data, prot, args.seed), prot)
        planner.begin(roll, args.seed)
        oracle.begin(roll, args.seed)
        b, f = roll.batch, planner.f
        true = planner.normalise(roll.stored_actions).reshape(b, -1, 2 * f)  # (B, H, f*2)
        g = torch.Generator().manual_seed(args.seed)
        cands = torch.cat(
            [
                true[:, None],
                torch.randn(b, args.random, *true.shape[1:], generator=g),
                true[:, None] + 0.5 * torch.randn(b, args.local, *true.shape[1:], generator=g),
            ],
            1,
        )
        cands = planner.clip(cands)
        cost = planner.cost_fn(roll)  # WorldModelCost: the planner's own cost
        with torch.no_grad():
            c_model = cost(cands).double().numpy()  # (B, S)
        end = oracle.simulate([pusht.clone_physics(e) for e in roll.envs], cands)  # (B, S, 7)
        c_true = oracle_cost(end, roll.goals[:, None], args.success)
        # the planner's cost on the TRUE end states (oracle slots of the simulated states): the
        # best any model could do with this cost
        s = cands.shape[1]
        true_slots = planner.observe(
            end.reshape(b * s, 1, 7), np.zeros((b * s, 1, 1, 1, 3), np.uint8),
            [g for g in roll.goal_pose for _ in range(s)],
        )[:, 0].reshape(b, s, *planner.goal.shape[1:])  # fmt: skip
        # proprio as the cost compares it (raw or embedded; only when the model predicts it)
        p_end = planner.model.proprio_space(planner._proprio(end)) if cost.uses_proprio else None
        with torch.no_grad():
            c_slots = slot_goal_cost(
                true_slots.float(), cost.goal_slots, p_end, cost.goal_proprio,
                match=cost.match, proprio_weight=cost.proprio_weight, solver=cost.solver,
            ).double().numpy()  # fmt: skip
        roll.close()
        pick = c_model.argmin(1)
        best = c_true.min(1)
        rho = [spearman(c_model[i], c_true[i]) for i in range(b)]
        regret = [c_true[i, pick[i]] / max(best[i], 1e-9) for i in range(b)]
        passes = lambda c: float(np.mean(c < 1.0))  # noqa: E731  cost < 1 implies the success test
        row = {
            "model": path,
            "spearman_median": float(np.median(rho)),
            "pick_over_best_median": float(np.median(regret)),
            "pick_true_cost_median": float(np.median(c_true[np.arange(b), pick])),
            "pick_passes": passes(c_true[np.arange(b), pick]),
            "oracle_pick_passes": passes(best),
            "random_candidate_passes": passes(c_true[:, 1 : 1 + args.random]),
            "true_sequence_passes": passes(c_true[:, 0]),
            "true_sequence_model_rank": float(np.median((c_model < c_model[:, :1]).sum(1))),
        }
        # the same among the random draws only (what CEM's first iteration sees)
        r = slice(1, 1 + args.random)
        rpick = c_model[:, r].argmin(1)
        rtrue = c_true[:, r]
        row["random_only"] = {
            "spearman_median": float(
                np.median([spearman(c_model[i, r], rtrue[i]) for i in range(b)])
            ),
            "pick_passes": passes(rtrue[np.arange(b), rpick]),
            "oracle_pick_passes": passes(rtrue.min(1)),
            "pick_true_cost_median": float(np.median(rtrue[np.arange(b), rpick])),
            "oracle_pick_true_cost_median": float(np.median(rtrue.min(1))),
            "random_true_cost_median": float(np.median(rtrue)),
        }
        row["true_slots_random_only"] = {
            "spearman_median": float(
                np.median([spearman(c_slots[i, r], rtrue[i]) for i in range(b)])
            ),
            "pick_passes": passes(rtrue[np.arange(b), c_slots[:, r].argmin(1)]),
        }
        rows.append(row)
        ro = row["random_only"]
        print(
            f"{path}\n  all candidates: spearman {row['spearman_median']:.2f}, pick passes "
            f"{row['pick_passes']:.2f} (true sequence {row['true_sequence_passes']:.2f})\n"
            f"  random draws only: spearman {ro['spearman_median']:.2f}, oracle cost of the "
            f"pick {ro['pick_true_cost_median']:.1f} (oracle's pick "
            f"{ro['oracle_pick_true_cost_median']:.1f}, median draw "
            f"{ro['random_true_cost_median']:.1f}), pick passes {ro['pick_passes']:.2f} "
            f"(oracle's pick {ro['oracle_pick_passes']:.2f}, a random draw "
            f"{row['random_candidate_passes']:.2f})\n"
            f"  the same cost on the true end states: spearman "
            f"{row['true_slots_random_only']['spearman_median']:.2f}, pick passes "
            f"{row['true_slots_random_only']['pick_passes']:.2f}",
            flush=True,
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
