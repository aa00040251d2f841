"""The Push-T planning evaluation stage: a trained predictor planned with CEM + MPC under the
DINO-WM protocol of ``cjepa.planning.pusht_eval``, as one stage of ``cjepa.evaluation.stage``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from cjepa.config import ExperimentConfig
from cjepa.evaluation.stage import (
    StageContext,
    StageSpec,
    check_at_least,
    model_from_state,
    parse_options,
)
from cjepa.metrics import MetricFamily, MetricInfo, Reference
from cjepa.planning.cem import CEMConfig
from cjepa.planning.pusht_eval import evaluate, load_data, protocol_from_options
from cjepa.planning.pusht_planners import world_model_planner
from cjepa.planning.render import write_outputs


class _Unset:
    def __repr__(self) -> str:
        return "<preset>"


#: The default of every protocol or CEM override: "not given" (the preset's value), which a
#: given null (None, e.g. history: the model's T_h) must not be mistaken for.
UNSET: Any = _Unset()


@dataclass
class PlanningOptions:
    """``protocol`` names a preset (``PROTOCOLS``); every other field that is given overrides
    that preset (protocol fields, or CEM fields such as samples / elites / iterations / horizon)
    and is recorded as an override. ``oracle``: CEM overrides for the oracle control only
    (``planning_controls``); simulating every candidate costs far more than a model rollout."""

    protocol: str = "cjepa"
    strips: int = 4
    oracle: dict[str, Any] | None = None
    videos: int = 0  # episodes drawn as GIFs (start | executed plan | goal), see render.py
    episodes: int = UNSET
    seeds: list[int] = UNSET
    split: str = UNSET
    offset: int = UNSET
    budget: int = UNSET
    success: str = UNSET
    when: str = UNSET
    min_start: int = UNSET
    history: int | None = UNSET
    frameskip: int | None = UNSET
    match: str = UNSET
    execute: int | None = UNSET
    clip_actions: bool = UNSET
    nontrivial: bool = UNSET
    samples: int = UNSET
    elites: int = UNSET
    iterations: int = UNSET
    horizon: int = UNSET
    init_std: float = UNSET
    min_std: float = UNSET
    momentum: float = UNSET
    returns: str = UNSET

    def __post_init__(self) -> None:
        if self.strips < 0:
            raise ValueError(f"stages.planning.strips must be >= 0, got {self.strips!r}")
        check_at_least("stages.planning.videos", self.videos, 0)
        unknown = sorted(set(self.oracle or {}) - set(CEM_FIELDS))
        if unknown:  # before any data is read
            raise ValueError(f"stages.planning.oracle: unknown CEM field(s) {unknown}; "
                             f"known: {list(CEM_FIELDS)}")  # fmt: skip

    def overrides(self) -> dict[str, Any]:
        """The protocol and CEM fields that were given."""
        return {k: getattr(self, k) for k in OVERRIDABLE if getattr(self, k) is not UNSET}


CEM_FIELDS = tuple(f.name for f in fields(CEMConfig))
#: The fields that override the protocol preset (every field but the stage's own settings).
OVERRIDABLE = tuple(
    f.name
    for f in fields(PlanningOptions)
    if f.name not in ("protocol", "strips", "oracle", "videos")
)


def _protocol(cfg: ExperimentConfig, ctx: StageContext):
    """The options (checked), the protocol they name and its split's episodes."""
    opt = parse_options("planning", PlanningOptions, ctx.options)
    data_dir = ctx.episode_dir or cfg.data.episode_dir
    if data_dir is None:
        raise ValueError("planning stage: no episode_dir in the context or data.episode_dir")
    given = {**opt.overrides(), "val_fraction": cfg.data.val_fraction}
    protocol = protocol_from_options(opt.protocol, given)
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

    Writes ``plan.json``, ``episodes.csv``, ``strips.png`` and ``videos`` episode GIFs
    (``videos/plan_*.gif``) to ``ctx.out_dir``; returns
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
    write_outputs(result, Path(ctx.out_dir), strips=opt.strips, videos=opt.videos)
    return _metrics(result)


def planning_controls(cfg: ExperimentConfig, ctx: StageContext) -> dict[str, float]:
    """The planning stage's floor and ceiling on the trials' episodes and protocol:
    ``control/random/plan/...`` (uniform random actions) and ``control/oracle/plan/...`` (CEM on
    the simulator, with the ``oracle`` option's CEM overrides). Files go to
    ``ctx.out_dir/<random|oracle>/planning/``."""
    from cjepa.planning.pusht_planners import build_planner

    oracle = dict(parse_options("planning", PlanningOptions, ctx.options).oracle or {})
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
        write_outputs(result, sub, strips=opt.strips, videos=opt.videos)
        out.update(_metrics(result, f"control/{name}/plan/"))
    return out


def _plan(name: str, what: str) -> MetricInfo:
    return MetricInfo(
        "max",
        (
            Reference("random actions", "floor", f"control/random/plan/{name}"),
            Reference("oracle CEM on the simulator", "ceiling", f"control/oracle/plan/{name}"),
        ),
        f"Push-T, {what}",
    )


PLAN_METRICS = MetricFamily(
    "plan",
    metrics={
        "plan/success_rate": _plan("success_rate", "the planning protocol's headline success"),
        **{
            f"plan/success_{d}_{w}": _plan(f"success_{d}_{w}", f"{d} success test, {w}")
            for d in ("block", "public")
            for w in ("final", "any_step")
        },
    },
    patterns=(
        ("plan/*success*", "max"),
        ("plan/*wall_s*", "min"),
        ("plan/predictor_calls*", "min"),
    ),
    headline=("plan/success_rate", "plan/plan_wall_s_per_episode"),
    what="Push-T planning with CEM + MPC on the trained predictor",
)
SPEC = StageSpec(planning_stage, PlanningOptions, (PLAN_METRICS,))
