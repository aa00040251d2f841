"""What an evaluation stage receives after training, and how it rebuilds the trained model.

A stage is a function ``(cfg, state, ctx) -> dict[str, float]`` run once per trained model (in a
sweep trial after training, or from an entry script). ``state`` is the training state
(``{"model": state_dict, "history": [rows], "step": int}``); ``ctx`` says where the data lives,
which encoder produced the slots, the stage's options from the preset, and a directory whose
files become the run's artifacts. Stages import torch only (no Ray, no MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from cjepa.config import ExperimentConfig, from_dict
from cjepa.predictor import SlotPredictor
from cjepa.registry import load_entry


@dataclass
class StageContext:
    """Everything a stage needs beyond the config and the trained weights.

    Attributes:
        out_dir: an existing directory; every file a stage writes here is logged as an artifact
            of the run (under ``eval/``).
        options: the stage's settings from the preset (``stages: {name: {...}}``); a stage
            raises ValueError naming any key it does not know.
        encoder: the encoder spec that produced ``cfg.data.slot_dir`` (``"oracle:collide"``, a
            checkpoint path, ...), so a stage can encode re-simulated scenes the same way.
        episode_dir: the episode shards behind the slots (frames, states, questions).
        seed: seed for every random draw the stage makes.
        device: where to run the model.
    """

    out_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
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


def check_options(stage: str, options: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """``known`` (the defaults) updated with ``options``; unknown keys raise a ValueError."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"stages.{stage}: unknown option(s) {unknown}; known: {sorted(known)}")
    return {**known, **options}


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


def final_validation(
    cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext
) -> dict[str, float]:
    """The last validation row of training (``final/future_visible``, ``final/history``, ...)
    plus, when the episodes are known (``ctx.episode_dir``) and the world is collide, the
    dynamics metrics of ``cjepa.evaluation.dynamics`` on every val window: ``final/future_*``
    with the ``final/copy_last_*`` and ``final/linear_*`` baselines on the same cells (present,
    interaction, free, all). Options: ``max_windows`` (0: all), ``batch_size``."""
    opts = check_options("final_validation", ctx.options, {"max_windows": 0, "batch_size": 512})
    rows = [r for r in state["history"] if "val/future_visible" in r]
    out = {f"final/{k[4:]}": v for k, v in rows[-1].items() if k.startswith("val/")} if rows else {}
    if ctx.episode_dir is None or cfg.data.world != "collide":
        return out
    from cjepa.data.windows import SlotWindows
    from cjepa.evaluation.dynamics import labels_for, score_windows
    from cjepa.evaluation.rollouts import load_split, slots_are_aligned

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
        model, windows, labels, batch_size=opts["batch_size"], limit=opts["max_windows"]
    )
    out.update({f"final/{k}": v for k, v in scores.items()})
    return out


#: Stages by name -> "module:function", imported on first use so that naming a stage costs
#: nothing until it runs. ``register_stage`` adds a function directly (plug-ins, tests).
STAGES: dict[str, str | Stage] = {
    "final_validation": final_validation,
    "vqa": "cjepa.evaluation.vqa:vqa_stage",
    "counterfactual": "cjepa.evaluation.counterfactual:counterfactual_stage",
    "causal": "cjepa.evaluation.causal:causal_stage",
    "planning": "cjepa.planning.stage:planning_stage",
}


def register_stage(name: str, stage: str | Stage) -> None:
    STAGES[name] = stage


def get_stage(name: str) -> Stage:
    """The stage function registered as ``name``; ValueError names the known stages."""
    if name not in STAGES:
        raise ValueError(f"unknown evaluation stage {name!r}; known: {sorted(STAGES)}")
    STAGES[name] = stage = load_entry(STAGES[name])
    return stage


def run_stages(
    cfg: ExperimentConfig,
    state: dict[str, Any],
    stages: dict[str, dict[str, Any]],
    ctx: StageContext,
) -> dict[str, float]:
    """Run each named stage in order with its options; stage ``name`` writes its files to
    ``ctx.out_dir / name``. Returns the merged metrics plus ``eval/<name>_s`` wall times."""
    import time

    metrics: dict[str, float] = {}
    for name, options in stages.items():
        stage = get_stage(name)
        out = Path(ctx.out_dir) / name
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        sub = StageContext(
            out_dir=out,
            options=dict(options or {}),
            encoder=ctx.encoder,
            episode_dir=ctx.episode_dir,
            seed=ctx.seed,
            device=ctx.device,
        )
        metrics.update(stage(cfg, state, sub))
        metrics[f"eval/{name}_s"] = time.perf_counter() - t0
    return metrics
