import pytest
import torch

from cjepa.planning.cem import CEMConfig, CEMSolver
from cjepa.planning.mpc import RecedingHorizon, shift_plan


def test_shift_plan():
    mean = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    out = shift_plan(mean, 1)
    assert torch.equal(out[:, :3], mean[:, 1:]) and torch.equal(out[:, 3], torch.zeros(2, 1))
    assert torch.equal(shift_plan(mean, 0), mean)
    assert torch.equal(shift_plan(mean, 4), torch.zeros_like(mean))
    with pytest.raises(ValueError, match="steps"):
        shift_plan(mean, -1)


class Recorder:
    """Cost around a quadratic that records the solver's warm starts via candidate 0 (the mean)."""

    def __init__(self, target):
        self.target, self.first = target, []

    def __call__(self, c):
        if not self.first:
            self.first.append(c[:, 0].clone())
        return (c - self.target[:, None]).pow(2).sum(dim=(-2, -1))


def test_warm_start_is_previous_plan_shifted():
    cfg = CEMConfig(samples=64, elites=8, iterations=5, horizon=4)
    mpc = RecedingHorizon(CEMSolver(cfg), 3, 2, execute=1, generator=torch.Generator())
    target = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    first = Recorder(target)
    out = mpc.act(first)
    assert out.shape == (3, 1, 2)
    assert torch.equal(first.first[0], torch.zeros(3, 4, 2))  # cold start: zero mean
    plan1 = mpc.last.actions
    assert torch.equal(out, plan1[:, :1])
    second = Recorder(target)
    mpc.act(second)
    expected = torch.cat([plan1[:, 1:], torch.zeros(3, 1, 2)], dim=1)
    assert torch.equal(second.first[0], expected)
    assert mpc.plans == 2


def test_reset_some_episodes():
    cfg = CEMConfig(samples=16, elites=4, iterations=2, horizon=3)
    mpc = RecedingHorizon(CEMSolver(cfg), 3, 1, execute=1, generator=torch.Generator())
    mpc.act(lambda c: (c - 1).pow(2).sum(dim=(-2, -1)))
    assert (mpc.mean[:, :2].abs() > 0).all()
    mpc.reset(torch.tensor([True, False, True]))
    assert torch.equal(mpc.mean[[0, 2]], torch.zeros(2, 3, 1)) and mpc.mean[1].abs().sum() > 0
    mpc.reset([1])
    assert torch.equal(mpc.mean, torch.zeros(3, 3, 1))


def test_execute_whole_horizon_replans_from_zero():
    cfg = CEMConfig(samples=16, elites=4, iterations=2, horizon=3)
    mpc = RecedingHorizon(CEMSolver(cfg), 2, 1, execute=3, generator=torch.Generator())
    assert mpc.act(lambda c: (c - 1).pow(2).sum(dim=(-2, -1))).shape == (2, 3, 1)
    assert torch.equal(mpc.mean, torch.zeros(2, 3, 1))


def test_bad_execute():
    solver = CEMSolver(CEMConfig(samples=16, elites=4, iterations=2, horizon=3))
    for bad in (0, 4):
        with pytest.raises(ValueError, match="execute"):
            RecedingHorizon(solver, 2, 1, execute=bad, generator=torch.Generator())
