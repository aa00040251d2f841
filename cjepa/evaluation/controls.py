"""The controls of a sweep: every evaluation stage run once on trivial inputs, for reference rows.

Computed once per sweep (they do not depend on the trial), with the same stage code, options,
val episodes and cells as the trials:

- ``control/copy_last/<metric>``: every stage with the copy-last predictor
  (``cjepa.evaluation.baselines``): the floor a model must beat on each metric; its attention is
  uniform, so ``control/copy_last/causal/auroc`` is the random-attention floor (0.5);
- ``control/true_slots/vqa/...``: the VQA reader on the encoder's true slots of the whole
  episode (``reader_input: encoder``): the ceiling of the VQA stage;
- ``control/ignore/cf/slot_error_after_contact``: the true factual future scored against the
  true counterfactual (a perfect model that ignores the intervention), i.e. ``cf/effect``.

- ``control/random/plan/...`` and ``control/oracle/plan/...``: the planning stage's random-action
  floor and simulator (oracle CEM) ceiling on the trials' episodes
  (``cjepa.planning.stage.planning_controls``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from cjepa.config import ExperimentConfig
from cjepa.evaluation.stage import StageContext, run_stages

CONTROL_STAGES = ("final_validation", "vqa", "counterfactual", "causal")


def run_controls(
    cfg: ExperimentConfig,
    stages: dict[str, dict[str, Any] | None],
    ctx: StageContext,
    ceiling_only: Collection[str] = (),
) -> dict[str, float]:
    """``control/...`` metrics (module doc) for the stages of ``stages`` that have controls;
    files go to ``ctx.out_dir/<control>/<stage>/``. Stages in ``ceiling_only`` (ones no trial
    runs, so a copy-last floor would compare with nothing) get only their true-slot ceiling;
    the model-free references they log (e.g. the majority answer) come from that run."""
    chosen = {k: dict(v or {}) for k, v in stages.items() if k in CONTROL_STAGES}
    out: dict[str, float] = {}
    if "planning" in stages and stages["planning"] is not None:
        from cjepa.planning.stage import planning_controls

        out.update(planning_controls(cfg, replace(ctx, options=dict(stages["planning"]))))
    if not chosen:
        return out
    state = {"baseline": "copy_last", "history": [], "step": 0}

    def run(name: str, which: dict[str, dict[str, Any]]) -> dict[str, float]:
        sub = replace(ctx, out_dir=Path(ctx.out_dir) / name)
        sub.out_dir.mkdir(parents=True, exist_ok=True)
        metrics = run_stages(cfg, state, which, sub)
        return {k: v for k, v in metrics.items() if not k.startswith("eval/")}

    copy = run("copy_last", {k: v for k, v in chosen.items() if k not in ceiling_only})
    out.update({f"control/copy_last/{k}": v for k, v in copy.items()})
    if "vqa" in chosen:
        truth = run("true_slots", {"vqa": {**chosen["vqa"], "reader_input": "encoder"}})
        out.update({f"control/true_slots/{k}": v for k, v in truth.items()})
    if "cf/effect" in copy:
        out["control/ignore/cf/slot_error_after_contact"] = copy["cf/effect"]
    return out
