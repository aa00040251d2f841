"""The Push-T planning evaluation stage: a trained predictor planned with CEM + MPC under the
DINO-WM protocol of ``cjepa.planning.pusht_eval``, as one stage of ``cjepa.evaluation.stage``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cjepa.config import ExperimentConfig
from cjepa.evaluation.stage import StageContext, check_options, model_from_state
from cjepa.planning.cem import CEMConfig
from cjepa.planning.pusht_eval import PlanProtocol, evaluate, load_data
from cjepa.planning.pusht_planners import world_model_planner
from cjepa.planning.render import write_outputs

STAGE_OPTIONS = {
    "episodes": 50,
    "seeds": [0, 1, 2],
    "samples": 300,
    "iterations": 30,
    "elites": 30,
    "success": "block",
    "when": "final",
    "offset": 25,
    "budget": 50,
    "strips": 4,
}


def planning_stage(
    cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
) -> dict[str, float]:
    """Evaluation stage (``cjepa.evaluation.stage``): plan Push-T with the trained predictor.

    Writes ``plan.json``, ``episodes.csv`` and ``strips.png`` to ``ctx.out_dir``; returns
    ``plan/success_rate`` (the headline), ``plan/success_<def>_<when>``, ``plan/wall_s``,
    ``plan/plan_wall_s_per_episode`` and ``plan/predictor_calls_per_episode``.
    """
    if cfg.data.world != "pusht":
        raise ValueError(
            f"the planning stage needs a Push-T model, got data.world={cfg.data.world!r}"
        )
    opt = check_options("planning", ctx.options, STAGE_OPTIONS)
    data_dir = ctx.episode_dir or cfg.data.episode_dir
    if data_dir is None:
        raise ValueError("planning stage: no episode_dir in the context or data.episode_dir")
    cem = CEMConfig(samples=opt["samples"], elites=opt["elites"], iterations=opt["iterations"])
    protocol = PlanProtocol(
        episodes=opt["episodes"],
        seeds=list(opt["seeds"]),
        cem=cem,
        offset=opt["offset"],
        budget=opt["budget"],
        success=opt["success"],
        when=opt["when"],
        val_fraction=cfg.data.val_fraction,
    )
    model = model_from_state(cfg, state, ctx.device)
    planner = world_model_planner(
        cfg, model, protocol, encoder=ctx.encoder, source="stage", device=ctx.device
    )
    result = evaluate(planner, load_data(data_dir, protocol.val_fraction), protocol)
    write_outputs(result, Path(ctx.out_dir), strips=opt["strips"])
    out = {
        "plan/success_rate": result["success_rate"],
        "plan/wall_s": result["wall_s"],
        "plan/plan_wall_s_per_episode": result["plan_wall_s_per_episode"],
        "plan/predictor_calls_per_episode": result["predictor_calls_per_episode"],
    }
    for key, rate in result["success_rates"].items():
        out["plan/success_" + key.replace("/", "_")] = rate
    return out
