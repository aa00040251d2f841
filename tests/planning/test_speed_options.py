"""The planning speed options: bf16 autocast, torch.compile with its fallbacks, inference mode,
the deferred NaN check and the device-cached permutation table (issue K, item 4)."""

import pytest
import torch

from cjepa.planning.cem import CEMConfig, CEMSolver
from cjepa.planning.cost import _permutations
from cjepa.planning.world_model import WorldModelCost
from tests.planning.test_world_model import candidates, inputs, model


def test_bf16_costs_are_close_to_fp32_and_come_back_in_fp32():
    m, x, c = model(), inputs(), candidates()
    exact = WorldModelCost(m, **x)(c)
    half = WorldModelCost(m, **x, precision="bf16")(c)
    assert half.dtype == torch.float32 and half.shape == exact.shape
    assert not torch.equal(half, exact)  # it really ran in bf16
    torch.testing.assert_close(half, exact, rtol=0.1, atol=0.05)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        WorldModelCost(model(), **inputs(), precision="fp16")


def test_compile_on_cpu_warns_once_and_plans_eagerly():
    m, x, c = model(), inputs(), candidates()
    with pytest.warns(UserWarning, match="compile=True ignored on cpu"):
        cost = WorldModelCost(m, **x, compile=True)
    assert cost.runner is m
    torch.testing.assert_close(cost(c), WorldModelCost(m, **x)(c), rtol=0, atol=0)


class _FailsWhenCalled(torch.nn.Module):
    """Stands in for a compiled module whose first call fails (e.g. no compiler on the host)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, *args, **kwargs):
        raise RuntimeError("backend compiler failed")


def test_a_compile_failure_at_the_first_call_falls_back_to_eager():
    m, x, c = model(), inputs(), candidates()
    cost = WorldModelCost(m, **x)
    cost.runner = _FailsWhenCalled(m)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        out = cost(c)
    assert cost.runner is m
    torch.testing.assert_close(out, WorldModelCost(m, **x)(c), rtol=0, atol=0)


def test_plans_are_ordinary_tensors_and_rollouts_record_no_graph():
    m, x = model(), inputs()
    seen = {}

    def cost(cands):
        out = WorldModelCost(m, **x)(cands)
        seen["grad"] = out.requires_grad
        return out

    r = CEMSolver(CEMConfig(samples=6, elites=2, iterations=2, horizon=3)).solve(
        cost, 2, 4, generator=torch.Generator().manual_seed(0)
    )
    assert seen["grad"] is False
    assert not r.actions.is_inference() and not r.cost.is_inference()
    r.actions[0] = 0.0  # the caller may edit the plan in place


def test_a_nan_cost_is_still_refused():
    def cost(cands):
        out = cands.sum((-2, -1))
        out[0, 1] = float("nan")
        return out

    with pytest.raises(ValueError, match="NaN"):
        CEMSolver(CEMConfig(samples=6, elites=2, iterations=2, horizon=2)).solve(
            cost, 2, 3, generator=torch.Generator().manual_seed(0)
        )


def test_the_permutation_table_is_made_once_per_device():
    a = _permutations(4, torch.device("cpu"))
    assert a is _permutations(4, torch.device("cpu"))
    assert a.shape == (24, 4) and not a.is_inference()
