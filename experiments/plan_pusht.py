"""Plan Push-T episodes from held-out trajectory states (SPEC section 9) and report success.

    python experiments/plan_pusht.py --data data/pusht --model runs/cjepa/checkpoint.pt \
        --episodes 50 --seeds 0,1,2 --json runs/plan/cjepa.json
    python experiments/plan_pusht.py --data data/pusht --model patch:runs/patch/checkpoint.pt \
        --encoder runs/patch_enc/encoder.pt --json runs/plan/patch.json
    python experiments/plan_pusht.py --data data/pusht --model random --json runs/plan/random.json
    python experiments/plan_pusht.py --data data/pusht --model oracle --samples 64 --elites 8 \
        --iterations 3 --json runs/plan/oracle.json

--model: a predictor checkpoint (slots; Hungarian-matched cost), patch:PATH (patch tokens,
compared in place), random, or oracle (CEM on the true simulator). --encoder: the checkpoint
encoder behind the model's slots (omit for oracle slots). Writes the JSON (success_rate,
success_rates, episodes, wall_s, protocol), <stem>_episodes.csv and <stem>_strips.png next to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cjepa.planning.cem import CEMConfig
from cjepa.planning.pusht_eval import SUCCESS, WHEN, PlanProtocol, evaluate, load_data
from cjepa.planning.pusht_planners import build_planner
from cjepa.planning.render import write_outputs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="directory of Push-T episode shards")
    p.add_argument("--model", required=True, help="PATH | patch:PATH | random | replay | oracle")
    p.add_argument("--encoder", default=None, help="checkpoint encoder of the model's slots")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated")
    p.add_argument("--success", choices=SUCCESS, default="block", help="headline definition")
    p.add_argument("--when", choices=WHEN, default="final", help="headline timing")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--elites", type=int, default=30)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--offset", type=int, default=25, help="goal = this many env steps later")
    p.add_argument("--budget", type=int, default=50, help="env steps per episode")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--frameskip", type=int, default=5, help="oracle planner's block size")
    p.add_argument("--strips", type=int, default=4, help="episodes drawn in the PNG (0: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", required=True, help="output JSON path")
    args = p.parse_args(argv)

    cem = CEMConfig(
        samples=args.samples, elites=args.elites, iterations=args.iterations, horizon=args.horizon
    )
    protocol = PlanProtocol(
        episodes=args.episodes,
        seeds=[int(s) for s in args.seeds.split(",")],
        offset=args.offset,
        budget=args.budget,
        success=args.success,
        when=args.when,
        val_fraction=args.val_fraction,
        cem=cem,
    )
    data = load_data(args.data, protocol.val_fraction)
    planner = build_planner(
        args.model, data, protocol, encoder=args.encoder, frameskip=args.frameskip,
        device=args.device,
    )  # fmt: skip
    result = evaluate(planner, data, protocol)
    out = Path(args.json)
    write_outputs(result, out.parent, json_name=out.name, strips=args.strips, stem=out.stem + "_")
    rates = " ".join(f"{k} {v:.3f}" for k, v in result["success_rates"].items())
    print(
        f"{args.model}: success {result['success_rate']:.3f} ({protocol.success}/{protocol.when}) "
        f"over {len(result['episodes'])} episodes | {rates} | start already at goal "
        f"{result['start_already_success']:.2f} | wall {result['wall_s']:.1f} s, planning "
        f"{result['plan_wall_s_per_episode']:.2f} s/episode, predictor calls/episode "
        f"{result['predictor_calls_per_episode']:.0f}"
    )
    print(json.dumps({"json": str(out), "per_seed": result["per_seed"]}))


if __name__ == "__main__":
    main()
