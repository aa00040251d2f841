import itertools

import numpy as np
import pytest
import torch

from cjepa.masking import (
    FIXED_SEED,
    STRATEGIES,
    budget_from_ratio,
    make_mask,
    ratio_from_budget,
)

#: Every registered strategy is tested; "none" (the no-masking baseline) hides no cell whatever
#: the budget, every other one exactly |M| * (T - 1) cells per sample.
ALL_UNITS = sorted(STRATEGIES)
UNITS = [u for u in ALL_UNITS if u != "none"]
SAMPLINGS = ["uniform", "exact", "fixed"]
SHAPES = [(1, 2, 1, 1), (8, 3, 4, 1), (16, 6, 7, 4), (5, 4, 4, 4), (32, 6, 7, 0), (3, 10, 3, 2)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def hidden_per_unit(unit: str, budget: int) -> int:
    """|M| as the strategy counts it: "none" hides nothing."""
    return 0 if unit == "none" else budget


@pytest.mark.parametrize(
    ("unit", "sampling", "shape"), list(itertools.product(ALL_UNITS, SAMPLINGS, SHAPES))
)
def test_cell_counts_and_anchor(unit, sampling, shape):
    b, t, n, budget = shape
    mask = make_mask(unit, b, t, n, budget, generator=gen(), sampling=sampling)
    assert mask.shape == (b, t, n) and mask.dtype == torch.bool
    assert not mask[:, 0].any(), "frame 0 is the identity anchor"
    per_sample = mask.sum(dim=(1, 2))
    # Every unit hides a whole number of objects' worth of cells: |M| * (T - 1).
    assert (per_sample % (t - 1) == 0).all()
    m = per_sample // (t - 1)
    if sampling == "uniform":
        assert (m >= 0).all() and (m <= hidden_per_unit(unit, budget)).all()
    else:
        assert (m == hidden_per_unit(unit, budget)).all()


@pytest.mark.parametrize("unit", ALL_UNITS)
def test_strategy_is_a_pure_function_of_its_budgets(unit):
    """The registered function itself: (m, T, N, generator) -> (B, T, N) bool, m[b] * (T - 1)
    hidden cells in sample b, frame 0 visible, the same draw for the same generator state."""
    m, t, n = [0, 1, 3, 2], 5, 4
    mask = STRATEGIES[unit](m, t, n, gen(4))
    assert mask.shape == (len(m), t, n) and mask.dtype == torch.bool
    assert mask.device.type == "cpu" and not mask[:, 0].any()
    want = [hidden_per_unit(unit, k) * (t - 1) for k in m]
    assert mask.sum(dim=(1, 2)).tolist() == want
    assert torch.equal(mask, STRATEGIES[unit](m, t, n, gen(4)))


def test_uniform_covers_every_budget():
    mask = make_mask("object", 2000, 4, 7, 4, generator=gen(), sampling="uniform")
    m = mask.sum(dim=(1, 2)) // 3
    assert set(m.tolist()) == {0, 1, 2, 3, 4}
    # Roughly uniform over 0..4 (each ~400 of 2000).
    counts = torch.bincount(m, minlength=5)
    assert counts.min() > 300 and counts.max() < 500


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_object_masks_constant_over_time(sampling):
    mask = make_mask("object", 64, 6, 7, 3, generator=gen(), sampling=sampling)
    assert (mask[:, 1:] == mask[:, 1:2]).all()


def test_tube_hides_objects_only_partly():
    """Tubes are blocks in (time, slot) space, so some hidden slot is visible at some t >= 1."""
    mask = make_mask("tube", 200, 6, 7, 2, generator=gen(), sampling="exact")
    partial = (mask[:, 1:].any(dim=1) & ~mask[:, 1:].all(dim=1)).any(dim=1)
    assert partial.float().mean() > 0.5
    assert not (mask[:, 1:] == mask[:, 1:2]).all()


def test_tube_blocks_are_contiguous_in_time_for_single_block():
    """With |M| = 1 the single tube, trimmed or extended, is one run per slot in time."""
    mask = make_mask("tube", 300, 8, 5, 1, generator=gen(3), sampling="exact")
    for sample in mask:
        for slot in sample.T:  # (T,) over time for one slot
            steps = slot.nonzero().flatten().tolist()
            if steps:
                assert steps == list(range(steps[0], steps[-1] + 1)), sample.int()


def test_token_masks_are_scattered():
    mask = make_mask("token", 200, 6, 7, 2, generator=gen(), sampling="exact")
    assert not (mask[:, 1:] == mask[:, 1:2]).all()


@pytest.mark.parametrize(("unit", "sampling"), list(itertools.product(ALL_UNITS, SAMPLINGS)))
def test_same_seed_same_mask(unit, sampling):
    a = make_mask(unit, 16, 6, 7, 3, generator=gen(7), sampling=sampling)
    b = make_mask(unit, 16, 6, 7, 3, generator=gen(7), sampling=sampling)
    assert torch.equal(a, b)


@pytest.mark.parametrize("unit", UNITS)
def test_different_seeds_differ(unit):
    a = make_mask(unit, 16, 6, 7, 3, generator=gen(1), sampling="exact")
    b = make_mask(unit, 16, 6, 7, 3, generator=gen(2), sampling="exact")
    assert not torch.equal(a, b)


@pytest.mark.parametrize("unit", ALL_UNITS)
def test_fixed_is_identical_across_samples_and_calls(unit):
    a = make_mask(unit, 8, 6, 7, 3, generator=gen(1), sampling="fixed")
    b = make_mask(unit, 4, 6, 7, 3, generator=gen(99), sampling="fixed")
    assert (a == a[:1]).all()
    assert torch.equal(a[:4], b)
    ref = make_mask(
        unit, 1, 6, 7, 3, generator=torch.Generator().manual_seed(FIXED_SEED), sampling="exact"
    )
    assert torch.equal(a[:1], ref)


@pytest.mark.parametrize(("unit", "sampling"), list(itertools.product(ALL_UNITS, SAMPLINGS)))
def test_does_not_touch_global_rng(unit, sampling):
    torch.manual_seed(123)
    before, np_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    make_mask(unit, 8, 6, 7, 3, generator=gen(), sampling=sampling)
    assert torch.equal(before, torch.get_rng_state())
    assert np.array_equal(np_before, np.random.get_state()[1])


def test_none_hides_nothing():
    assert not make_mask("none", 4, 6, 7, 3, generator=gen()).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit": "patch"}, "masking unit"),
        ({"budget": -1}, "budget"),
        ({"budget": 8}, "budget"),
        ({"time": 1}, "time"),
        ({"sampling": "random"}, "sampling"),
        ({"batch": 0}, "batch"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    args = {"unit": "object", "batch": 2, "time": 6, "slots": 7, "budget": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        make_mask(**args, generator=gen())


def test_generator_required():
    with pytest.raises(TypeError):
        make_mask("object", 2, 6, 7, 2, generator=0)  # type: ignore[arg-type]


def test_ratio_budget_rounding():
    # The paper's CLEVRER token/tube ratios map to |M| = 1..4 of N = 7.
    assert [budget_from_ratio(r, 7) for r in (0.14, 0.28, 0.42, 0.56)] == [1, 2, 3, 4]
    assert [budget_from_ratio(r, 4) for r in (0.25, 0.5)] == [1, 2]
    assert budget_from_ratio(0.5 / 7, 7) == 1  # halves round up
    assert ratio_from_budget(2, 4) == 0.5
    with pytest.raises(ValueError, match="ratio"):
        budget_from_ratio(1.5, 7)


def test_fixed_official_is_numpys_choice_from_the_run_seed():
    # N = 7 object slots, |M| = 2, train.seed 42: numpy's RandomState picks slots 0 and 1.
    expected = np.random.RandomState(42).choice(7, 2, replace=False)
    assert sorted(expected.tolist()) == [0, 1]
    g = gen(5)
    state = g.get_state()
    mask = make_mask("object", 3, 4, 7, 2, generator=g, sampling="fixed_official", seed=42)
    assert torch.equal(g.get_state(), state)  # the torch generator is not read
    want = torch.zeros(3, 4, 7, dtype=torch.bool)
    want[:, 1:, [0, 1]] = True
    assert torch.equal(mask, want)
    # cjepa's torch draw from FIXED_SEED hides other slots (2 and 6 for this shape).
    fixed = make_mask("object", 1, 4, 7, 2, generator=gen(), sampling="fixed")
    assert fixed[0, 1].nonzero().flatten().tolist() != [0, 1]


def test_fixed_official_follows_the_seed():
    for seed in (0, 1, 7):
        mask = make_mask(
            "object", 2, 3, 7, 3, generator=gen(), sampling="fixed_official", seed=seed
        )
        picked = np.random.RandomState(seed).choice(7, 3, replace=False)
        assert sorted(mask[0, 1].nonzero().flatten().tolist()) == sorted(picked.tolist())
        assert (mask[:, 1:] == mask[0, 1]).all() and not mask[:, 0].any()
    assert not make_mask(
        "none", 2, 3, 7, 3, generator=gen(), sampling="fixed_official", seed=0
    ).any()


@pytest.mark.parametrize(
    ("unit", "seed", "message"), [("token", 0, "supports units"), ("object", None, "int seed")]
)
def test_fixed_official_arguments(unit, seed, message):
    with pytest.raises(ValueError, match=message):
        make_mask(unit, 2, 3, 7, 2, generator=gen(), sampling="fixed_official", seed=seed)
