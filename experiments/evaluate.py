"""Run evaluation stages on a saved predictor checkpoint: no sweep, no Ray.

    python experiments/evaluate.py --checkpoint runs/demo/checkpoint.pt --stage final_validation
    python experiments/evaluate.py --checkpoint P.pt --slot-dir S --episode-dir D \
        --encoder oracle:collide --preset experiments/configs/ablate/smoke.yaml \
        --set causal.max_episodes=4 --json runs/eval/p.json --mlflow

--stage: a ``cjepa.evaluation.stage.STAGES`` name (repeat); --preset: the stages an ablation
preset gives the checkpoint's world; --set STAGE.FIELD=VALUE: a stage option. Metrics go to
stdout, --json, and with --mlflow a new run (options, stage files, metrics.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from cjepa import cli
from cjepa.config import flatten, parse_yaml
from cjepa.evaluation import stage as st
from cjepa.metrics import describe


def preset_stages(path: Path, world: str) -> dict[str, dict | None]:
    """``stages.<world>`` of an ablation preset over its ``base:`` chain's."""
    data = parse_yaml(path.read_text(), str(path)) or {}
    base = preset_stages(path.parent / data["base"], world) if data.get("base") else {}
    return {**base, **((data.get("stages") or {}).get(world) or {})}


def stage_options(args: argparse.Namespace, world: str) -> dict[str, dict]:
    """The preset's stages (none listed: ``final_validation``, as the sweep), --stage, --set."""
    stages = {}
    if args.preset:
        chosen = preset_stages(Path(args.preset), world)
        stages = {k: v for k, v in chosen.items() if v is not None} or {"final_validation": {}}
    stages = st.set_options({**stages, **{n: stages.get(n, {}) for n in args.stage}}, args.set)
    if not stages:
        raise ValueError("no stage to run: give --stage NAME (repeat) or --preset YAML")
    return stages


def log_mlflow(args, cfg, stages: dict, metrics: dict[str, float], out: Path) -> str:
    from cjepa.distributed import tracking

    uri = tracking.resolve_uri(args.tracking_uri)
    mlf = tracking.client(uri)
    tags = {"cjepa.role": "evaluate", "cjepa.checkpoint": str(args.checkpoint)}
    exp_id = tracking.get_or_create_experiment(mlf, args.experiment)
    run_id = mlf.create_run(exp_id, tags=tags, run_name=Path(args.checkpoint).stem).info.run_id
    run = tracking.MlflowTracker(uri, run_id)
    run.log_params(flatten({**cfg.to_dict(), "stages": stages}))
    run.log_metrics(metrics, 0)
    run.log_text(json.dumps({"metrics": describe(metrics, metrics)}), "metrics.json")
    run.log_artifacts(out, "eval")
    tracking.end_run(mlf, run_id)
    return run_id


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="predictor.pt or a training checkpoint")
    p.add_argument("--slot-dir", help="slot shards (default: the config's data.slot_dir)")
    p.add_argument("--episode-dir", help="episode shards behind the slots")
    p.add_argument("--encoder", help="encoder spec behind the slots, e.g. oracle:collide")
    p.add_argument("--stage", action="append", default=[], help="stage name (repeat)")
    p.add_argument("--preset", help="an ablation preset whose stages for the world to run")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.FIELD=VALUE")
    p.add_argument("--out", type=Path, help="stage files (default: runs/evaluate/<stem>)")
    p.add_argument("--json", type=Path, help="also write the metrics here")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage's random draws")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mlflow", action="store_true", help="log to MLflow (a new run)")
    p.add_argument("--experiment", default="cjepa-evaluate", help="MLflow experiment")
    p.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or ./mlruns.db")
    args = p.parse_args()
    cfg, state = st.load_state(args.checkpoint)
    if args.slot_dir:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, slot_dir=args.slot_dir))
    stages = stage_options(args, cfg.data.world)
    out = args.out or Path("runs/evaluate") / Path(args.checkpoint).stem
    out.mkdir(parents=True, exist_ok=True)
    episodes = args.episode_dir or cfg.data.episode_dir
    ctx = st.StageContext(out, encoder=args.encoder, episode_dir=episodes, seed=args.seed)
    metrics = st.run_stages(cfg, state, stages, dataclasses.replace(ctx, device=args.device))
    print("\n".join(f"{name:<44} {value:.6g}" for name, value in sorted(metrics.items())))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"checkpoint": str(args.checkpoint), "stages": stages, "metrics": metrics}
        args.json.write_text(json.dumps(doc, indent=1))
    if args.mlflow:
        print(f"logged to MLflow run {log_mlflow(args, cfg, stages, metrics, out)}")


if __name__ == "__main__":
    cli.run(main)
