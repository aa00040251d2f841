"""Seed statistics for comparisons: mean ± std and paired differences with a 95% t interval.

Plain Python and scipy (no torch). A comparison of model A with the baseline B pairs runs by
seed (same data split, same initial generator seed), takes d_s = A_s - B_s, and reports
mean(d) with the two-sided 95% Student-t interval mean(d) ± t_{0.975, n-1} sd(d) / sqrt(n).
The difference is *significant* when the interval excludes 0; with n < 2 pairs there is no
interval and nothing is called significant. Neither is a difference that is identical on every
seed (sd 0): the t interval collapses to a point, which for a quantised metric (a success rate
over 20 episodes moves in steps of 0.05) says nothing about the noise within each seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _st


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int

    def text(self, digits: int = 4) -> str:
        if self.n == 0:
            return "-"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


@dataclass(frozen=True)
class Difference:
    """mean paired difference (A - B), its 95% interval, and how many seeds were paired."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def degenerate(self) -> bool:
        """The same difference on every seed: the interval is a point, not evidence."""
        return self.n >= 2 and self.low == self.high

    @property
    def significant(self) -> bool:
        return self.n >= 2 and not self.degenerate and not (self.low <= 0.0 <= self.high)

    def text(self, digits: int = 4) -> str:
        if self.n == 0:
            return "-"
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (n=1, no CI)"
        if self.degenerate:
            return f"{self.mean:+.{digits}f} (n={self.n}, equal on every seed: no CI)"
        star = " *" if self.significant else ""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{star}"


def summarise(values: Sequence[float]) -> Summary:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Summary(math.nan, math.nan, 0)
    return Summary(
        statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)
    )


def paired_difference(
    a: Mapping[int | str, float], b: Mapping[int | str, float], confidence: float = 0.95
) -> Difference:
    """A - B over the seeds both hold a finite value for (``{seed: value}``)."""
    seeds = sorted(
        s for s in set(a) & set(b) if math.isfinite(float(a[s])) and math.isfinite(float(b[s]))
    )
    d = [float(a[s]) - float(b[s]) for s in seeds]
    if not d:
        return Difference(math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(d)
    if len(d) < 2:
        return Difference(mean, math.nan, math.nan, 1)
    sd = statistics.stdev(d)
    if sd <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding (0.3667 - 0.2667 vs 0.1)
        return Difference(mean, mean, mean, len(d))
    half = _st.t.ppf(0.5 + confidence / 2, len(d) - 1) * sd / math.sqrt(len(d))
    return Difference(mean, mean - half, mean + half, len(d))
