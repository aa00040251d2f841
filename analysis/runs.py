"""A sweep as the analysis sees it: the parent run, its trial runs, and how trials group
(``analysis.store`` reads them from MLflow).

Reads MLflow only (the layout written by ``cjepa/distributed/tracking.py`` and ``sweep.py``):
one parent run per sweep (tags ``cjepa.role = sweep``, ``cjepa.sweep_id``), one child run per
trial (tags ``cjepa.role = trial``, ``cjepa.sweep_id``, ``cjepa.seed``, ``mlflow.parentRunId``;
params = the flattened experiment config, e.g. ``masking.unit``, ``masking.budget``), and the
parent's ``metrics.json`` artifact (``cjepa.metrics.describe``: each metric's better direction,
its floors/ceilings and the stage family it belongs to, plus the sweep's ``control/...``
values; absent in older sweeps). Which metrics the tables show, grouped how and which way is
better, all come from that metadata, so a new stage's metrics appear with no edit here. Nothing
here imports training code: only a sweep without that metadata (an older one) falls back to
the stage registry behind ``cjepa.metrics`` (which imports torch), then to a name guess.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from mlflow.entities import Run

MODEL_KEYS = ("cjepa.model", "model", "plan.model", "planning.model", "trial.model")
UNIT_ORDER = ("none", "object", "token", "tube")
OC_JEPA = "OC-JEPA"
#: The parent-run artifact with every metric's direction and references (``cjepa.metrics``).
METRICS_JSON = "metrics.json"
#: The keys of a ``metrics.json`` entry that say where the analysis shows a metric.
_KEYS = {"family", "table", "headline"}
#: How close the trials' values of a reference's ``source`` metric must be to count as one value.
AGREE_RTOL = 1e-6

#: Name tokens (split on / _ - .) that say which way a metric improves.
_HIGHER = {"acc", "accuracy", "success", "auroc", "auc", "ari", "f1", "precision", "recall"}
_HIGHER |= {"score", "r2", "question", "option"}  # vqa/<type>/per_question is an accuracy
_LOWER = {"loss", "mse", "mae", "rmse", "err", "error", "wall", "time", "s", "sec", "seconds"}
_LOWER |= {"ms", "final", "val", "train"}  # final/ and val/ metrics are MSEs (train.py)


class AnalysisError(RuntimeError):
    """A sweep, experiment or metric that is not in the store; the message says what is."""


@dataclass
class Trial:
    """One trial run, with its group fields parsed from params and tags."""

    run_id: str
    name: str
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    start_ms: int | None = None
    end_ms: int | None = None

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @property
    def seed(self) -> str:
        return self.tags.get("cjepa.seed") or self.params.get("train.seed") or "?"

    @property
    def budget(self) -> int:
        raw = self.params.get("masking.budget", "0")
        return 0 if raw in ("None", "") else int(float(raw))

    @property
    def unit(self) -> str:
        unit = self.params.get("masking.unit", "none")
        return "none" if unit == "none" or self.budget == 0 else unit

    @property
    def aux(self) -> str:
        return self.params.get("predictor.aux_encoding", "-")

    @property
    def model(self) -> str:
        for key in MODEL_KEYS:
            value = self.tags.get(key) or self.params.get(key)
            if value:
                return value
        return ""

    @property
    def duration_s(self) -> float | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return (self.end_ms - self.start_ms) / 1000


@dataclass(frozen=True, order=True)
class GroupKey:
    """A table row: masking unit, budget |M|, aux encoding, model label and extra params.

    OC-JEPA (no masking: unit ``none`` or |M| = 0) is its own row, whatever unit it was named.
    """

    unit_rank: int
    unit: str
    budget: int
    aux: str
    model: str
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def is_oc_jepa(self) -> bool:
        return self.unit == "none"

    def label(self) -> str:
        return OC_JEPA if self.is_oc_jepa else f"{self.unit} |M|={self.budget}"


def group_key(trial: Trial, extra: tuple[str, ...] = ()) -> GroupKey:
    unit = trial.unit
    rank = UNIT_ORDER.index(unit) if unit in UNIT_ORDER else len(UNIT_ORDER)
    extras = tuple((k, trial.params.get(k, "-")) for k in extra)
    return GroupKey(rank, unit, trial.budget, trial.aux, trial.model, extras)


@dataclass(frozen=True)
class Reference:
    """A floor (a trivial baseline to beat) or a ceiling (true slots, the simulator) of a metric,
    with its value and where the value came from (``metrics.json``, ``constant``, ``controls``
    or ``trials``)."""

    label: str
    kind: str  # "floor" or "ceiling"
    source: str | float  # a metric name (trial or control/...) or a constant
    value: float
    origin: str


@dataclass
class Sweep:
    """A sweep's parent run, its trial runs, and the parent's ``metrics.json`` (None if the
    sweep predates it)."""

    uri: str
    experiment: str
    experiment_id: str
    parent: Run
    trials: list[Trial] = field(default_factory=list)
    metrics_json: dict | None = None
    _metadata: dict[str, dict] | None = field(default=None, repr=False, compare=False)

    @property
    def sweep_id(self) -> str:
        return self.parent.data.tags.get("cjepa.sweep_id", self.parent.info.run_id)

    @property
    def parent_id(self) -> str:
        return self.parent.info.run_id

    def expected_seeds(self) -> list[str]:
        """Seeds every group should have: the parent's ``sweep.seeds`` param (written by
        ``run_sweep``), else every seed seen in any trial."""
        raw = self.parent.data.params.get("sweep.seeds")
        if raw:
            try:
                return [str(s) for s in json.loads(raw)]
            except (ValueError, TypeError):
                pass
        return sorted({t.seed for t in self.trials}, key=seed_order)

    def metric_names(self) -> list[str]:
        return sorted({m for t in self.trials for m in t.metrics})

    def default_metrics(self) -> list[str]:
        """Per family (:meth:`families`): its headline metrics when this sweep logged any,
        else all of its table metrics (as :meth:`all_metrics`)."""
        out = []
        for names in self.families().values():
            out += [m for m in names if self.info(m).get("headline")] or names
        return out

    def all_metrics(self) -> list[str]:
        """Every logged metric a stage family shows in the table (not counts such as
        ``vqa/n_questions``), family by family, by name; the last ``val/*`` values if none
        exist."""
        chosen = [m for names in self.families().values() for m in sorted(names)]
        return chosen or [m for m in self.metric_names() if m.startswith("val/")]

    def families(self) -> dict[str, list[str]]:
        """``{family: its logged table metrics}`` in the recorded order (``describe``: the
        stages' registration order, headline metrics first)."""
        names = set(self.metric_names())
        out: dict[str, list[str]] = {}
        for name, entry in self.metadata().items():
            if name in names and entry.get("family") and entry.get("table", True):
                out.setdefault(entry["family"], []).append(name)
        return out

    def family(self, metric: str) -> str | None:
        """The stage family ``metric`` belongs to (None: training metrics, unknown names)."""
        return self.info(metric).get("family")

    def metadata(self) -> dict[str, dict]:
        """``{name: entry}`` for every logged metric: the ``metrics.json`` entry, with the
        keys it lacks (an older sweep's file) from ``cjepa.metrics.describe``; complete
        entries in recorded order, then the others in the registry's."""
        if self._metadata is None:
            recorded = dict((self.metrics_json or {}).get("metrics") or {})
            names = set(self.metric_names()) | set(recorded)
            lacking = sorted(n for n in names if not set(recorded.get(n) or {}) >= _KEYS)
            known = _registry_describe(lacking)
            complete = [n for n in recorded if n not in set(lacking)]
            self._metadata = {
                n: {**known.get(n, {}), **(recorded.get(n) or {})}
                for n in dict.fromkeys([*complete, *known, *lacking])
            }
        return self._metadata

    def info(self, metric: str) -> dict:
        return self.metadata().get(metric) or {}

    def recorded(self, metric: str) -> dict:
        """The ``metrics.json`` entry of ``metric`` (``{}`` when not recorded)."""
        return ((self.metrics_json or {}).get("metrics") or {}).get(metric) or {}

    def controls(self) -> dict[str, float]:
        """The sweep's ``control/...`` values: the parent's metrics, then ``metrics.json``."""
        out = {k: v for k, v in self.parent.data.metrics.items() if k.startswith("control/")}
        out.update((self.metrics_json or {}).get("controls") or {})
        return out

    def direction(self, metric: str) -> tuple[str, str]:
        """``(direction, origin)``: the direction recorded in ``metrics.json``, else
        ``cjepa.metrics.direction``, else the name guess of :func:`metric_direction` (origin
        ``"guessed"``, which the tables flag)."""
        recorded = self.recorded(metric).get("direction")
        if recorded in ("min", "max"):
            return recorded, METRICS_JSON
        known = (_registry_describe([metric]).get(metric) or {}).get("direction")
        if known in ("min", "max"):
            return known, "cjepa.metrics"
        return metric_direction(metric), "guessed"

    def references(self, metric: str) -> list[Reference]:
        """The floors and ceilings of ``metric`` whose value is known, in recorded order.

        Which references: ``metrics.json``, else ``cjepa.metrics.METRICS``. Each value: the
        finite value recorded in ``metrics.json``; else the constant ``source``; else the
        sweep's control of that name; else the finished trials' ``source`` metric when every
        trial that logged it agrees (within ``AGREE_RTOL``). A reference with none is omitted.
        """
        if self.recorded(metric):
            refs = self.recorded(metric).get("references") or []
        else:
            refs = (_registry_describe([metric]).get(metric) or {}).get("references") or []
        controls = self.controls()
        out = []
        for ref in refs:
            value, origin = _finite(ref.get("value")), METRICS_JSON
            source = ref.get("source")
            if value is None and isinstance(source, int | float):
                value, origin = _finite(source), "constant"
            if value is None and isinstance(source, str) and source in controls:
                value, origin = _finite(controls[source]), "controls"
            if value is None and isinstance(source, str):
                value, origin = self._agreed(source), "trials"
            if value is not None:
                out.append(Reference(ref["label"], ref["kind"], source, value, origin))
        return out

    def _agreed(self, metric: str) -> float | None:
        """The one value of ``metric`` over the finished trials that logged it finite, or None
        when none did or they disagree."""
        values = [t.metrics[metric] for t in self.trials if t.finished and metric in t.metrics]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return None
        first = values[0]
        if any(not math.isclose(v, first, rel_tol=AGREE_RTOL, abs_tol=1e-12) for v in values):
            return None
        return first


def _registry_describe(names: list[str]) -> dict[str, dict]:
    """``cjepa.metrics.describe(names)`` without values (reference values stay NaN), for a
    sweep whose ``metrics.json`` lacks them; ``{}`` when the stage registry cannot be imported
    (analysis installed without torch): the names then get no family and a guessed direction."""
    if not names:
        return {}
    try:
        from cjepa import metrics as registry

        return registry.describe(names, {})
    except ImportError:
        return {}


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), seed) if seed.lstrip("-").isdigit() else (1 << 30, seed)


def metric_direction(name: str, overrides: dict[str, str] | None = None) -> str:
    """The name guess, used only for metrics that neither ``metrics.json`` nor
    ``cjepa.metrics`` knows (:meth:`Sweep.direction`): ``"min"`` or ``"max"``: higher is better
    for accuracies, success rates and AUROC; lower for losses, MSE, errors and wall time
    (``final/`` and ``val/`` metrics are MSEs). The last path component decides first, then the
    whole name; unknown names default to ``"min"``."""
    if overrides and name in overrides:
        return overrides[name]
    for part in (name.rsplit("/", 1)[-1], name):
        tokens = set(re.split(r"[/_.\-]", part.lower()))
        if tokens & _LOWER and not tokens & _HIGHER:
            return "min"
        if tokens & _HIGHER:
            return "max"
    return "min"
