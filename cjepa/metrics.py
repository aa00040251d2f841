"""Every reported metric's better direction and its references (floors and ceilings).

Plain data, no torch. Each evaluation stage declares its own metric families next to its code
(``StageSpec.metrics``, ``cjepa.evaluation.stage``); this module holds the types, the metrics of
training itself (``train/``, ``val/``, ``eval/<stage>_s``) and the merged view over both:
:func:`describe`, :func:`direction` and :data:`METRICS`. The sweep records :func:`describe` on
its parent run (``metrics.json``), so the analysis reads each metric's direction, references
and family from the run, never from the metric's name.

A reference is a *floor* (a trivial baseline that any model worth reporting must beat: copy-last,
constant velocity, the majority answer, "ignore the intervention", random attention) or a
*ceiling* (true slots, the simulator). Its value comes from ``source``: a metric every trial logs
on the same cells (e.g. ``final/copy_last_present``), a ``control/...`` metric the sweep computes
once (``cjepa.evaluation.controls``), or a constant.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

DIRECTIONS = ("min", "max")
#: Directions every family shares after its own patterns: counts, wall times.
COMMON_PATTERNS = (("*/n_*", "max"), ("*seconds", "min"), ("*_s", "min"))


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


@dataclass(frozen=True)
class MetricFamily:
    """The metrics a stage logs under ``prefix/`` (one column group of the analysis table).

    Attributes:
        prefix: every metric ``<prefix>/...`` belongs to this family.
        metrics: exact names with their direction, references and meaning.
        patterns: ``(glob, direction)`` for the other names, first match wins (``fnmatch``),
            then ``COMMON_PATTERNS``.
        direction: the direction of a name neither ``metrics`` nor ``patterns`` knows (None:
            unknown, the analysis flags it as guessed).
        headline: names the analysis shows by default when a sweep logged any of them.
        hidden: globs of names left out of the analysis table (counts).
        what: one line on what the family measures.
    """

    prefix: str
    metrics: Mapping[str, MetricInfo] = field(default_factory=dict)
    patterns: tuple[tuple[str, str], ...] = ()
    direction: str | None = None
    headline: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ("*/n_*",)
    what: str = ""

    def __post_init__(self) -> None:
        if not self.prefix or "/" in self.prefix:
            raise ValueError(f"metric family prefix must be one path part, got {self.prefix!r}")
        given = [self.direction, *(d for _, d in self.patterns)]
        given += [m.direction for m in self.metrics.values()]
        bad = [d for d in given if d is not None and d not in DIRECTIONS]
        if bad:
            raise ValueError(f"metric family {self.prefix!r}: direction must be one of "
                             f"{list(DIRECTIONS)}, got {bad[0]!r}")  # fmt: skip

    def covers(self, name: str) -> bool:
        return name.startswith(self.prefix + "/")

    def direction_of(self, name: str) -> str | None:
        if name in self.metrics:
            return self.metrics[name].direction
        for pattern, d in (*self.patterns, *COMMON_PATTERNS):
            if fnmatch.fnmatchcase(name, pattern):
                return d
        return self.direction

    def shown(self, name: str) -> bool:
        return not any(fnmatch.fnmatchcase(name, p) for p in self.hidden)


#: Metrics of training itself (no stage): per-step curves and per-stage wall times.
TRAINING: tuple[MetricFamily, ...] = (
    MetricFamily("train", direction="min", what="training losses per step"),
    MetricFamily("val", direction="min", what="validation MSEs during training"),
    MetricFamily("eval", patterns=(("eval/*_s", "min"),), what="wall time of each stage"),
)


def families() -> dict[str, tuple[MetricFamily, ...]]:
    """``{stage: its families}`` for every registered stage (built-in and plug-in, in
    registration order), then ``{"": TRAINING}``."""
    # The stage registry imports torch; this module stays importable without it, so the
    # registry is read only when a merged view is asked for.
    from cjepa.evaluation.stage import stage_metrics

    return {**stage_metrics(), "": TRAINING}


def _find(name: str, every: dict[str, tuple[MetricFamily, ...]]) -> tuple[str, MetricFamily]:
    for stage, fams in every.items():
        for fam in fams:
            if fam.covers(name):
                return stage, fam
    return "", None  # type: ignore[return-value]


def direction(name: str) -> str | None:
    """``"min"``/``"max"`` for a known metric, None for one no family knows. A control
    ``control/<which>/<metric>`` has the direction of ``<metric>``."""
    if name.startswith("control/") and name.count("/") >= 2:
        return direction(name.split("/", 2)[-1])
    _, fam = _find(name, families())
    return fam.direction_of(name) if fam else None


class _Merged(Mapping):
    """``{name: MetricInfo}`` over every family's exact names (read on each access, so a stage
    registered at run time is included)."""

    def _all(self) -> dict[str, MetricInfo]:
        return {k: v for fams in families().values() for f in fams for k, v in f.metrics.items()}

    def __getitem__(self, name: str) -> MetricInfo:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: Every family's exactly-named metrics (``METRICS["cf/collide/acc"].references``).
METRICS: Mapping[str, MetricInfo] = _Merged()


def resolve(ref: Reference, values: Mapping[str, float]) -> float:
    """The value of ``ref`` given trial/control metrics ``values`` (NaN when missing)."""
    if isinstance(ref.source, (int, float)):
        return float(ref.source)
    v = values.get(ref.source)
    return float(v) if v is not None else math.nan


def describe(names: Iterable[str], values: Mapping[str, float]) -> dict[str, dict]:
    """``{name: {"direction", "what", "references": [{label, kind, source, value}], "stage",
    "family", "headline", "table"}}`` for the metrics ``names``; ``values`` resolve the
    references. ``family`` is the prefix of the stage family that covers the name (None for
    training metrics, controls and unknown names), ``table`` whether the analysis table shows
    it, ``headline`` whether it is shown by default. Entries come family by family in stage
    registration order, headline names first in their declared order, then by name (the
    analysis keeps that order)."""
    every = families()
    order = {f.prefix: i for i, f in enumerate(f for fams in every.values() for f in fams)}
    rows = []
    for name in set(names):
        stage, fam = _find(name, every) if not name.startswith("control/") else ("", None)
        info = fam.metrics.get(name) if fam else None
        refs = info.references if info else ()
        entry = {
            "direction": direction(name),
            "what": info.what if info else "",
            "references": [
                {"label": r.label, "kind": r.kind, "source": r.source, "value": resolve(r, values)}
                for r in refs
            ],
            "stage": stage or None,
            "family": fam.prefix if fam and stage else None,
            "headline": bool(fam and stage and name in fam.headline),
            "table": bool(fam and stage and fam.shown(name)),
        }
        rank = order.get(fam.prefix, len(order)) if fam else len(order)
        head = fam.headline.index(name) if entry["headline"] else len(fam.headline) if fam else 0
        rows.append(((rank, head, name), entry))
    return {key[2]: entry for key, entry in sorted(rows, key=lambda r: r[0])}
