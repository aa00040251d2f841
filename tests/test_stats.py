"""cjepa.stats: paired differences, their t interval, and when nothing is called significant."""

from __future__ import annotations

import math

import pytest

from cjepa.stats import paired_difference, summarise


def test_paired_difference_matches_a_hand_computation():
    # d = 0.5, 0.5, 0.75: mean 0.5833, sd 0.1443, t(0.975, 2) = 4.3027 -> half width 0.3586
    d = paired_difference({0: 0.75, 1: 0.5, 2: 1.0}, {0: 0.25, 1: 0.0, 2: 0.25})
    assert (d.mean, d.low, d.high, d.n) == pytest.approx((0.5833, 0.2247, 0.9419, 3), abs=1e-4)
    assert d.significant and not d.degenerate
    assert d.text(2) == "+0.58 [+0.22, +0.94] *"


def test_a_difference_equal_on_every_seed_is_not_significant():
    # success rates over 10 episodes: 0.3667 - 0.2667 on every seed (up to rounding)
    a = {0: 11 / 30, 1: 11 / 30 + 1e-17, 2: 11 / 30}
    b = {0: 8 / 30, 1: 8 / 30, 2: 8 / 30}
    d = paired_difference(a, b)
    assert d.degenerate and not d.significant and d.n == 3
    assert d.mean == pytest.approx(0.1)
    assert d.text(2) == "+0.10 (n=3, equal on every seed: no CI)"


def test_one_pair_or_none_has_no_interval():
    one = paired_difference({0: 1.0, 1: math.nan}, {0: 0.5, 1: 0.2})
    assert one.n == 1 and not one.significant and one.text(1) == "+0.5 (n=1, no CI)"
    assert paired_difference({0: 1.0}, {1: 0.0}).text() == "-"
    assert summarise([1.0, None, math.inf, 3.0]).text(1) == "2.0 ± 1.4 (n=2)"
