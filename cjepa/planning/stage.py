"""The Push-T planning evaluation stage: a trained predictor planned with CEM + MPC under the
DINO-WM protocol of ``cjepa.planning.pusht_eval``, as one stage of ``cjepa.evaluation.stage``."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from cjepa.config import ExperimentConfig
from cjepa.evaluation.stage import StageContext, check_options, model_from_state
from cjepa.planning.cem import CEMConfig
from cjepa.planning.pusht_eval import evaluate, load_data, protocol_from_options
from cjepa.planning.pusht_planners import world_model_planner
from cjepa.planning.render import write_outputs

#: ``protocol`` names a preset (``PROTOCOLS``); every other option that is given overrides that
#: preset (protocol fields, or CEM fields such as samples / elites / iterations / horizon) and
#: is recorded as an override. The None values below only declare the names: an option left out
#: keeps the preset's value, an option given as null sets None (e.g. history: the model's T_h).
OVERRIDABLE = (
    "episodes", "seeds", "split", "offset", "budget", "success", "when", "min_start", "history",
    "frameskip", "match", "execute", "clip_actions", "nontrivial", "samples", "elites",
    "iterations", "horizon", "init_std", "min_std", "momentum", "returns",
)  # fmt: skip
#: ``oracle``: CEM overrides (samples / elites / iterations ...) for the oracle control only
#: (``planning_controls``); simulating every candidate costs far more than a model rollout.
STAGE_OPTIONS = {"protocol": "cjepa", "strips": 4, "oracle": None, **dict.fromkeys(OVERRIDABLE)}
CEM_FIELDS = tuple(f.name for f in fields(CEMConfig))


def _protocol(cfg: ExperimentConfig, ctx: StageContext):
    """The options (checked), the protocol they name and its split's episodes."""
    opt = check_options("planning", ctx.options, STAGE_OPTIONS)
    data_dir = ctx.episode_dir or cfg.data.episode_dir
    if data_dir is None:
        raise ValueError("planning stage: no episode_dir in the context or data.episode_dir")
    given = {k: opt[k] for k in ctx.options if k in OVERRIDABLE}
    if "seeds" in given:
        given["seeds"] = list(given["seeds"])
    protocol = protocol_from_options(
        opt["protocol"], {**given, "val_fraction": cfg.data.val_fraction}
    )
    return opt, protocol, load_data(data_dir, protocol.val_fraction, protocol.split)


def _metrics(result: dict[str, Any], prefix: str = "plan/") -> dict[str, float]:
    out = {
        prefix + "success_rate": result["success_rate"],
        prefix + "wall_s": result["wall_s"],
        prefix + "plan_wall_s_per_episode": result["plan_wall_s_per_episode"],
        prefix + "predictor_calls_per_episode": result["predictor_calls_per_episode"],
    }
    for key, rate in result["success_rates"].items():
        out[prefix + "success_" + key.replace("/", "_")] = rate
    return out


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
    opt, protocol, data = _protocol(cfg, ctx)
    model = model_from_state(cfg, state, ctx.device)
    planner = world_model_planner(
        cfg, model, protocol, encoder=ctx.encoder, source="stage", device=ctx.device
    )
    result = evaluate(planner, data, protocol)
    write_outputs(result, Path(ctx.out_dir), strips=opt["strips"])
    return _metrics(result)


def planning_controls(cfg: ExperimentConfig, ctx: StageContext) -> dict[str, float]:
    """The planning stage's floor and ceiling on the trials' episodes and protocol:
    ``control/random/plan/...`` (uniform random actions) and ``control/oracle/plan/...`` (CEM on
    the simulator, with the ``oracle`` option's CEM overrides). Files go to
    ``ctx.out_dir/<random|oracle>/planning/``."""
    from cjepa.planning.pusht_planners import build_planner

    oracle = dict(check_options("planning", ctx.options, STAGE_OPTIONS)["oracle"] or {})
    unknown = sorted(set(oracle) - set(CEM_FIELDS))
    if unknown:  # before any data is read
        raise ValueError(f"planning option oracle: unknown CEM field(s) {unknown}; "
                         f"known: {list(CEM_FIELDS)}")  # fmt: skip
    opt, protocol, data = _protocol(cfg, ctx)  # one load: the episodes depend on no CEM budget
    out: dict[str, float] = {}
    for name in ("random", "oracle"):
        if name == "oracle":  # its own CEM budget; the model's action block, as trials plan it
            protocol = replace(
                protocol,
                cem=replace(protocol.cem, **oracle),
                frameskip=protocol.frameskip or cfg.data.frameskip,
            )
        result = evaluate(build_planner(name, data, protocol, device="cpu"), data, protocol)
        sub = Path(ctx.out_dir) / name / "planning"
        sub.mkdir(parents=True, exist_ok=True)
        write_outputs(result, sub, strips=opt["strips"])
        out.update(_metrics(result, f"control/{name}/plan/"))
    return out
