"""What an evaluation stage receives after training, how it rebuilds the trained model, and the
registry of stages.

A stage is a function ``(cfg, state, ctx) -> dict[str, float]`` run once per trained model (in a
sweep trial after training, or from ``experiments/evaluate.py``). ``state`` is the training state
(``{"model": state_dict, "history": [rows], "step": int}``); ``ctx`` says where the data lives,
which encoder produced the slots, the stage's options, and a directory whose files become the
run's artifacts. Stages import torch only (no Ray, no MLflow).

Each stage is registered as a :class:`StageSpec`: the function, a dataclass of its options
(validated like the experiment config: ``stages.<stage>.<field>`` in every error) and its metric
families with their directions and references (``cjepa.metrics.MetricFamily``), which the sweep
records on its parent run and the analysis reads back.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cjepa.config import ExperimentConfig, from_dict, parse_yaml
from cjepa.metrics import MetricFamily, MetricInfo, Reference
from cjepa.registry import load_entry

if TYPE_CHECKING:
    import torch

    from cjepa.predictor import SlotPredictor


@dataclass
class StageContext:
    """Everything a stage needs beyond the config and the trained weights.

    Attributes:
        out_dir: an existing directory; every file a stage writes here is logged as an artifact
            of the run (under ``eval/``).
        options: the stage's settings: the preset's mapping (``stages: {name: {...}}``) or an
            instance of the stage's options class (:func:`parse_options` accepts both).
        encoder: the encoder spec that produced ``cfg.data.slot_dir`` (``"oracle:collide"``, a
            checkpoint path, ...), so a stage can encode re-simulated scenes the same way.
        episode_dir: the episode shards behind the slots (frames, states, questions).
        seed: seed for every random draw the stage makes.
        device: where to run the model.
    """

    out_dir: Path
    options: Any = field(default_factory=dict)
    encoder: str | None = None
    episode_dir: str | None = None
    seed: int = 0
    device: str = "cpu"


class Stage(Protocol):
    def __call__(
        self, cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
    ) -> dict[str, float]: ...


def model_from_state(
    cfg: ExperimentConfig, state: dict[str, Any], device: str | torch.device = "cpu"
) -> SlotPredictor:
    """The trained predictor of ``state`` in eval mode on ``device``; a state
    ``{"baseline": kind}`` gives that trivial predictor instead (``cjepa.evaluation.baselines``)."""
    from cjepa.train import build_predictor

    if "baseline" in state:
        from cjepa.evaluation.baselines import build_baseline

        return build_baseline(state["baseline"], cfg).to(device)
    model = build_predictor(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # torch lists every tensor; name the first and the config
        first = next((ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()), str(err))
        raise ValueError(
            f"checkpoint weights do not fit the predictor its config describes (predictor "
            f"width {cfg.predictor.width}, depth {cfg.predictor.depth}, slot_dim "
            f"{cfg.data.slot_dim}): {first[:300]}"
        ) from err
    return model.to(device).eval()


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """ValueError ``<name> must be one of [...], got <value>`` unless ``value`` is a choice."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_at_least(name: str, value: int | float, low: int | float) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def parse_options(stage: str, cls: type, options: Any) -> Any:
    """``options`` (a mapping, None or already a ``cls``) as the dataclass ``cls``: unknown keys
    raise a ValueError listing the known ones, values are coerced and checked as the experiment
    config's are (``cjepa.config.from_dict``), every error naming ``stages.<stage>.<field>``."""
    if isinstance(options, cls):
        return options
    options = dict(options or {})
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"stages.{stage}: unknown option(s) {unknown}; known: {known}")
    return from_dict(cls, options, prefix=f"stages.{stage}")


