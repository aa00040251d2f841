"""Every reported metric's better direction and its references (floors and ceilings).

Plain data, no torch: the sweep records :func:`describe` on its parent run (``metrics.json``) so
that the analysis reads each metric's direction and references from the run, never guesses them
from the metric's name.

A reference is a *floor* (a trivial baseline that any model worth reporting must beat: copy-last,
constant velocity, the majority answer, "ignore the intervention", random attention) or a
*ceiling* (true slots, the simulator). Its value comes from ``source``: a metric every trial logs
on the same cells (e.g. ``final/copy_last_present``), a ``control/...`` metric the sweep computes
once (``cjepa.evaluation.controls``), or a constant.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VQA_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual", "all")


@dataclass(frozen=True)
class Reference:
    label: str
    kind: str  # "floor" or "ceiling"
    source: str | float  # a metric name (trial or control/...) or a constant


@dataclass(frozen=True)
class MetricInfo:
    direction: str  # "min" or "max"
    references: tuple[Reference, ...] = ()
    what: str = ""


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


def _vqa(kind: str, unit: str) -> MetricInfo:
    return MetricInfo(
        "max",
        (
            Reference("majority answer", "floor", f"vqa/majority/{kind}/{unit}"),
            Reference("reader over copy-last", "floor", f"control/copy_last/vqa/{kind}/{unit}"),
            Reference("reader on true slots", "ceiling", f"control/true_slots/vqa/{kind}/{unit}"),
        ),
        f"VQA {kind} accuracy {unit.replace('_', ' ')}",
    )


def _plan(name: str, what: str) -> MetricInfo:
    return MetricInfo(
        "max",
        (
            Reference("random actions", "floor", f"control/random/plan/{name}"),
            Reference("oracle CEM on the simulator", "ceiling", f"control/oracle/plan/{name}"),
        ),
        f"Push-T, {what}",
    )


#: Exact names first; then glob patterns (``fnmatch``) in order.
METRICS: dict[str, MetricInfo] = {
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
        "min", (Reference("copy-last", "floor", "final/copy_last"),), "val future MSE (training)"
    ),
    **{f"vqa/{k}/{u}": _vqa(k, u) for k in VQA_TYPES for u in ("per_question", "per_option")},
    "cf/slot_error_after_contact": MetricInfo(
        "min",
        (
            Reference(
                "ignore the intervention", "floor", "control/ignore/cf/slot_error_after_contact"
            ),
            Reference("copy-last", "floor", "control/copy_last/cf/slot_error_after_contact"),
            Reference("true counterfactual", "ceiling", 0.0),
        ),
        "intervened rollout vs the re-simulated scene without the object (slot MSE)",
    ),
    "cf/collide/acc": MetricInfo(
        "max",
        (
            Reference("no change", "floor", "cf/collide/acc_no_change"),
            Reference("encoder on the true counterfactual", "ceiling", "cf/collide/acc_encoder"),
        ),
        "'do Y and Z still collide' after removing X",
    ),
    "causal/auroc": MetricInfo(
        "max",
        (
            Reference("random attention", "floor", 0.5),
            # distance between objects alone: no learning, yet a strong baseline (0.84-0.94)
            Reference("proximity", "floor", "causal/auroc_proximity"),
            Reference("the simulator's interaction graph", "ceiling", 1.0),
        ),
        "attention mass vs the simulator's interaction graph",
    ),
    "plan/success_rate": _plan("success_rate", "the planning protocol's headline success"),
    **{
        f"plan/success_{d}_{w}": _plan(f"success_{d}_{w}", f"{d} success test, {w}")
        for d in ("block", "public")
        for w in ("final", "any_step")
    },
}

PATTERNS: tuple[tuple[str, str], ...] = (
    ("*/n_*", "max"),
    ("*seconds", "min"),
    ("*_s", "min"),
    ("final/*", "min"),
    ("val/*", "min"),
    ("train/*", "min"),
    ("cf/slot_error*", "min"),
    ("cf/control/*", "min"),
    ("cf/effect", "min"),
    ("cf/collide/acc*", "max"),
    ("causal/auroc*", "max"),
    ("causal/mass_*", "max"),
    ("vqa/*/per_*", "max"),
    ("vqa/reader_loss", "min"),
    ("plan/*success*", "max"),
)


def direction(name: str) -> str | None:
    """``"min"``/``"max"`` for a known metric, None for one this registry does not know."""
    if name in METRICS:
        return METRICS[name].direction
    base = name.split("/", 2)[-1] if name.startswith("control/") else name
    if base != name:
        return direction(base)
    for pattern, d in PATTERNS:
        if fnmatch.fnmatchcase(name, pattern):
            return d
    return None


def resolve(ref: Reference, values: Mapping[str, float]) -> float:
    """The value of ``ref`` given trial/control metrics ``values`` (NaN when missing)."""
    if isinstance(ref.source, (int, float)):
        return float(ref.source)
    v = values.get(ref.source)
    return float(v) if v is not None else math.nan


def describe(names: Iterable[str], values: Mapping[str, float]) -> dict[str, dict]:
    """``{name: {"direction", "what", "references": [{label, kind, source, value}]}}`` for the
    metrics ``names`` (unknown ones get direction None); ``values`` resolve the references."""
    out = {}
    for name in sorted(set(names)):
        info = METRICS.get(name)
        refs = info.references if info else ()
        out[name] = {
            "direction": direction(name),
            "what": info.what if info else "",
            "references": [
                {"label": r.label, "kind": r.kind, "source": r.source, "value": resolve(r, values)}
                for r in refs
            ],
        }
    return out
