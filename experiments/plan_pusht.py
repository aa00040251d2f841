"""Plan Push-T episodes from stored trajectory states (SPEC section 9) and report success.

    python experiments/plan_pusht.py --data data/pusht --model runs/cjepa/checkpoint.pt \
        --protocol official --json runs/plan/cjepa_official.json
    python experiments/plan_pusht.py --data data/pusht --model runs/cjepa/checkpoint.pt \
        --episodes 50 --seeds 0,1,2 --json runs/plan/cjepa.json
    python experiments/plan_pusht.py --data data/pusht --model patch:runs/patch/checkpoint.pt \
        --encoder runs/patch_enc/encoder.pt --json runs/plan/patch.json
    python experiments/plan_pusht.py --data data/pusht --model random --json runs/plan/random.json
    python experiments/plan_pusht.py --data data/pusht --model oracle --protocol official \
        --episodes 20 --samples 64 --elites 8 --iterations 5 --json runs/plan/oracle.json

--protocol: the preset (``cjepa.planning.pusht_eval.PROTOCOLS``): ``official`` (the public code's:
training-split starts, 1-frame history, public success at any step) or ``cjepa`` (held-out
non-trivial starts, the model's history, block success at the final step). Any other flag given
overrides the preset and is recorded under protocol.overrides in the JSON.
--model: a predictor checkpoint (slots; Hungarian-matched cost), patch:PATH (patch tokens,
compared in place), random, replay, or oracle (CEM on the true simulator). --encoder: the
checkpoint encoder behind the model's slots (omit for oracle slots). Writes the JSON
(success_rate, success_rates, episodes, wall_s, protocol), <stem>_episodes.csv and
<stem>_strips.png next to it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cjepa import cli
from cjepa.planning.cem import RETURNS
from cjepa.planning.pusht_eval import (
    MATCHES,
    PROTOCOLS,
    SPLITS,
    SUCCESS,
    WHEN,
    evaluate,
    load_data,
    protocol_from_options,
)
from cjepa.planning.pusht_planners import build_planner
from cjepa.planning.render import write_outputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="directory of Push-T episode shards")
    p.add_argument("--model", required=True, help="PATH | patch:PATH | random | replay | oracle")
    p.add_argument("--encoder", default=None, help="checkpoint encoder of the model's slots")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cjepa")
    p.add_argument("--strips", type=int, default=4, help="episodes drawn in the PNG (0: none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", required=True, help="output JSON path")
    # Overrides of the preset: absent unless given (argparse.SUPPRESS).
    o = p.add_argument_group("protocol overrides (default: the preset's)")
    add = lambda name, **kw: o.add_argument(name, default=argparse.SUPPRESS, **kw)  # noqa: E731
    for name in ("episodes", "samples", "elites", "iterations", "horizon", "min-start"):
        add(f"--{name}", type=int)
    for name in ("init-std", "min-std", "momentum", "val-fraction"):
        add(f"--{name}", type=float)
    add("--seeds", help="comma-separated")
    add("--split", choices=SPLITS, help="where starts and goals come from")
    add("--success", choices=SUCCESS, help="headline definition")
    add("--when", choices=WHEN, help="headline timing")
    add("--returns", choices=RETURNS, help="CEM plan: final mean (paper) or best candidate")
    add("--offset", type=int, help="goal = this many env steps later")
    add("--budget", type=int, help="env steps per episode")
    add("--history", type=int, help="frames fed to the model (0: the model's T_h)")
    add("--frameskip", type=int, help="env steps per action block (0: the model's)")
    add("--match", choices=MATCHES)
    add("--execute", type=int, help="blocks executed per plan (0: the whole horizon)")
    add("--nontrivial", type=int, choices=(0, 1))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = vars(parse_args(argv))
    fixed = {"data", "model", "encoder", "protocol", "strips", "device", "json"}
    given = {k: v for k, v in args.items() if k not in fixed}
    if "seeds" in given:
        given["seeds"] = [int(s) for s in given["seeds"].split(",")]
    for key in ("history", "frameskip", "execute"):  # 0 on the command line means None
        if given.get(key) == 0:
            given[key] = None
    if "nontrivial" in given:
        given["nontrivial"] = bool(given["nontrivial"])
    protocol = protocol_from_options(args["protocol"], given)
    out = Path(args["json"])
    # Before any planning: an output folder that cannot be written would lose every result.
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"--json {out}: folder {out.parent} is not writable")
    data = load_data(args["data"], protocol.val_fraction, protocol.split)
    planner = build_planner(
        args["model"], data, protocol, encoder=args["encoder"], device=args["device"]
    )
    result = evaluate(planner, data, protocol)
    stem = out.stem + "_"
    write_outputs(result, out.parent, json_name=out.name, strips=args["strips"], stem=stem)
    rates = " ".join(f"{k} {v:.3f}" for k, v in result["success_rates"].items())
    print(
        f"{args['model']}: success {result['success_rate']:.3f} ({protocol.success}/"
        f"{protocol.when}, protocol {protocol.name}, overrides {protocol.overrides()}) over "
        f"{len(result['episodes'])} episodes | {rates} | start already at goal "
        f"{result['start_already_success']:.2f} | wall {result['wall_s']:.1f} s, planning "
        f"{result['plan_wall_s_per_episode']:.2f} s/episode, predictor calls/episode "
        f"{result['predictor_calls_per_episode']:.0f}"
    )
    print(json.dumps({"json": str(out), "per_seed": result["per_seed"]}))


if __name__ == "__main__":
    cli.run(main)