def load_state(path: str | Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(config, state) from a predictor checkpoint: a sweep trial's ``checkpoint/predictor.pt``
    (``{"model", "config", "step"}``) or a ``train_world_model.py`` checkpoint."""
    from cjepa.train import load_checkpoint

    payload = load_checkpoint(path)
    for key in ("model", "config"):
        if key not in payload:
            raise ValueError(f"{path}: not a predictor checkpoint (no {key!r} entry)")
    cfg = from_dict(ExperimentConfig, payload["config"])
    history = payload.get("history", [])
    return cfg, {"model": payload["model"], "history": history, "step": int(payload.get("step", 0))}


@dataclass
class FinalValidationOptions:
    """``max_windows``: val windows scored by the dynamics metrics (0: all). ``videos``: val
    episodes rendered as rollout GIFs (``cjepa.evaluation.videos``; 0: none). ``windows``:
    ``episodes`` (the val split of ``ctx.episode_dir``) or ``slot_dir`` (every episode of
    ``data.slot_dir``, no episode shards: released slots, ``cjepa.evaluation.slot_dir``)."""

    max_windows: int = 0
    batch_size: int = 512
    videos: int = 0
    windows: str = "episodes"

    def __post_init__(self) -> None:
        check_choice("stages.final_validation.windows", self.windows, ["episodes", "slot_dir"])
        if self.windows == "slot_dir" and self.videos:
            raise ValueError("stages.final_validation.videos needs windows=episodes")
        check_at_least("stages.final_validation.max_windows", self.max_windows, 0)
        check_at_least("stages.final_validation.batch_size", self.batch_size, 1)
        check_at_least("stages.final_validation.videos", self.videos, 0)


def final_validation(
    cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
) -> dict[str, float]:
    """The last validation row of training (``final/future_visible``, ``final/history``, ...)
    plus, when the episodes are known (``ctx.episode_dir``) and the world is collide or clevrer
    (imported; ``rollouts.LABELLED_WORLDS``), the dynamics metrics of
    ``cjepa.evaluation.dynamics`` on every val window: ``final/future_*`` with the
    ``final/copy_last_*`` and ``final/linear_*`` baselines on the same cells (present,
    interaction, free, all), and (collide only) ``videos/rollout_<episode>.gif`` for the first
    ``videos`` val episodes. Options: :class:`FinalValidationOptions`."""
    opts = parse_options("final_validation", FinalValidationOptions, ctx.options)
    rows = [r for r in state["history"] if "val/future_visible" in r]
    out = {f"final/{k[4:]}": v for k, v in rows[-1].items() if k.startswith("val/")} if rows else {}
    from cjepa.evaluation.rollouts import LABELLED_WORLDS, load_split, slots_are_aligned

    if opts.windows == "slot_dir":
        from cjepa.evaluation.slot_dir import score_slot_dir

        model = model_from_state(cfg, state, ctx.device)
        scores = score_slot_dir(cfg, model, batch_size=opts.batch_size, limit=opts.max_windows)
        return {**out, **{f"final/{k}": v for k, v in scores.items()}}
    if opts.videos and (ctx.episode_dir is None or cfg.data.world != "collide"):
        raise ValueError("stages.final_validation.videos: rollout videos need collide "
                         "episodes (StageContext.episode_dir, data.world=collide)")  # fmt: skip
    if ctx.episode_dir is None or cfg.data.world not in LABELLED_WORLDS:
        return out
    import torch

    from cjepa.data.windows import SlotWindows
    from cjepa.evaluation.dynamics import labels_for, score_windows

    val = load_split(cfg, ctx.episode_dir, "val")
    d = cfg.data
    windows = SlotWindows(
        [torch.from_numpy(ep.slots) for ep in val],
        history=d.history,
        n_future=d.n_future,
        frameskip=d.frameskip,
    )
    labels = labels_for(val, d.n_slots) if slots_are_aligned(cfg) else None
    model = model_from_state(cfg, state, ctx.device)
    scores = score_windows(
        model, windows, labels, batch_size=opts.batch_size, limit=opts.max_windows
    )
    out.update({f"final/{k}": v for k, v in scores.items()})
    from cjepa.evaluation.videos import write_rollout_videos

    write_rollout_videos(cfg, model, val, ctx, opts.videos)
    return out


def _future(cells: str) -> MetricInfo:
    return MetricInfo(
        "min",
        (
            Reference("copy-last", "floor", f"final/copy_last_{cells}"),
            Reference("constant velocity", "floor", f"final/linear_{cells}"),
            Reference("true slots", "ceiling", 0.0),
        ),
        f"future slot MSE on {cells} cells (full history visible)",
    )


#: ``final/``: MSEs of the trained predictor (every name is lower-is-better).
FINAL_METRICS = MetricFamily(
    "final",
    metrics={
        **{f"final/future_{c}": _future(c) for c in ("present", "interaction", "free")},
        "final/future_all": MetricInfo(
            "min",
            (
                Reference("copy-last", "floor", "final/copy_last_all"),
                Reference("constant velocity", "floor", "final/linear_all"),
            ),
            "future slot MSE on every cell (entering objects included)",
        ),
        "final/future_visible": MetricInfo(
            "min",
            (Reference("copy-last", "floor", "final/copy_last"),),
            "val future MSE (training)",
        ),
    },
    direction="min",
    headline=(
        "final/future_present",
        "final/future_interaction",
        "final/future_free",
        "final/future_visible",
        "final/copy_last",
        "final/history",
    ),
    what="prediction error after training, with copy-last and constant-velocity baselines",
)


@dataclass(frozen=True)
class StageSpec:
    """One evaluation stage.

    Attributes:
        function: the stage, or ``"module:function"`` imported on first use.
        options: the dataclass of its options (:func:`parse_options`); every field defaulted.
        metrics: the families of the metrics it returns, with directions and references
            (``cjepa.metrics.MetricFamily``); the sweep records them on its parent run, and the
            analysis table shows a family's metrics with these directions.
    """

    function: Stage | str
    options: type
    metrics: tuple[MetricFamily, ...] = ()

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.options):
            raise TypeError(f"StageSpec.options must be a dataclass, got {self.options!r}")


#: Stages by name -> their spec, or ``"module:SPEC"`` imported on first use so that naming a
#: stage costs nothing until it runs. ``register_stage`` adds one (plug-ins, tests).
STAGES: dict[str, StageSpec | str] = {
    "final_validation": StageSpec(final_validation, FinalValidationOptions, (FINAL_METRICS,)),
    "vqa": "cjepa.evaluation.vqa:SPEC",
    "counterfactual": "cjepa.evaluation.counterfactual:SPEC",
    "causal": "cjepa.evaluation.causal:SPEC",
    "planning": "cjepa.planning.stage:SPEC",
}


def register_stage(name: str, spec: StageSpec | str) -> None:
    """Add (or replace) stage ``name``; its metrics join ``cjepa.metrics.describe`` at once."""
    if not isinstance(spec, StageSpec | str):
        raise TypeError(f"register_stage({name!r}, ...) takes a StageSpec, got {spec!r}")
    STAGES[name] = spec


def get_spec(name: str) -> StageSpec:
    """The spec registered as ``name``; ValueError names the known stages."""
    if name not in STAGES:
        raise ValueError(f"unknown evaluation stage {name!r}; known: {sorted(STAGES)}")
    spec = load_entry(STAGES[name])
    if not isinstance(spec, StageSpec):
        raise TypeError(f"stage {name!r}: {STAGES[name]!r} is not a StageSpec")
    STAGES[name] = spec
    return spec


def get_stage(name: str) -> Stage:
    """The stage function registered as ``name``; ValueError names the known stages."""
    return load_entry(get_spec(name).function)


def stage_metrics() -> dict[str, tuple[MetricFamily, ...]]:
    """``{stage: its metric families}`` for every registered stage, in registration order."""
    return {name: get_spec(name).metrics for name in list(STAGES)}


def check_stages(stages: dict[str, Any]) -> dict[str, Any]:
    """``{name: options instance}``: every name known and every stage's options valid."""
    return {name: parse_options(name, get_spec(name).options, o) for name, o in stages.items()}


def set_options(stages: dict[str, dict[str, Any]], items: list[str]) -> dict[str, dict]:
    """``stages`` with ``STAGE.FIELD=VALUE`` items applied (values parsed as YAML scalars, as
    the config's dotted overrides are; ``STAGE.FIELD.SUB=VALUE`` sets a nested option such as
    ``causal.alignment.min_iou``); ValueError for an item naming no stage of ``stages``."""
    out = {name: dict(options or {}) for name, options in stages.items()}
    for item in items:
        key, sep, raw = item.partition("=")
        stage, dot, name = key.partition(".")
        if not (sep and dot and name) or stage not in out:
            raise ValueError(
                f"stage option {item!r}: expected STAGE.FIELD=VALUE for a stage of {sorted(out)}"
            )
        *parents, last = name.split(".")
        node = out[stage]
        for part in parents:
            sub = node.get(part) or {}
            if not isinstance(sub, dict):
                raise ValueError(f"stage option {item!r}: {part} is {sub!r}, not a mapping")
            node[part] = dict(sub)  # a copy: the caller's mapping is left as it was
            node = node[part]
        node[last] = parse_yaml(raw, f"stage option {item!r}")
    return out


def run_stages(
    cfg: ExperimentConfig,
    state: dict[str, Any],
    stages: dict[str, Any],
    ctx: StageContext,
) -> dict[str, float]:
    """Run each named stage in order with its options (all checked before the first runs);
    stage ``name`` writes its files to ``ctx.out_dir / name``. Returns the merged metrics plus
    ``eval/<name>_s`` wall times."""
    metrics: dict[str, float] = {}
    for name, options in check_stages(stages).items():
        stage = get_stage(name)
        out = Path(ctx.out_dir) / name
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        metrics.update(stage(cfg, state, dataclasses.replace(ctx, out_dir=out, options=options)))
        metrics[f"eval/{name}_s"] = time.perf_counter() - t0
    return metrics
