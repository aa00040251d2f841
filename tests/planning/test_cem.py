import dataclasses
import math

import pytest
import torch

from cjepa.planning.cem import CEMConfig, CEMSolver, plan


def quadratic(target: torch.Tensor, scale: torch.Tensor | None = None):
    """cost(c) = sum scale * (c - target)^2 per candidate; target (B, H, A)."""
    w = torch.ones_like(target) if scale is None else scale

    def cost(c):  # (B, S, H, A) -> (B, S)
        return (w[:, None] * (c - target[:, None]).pow(2)).sum(dim=(-2, -1))

    return cost


def targets(b, h=5, a=2, seed=0):
    """Optima in [-1.5, 1.5]: within reach of the paper's N(0, 1) start."""
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.rand(b, h, a, generator=g) - 1.5


def test_finds_minimum_of_quadratic():
    target = targets(1)
    scale = torch.rand(1, 5, 2, generator=torch.Generator().manual_seed(1)) + 0.5
    g = torch.Generator().manual_seed(0)
    out = plan(quadratic(target, scale), 1, 2, CEMConfig(), generator=g)  # the paper's budget
    assert out.shape == (1, 5, 2)
    assert torch.allclose(out, target, atol=1e-3)


def test_batched_matches_one_episode_at_a_time():
    b, budget = 6, {"samples": 300, "elites": 30, "iterations": 30}
    target = targets(b, seed=3)
    solver = CEMSolver(CEMConfig(**budget))
    batched = solver.solve(quadratic(target), b, 2, generator=torch.Generator().manual_seed(0))
    single = torch.stack(
        [
            solver.solve(
                quadratic(target[i : i + 1]), 1, 2, generator=torch.Generator().manual_seed(10 + i)
            ).cost[0]
            for i in range(b)
        ]
    )
    final = quadratic(target)(batched.actions[:, None])[:, 0]  # cost of the returned plans
    assert batched.cost.shape == (b,)
    # Both reach the optimum (cost 0, from about 7.5 at the zero start) to the same tolerance.
    assert quadratic(target)(torch.zeros(b, 1, 5, 2)).min() > 1
    assert (final < 1e-6).all() and (batched.cost < 1e-6).all() and (single < 1e-6).all()
    assert torch.allclose(batched.actions, target, atol=1e-3)


def test_one_cost_call_per_iteration_over_whole_batch():
    shapes = []

    def cost(c):
        shapes.append(tuple(c.shape))
        return c.pow(2).sum(dim=(-2, -1))

    solver = CEMSolver(CEMConfig(samples=16, elites=4, iterations=7, horizon=3))
    r = solver.solve(cost, 4, 2, generator=torch.Generator())
    assert shapes == [(4, 16, 3, 2)] * 7 and r.calls == 7


def test_same_seed_same_plan_and_different_seed_differs():
    target = targets(3)
    cfg = CEMConfig(samples=32, elites=4, iterations=3)
    a = plan(quadratic(target), 3, 2, cfg, generator=torch.Generator().manual_seed(5))
    b = plan(quadratic(target), 3, 2, cfg, generator=torch.Generator().manual_seed(5))
    c = plan(quadratic(target), 3, 2, cfg, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_does_not_touch_global_rng():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    plan(
        quadratic(targets(2)),
        2,
        2,
        CEMConfig(samples=8, elites=2, iterations=2),
        generator=torch.Generator(),
    )
    assert torch.equal(before, torch.random.get_rng_state())


def test_warm_start_and_std_are_used():
    target = targets(2)
    # With a tiny std and the mean included, the plan stays at the warm start.
    init = target + 0.25
    out = plan(
        quadratic(target),
        2,
        2,
        CEMConfig(samples=8, elites=2, iterations=1, init_std=1e-6),
        init_mean=init,
        generator=torch.Generator(),
    )
    assert torch.allclose(out, init, atol=1e-4)
    # init_std broadcast per action dimension: dimension 1 frozen at its init.
    std = torch.tensor([1.0, 1e-8])
    cfg = CEMConfig(iterations=5)
    out = plan(quadratic(target), 2, 2, cfg, init_std=std, generator=torch.Generator())
    assert torch.allclose(out[..., 1], torch.zeros(2, 5), atol=1e-5)
    assert not torch.allclose(out[..., 0], torch.zeros(2, 5), atol=1e-2)


def test_dtype_and_device_follow_init_mean():
    init = torch.zeros(2, 3, 1, dtype=torch.float64)
    out = plan(
        lambda c: c.pow(2).sum(dim=(-2, -1)),
        2,
        1,
        CEMConfig(samples=8, elites=2, iterations=2, horizon=3),
        init_mean=init,
        generator=torch.Generator(),
    )
    assert out.dtype == torch.float64 and out.device == init.device


def ok_cost(c):
    return c.pow(2).sum(dim=(-2, -1))


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"samples": 10, "elites": 11}, "elites"),
        ({"elites": 1, "samples": 10}, "elites"),
        ({"samples": 0}, "samples"),
        ({"iterations": 0}, "iterations"),
        ({"init_std": 0.0}, "init_std"),
        ({"min_std": -1.0}, "min_std"),
        ({"momentum": 1.0}, "momentum"),
        ({"returns": "last"}, "returns"),
    ],
)
def test_bad_budget_names_the_field(budget, field):
    with pytest.raises(ValueError, match=rf"cem\.{field}"):
        CEMConfig(**{"samples": 8, "elites": 2, "iterations": 1, **budget})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"init_mean": torch.zeros(2, 4, 2)}, "init_mean"),
        ({"init_std": torch.ones(3)}, "init_std"),
        ({"init_std": torch.tensor([1.0, 0.0])}, "init_std"),
        ({"generator": None}, "generator"),
        ({"batch": 0}, "batch"),
        ({"action_dim": 0}, "action_dim"),
    ],
)
def test_bad_solve_arguments_name_the_field(kwargs, field):
    args = {"batch": 2, "action_dim": 2, "generator": torch.Generator(), **kwargs}
    solver = CEMSolver(CEMConfig(samples=8, elites=2, iterations=1, horizon=3))
    with pytest.raises(ValueError, match=field):
        solver.solve(ok_cost, **args)


@pytest.mark.parametrize(
    "bad_cost",
    [
        lambda c: c.pow(2).sum(dim=(-1,)),  # (B, S, H)
        lambda c: c.pow(2).sum(dim=(0, -2, -1)),  # (S,)
        lambda c: torch.full(c.shape[:2], float("nan")),
    ],
)
def test_bad_cost_output_raises(bad_cost):
    with pytest.raises(ValueError, match="cost"):
        plan(
            bad_cost,
            2,
            2,
            CEMConfig(samples=8, elites=2, iterations=1, horizon=3),
            generator=torch.Generator(),
        )


def test_config_validates_and_records():
    cfg = CEMConfig()
    assert cfg.to_dict() == {
        "samples": 300,
        "elites": 30,
        "iterations": 30,
        "horizon": 5,
        "init_std": 1.0,
        "min_std": 0.0,
        "momentum": 0.0,
        "returns": "mean",
    }
    with pytest.raises(ValueError, match=r"cem\.elites"):
        CEMConfig(samples=10, elites=20)
    with pytest.raises(ValueError, match=r"cem\.init_std"):
        CEMConfig(init_std=-1.0)
    with pytest.raises(ValueError, match=r"cem\.horizon"):
        CEMConfig(horizon=0)
    with pytest.raises(ValueError, match=r"cem\.momentum"):
        CEMConfig(momentum=-0.1)
    with pytest.raises(ValueError, match=r"cem\.returns"):
        CEMConfig(returns="median")


def test_solver_uses_config_budget():
    calls = []

    def cost(c):
        calls.append(c.shape)
        return ok_cost(c)

    solver = CEMSolver(CEMConfig(samples=12, elites=3, iterations=4, horizon=2))
    r = solver.solve(cost, 3, 2, generator=torch.Generator())
    assert r.actions.shape == (3, 2, 2) and calls == [torch.Size([3, 12, 2, 2])] * 4


def test_momentum_blends_the_previous_distribution():
    target = targets(2)
    kw = {"samples": 16, "elites": 4, "iterations": 1}
    plain = CEMSolver(CEMConfig(**kw)).solve(
        quadratic(target), 2, 2, generator=torch.Generator().manual_seed(3)
    )
    half = CEMSolver(CEMConfig(momentum=0.5, **kw)).solve(
        quadratic(target), 2, 2, generator=torch.Generator().manual_seed(3)
    )
    # same draws: mean = 0.5 * init (0) + 0.5 * elite mean, std = 0.5 * 1 + 0.5 * elite std
    torch.testing.assert_close(half.actions, 0.5 * plain.actions)
    torch.testing.assert_close(half.std, 0.5 + 0.5 * plain.std)


def test_returns_best_gives_the_lowest_cost_candidate_seen():
    target = targets(3, seed=4)
    seen = []

    def cost(c):
        out = quadratic(target)(c)
        seen.append(out.min(1).values)
        return out

    solver = CEMSolver(CEMConfig(samples=16, elites=4, iterations=4, returns="best"))
    r = solver.solve(cost, 3, 2, generator=torch.Generator().manual_seed(0))
    lowest = torch.stack(seen).min(0).values
    torch.testing.assert_close(r.cost, lowest)
    torch.testing.assert_close(quadratic(target)(r.actions[:, None])[:, 0], lowest)


class PushModel:
    """An analytic world model with a contact: a point pusher (steps of 0.5 x clipped actions)
    shoves a disc of radius 1 out of its way. Episodes push the disc along a random direction
    with a noisy constant action (the "true" sequence); the goal is where that sequence ends,
    moved a little (so a better plan than the true one exists). Like the Push-T cost, it is
    flat until contact and the goal is far from the zero-action start."""

    F, H, R = 5, 5, 1.0

    def __init__(self, batch: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        angle = 2 * math.pi * torch.rand(batch, generator=g)
        u = torch.stack([angle.cos(), angle.sin()], -1)  # (B, 2)
        self.agent, self.block = -3.0 * u, torch.zeros(batch, 2)
        speed = 0.6 + 0.3 * torch.rand(batch, 1, generator=g)
        true = (u * speed)[:, None].repeat(1, self.H * self.F, 1).reshape(batch, self.H, -1)
        self.true = true + 0.1 * torch.randn(true.shape, generator=g)  # (B, H, F*2)
        p, q = self.rollout(self.true[:, None])
        self.goal_agent = p[:, 0] + 0.3 * torch.randn(batch, 2, generator=g)
        self.goal_block = q[:, 0] + 0.3 * torch.randn(batch, 2, generator=g)

    def rollout(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """candidates (B, S, H, F*2) -> final pusher and disc positions, each (B, S, 2)."""
        b, s = c.shape[:2]
        a = c.reshape(b, s, -1, 2).clamp(-1.0, 1.0)
        p, q = self.agent[:, None].expand(b, s, 2), self.block[:, None].expand(b, s, 2)
        for t in range(a.shape[2]):
            p = p + 0.5 * a[:, :, t]
            d = p - q
            dist = d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            q = q - d / dist * (self.R - dist).clamp_min(0)  # pushed out of the pusher
        return p, q

    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        p, q = self.rollout(c)
        return (p - self.goal_agent[:, None]).pow(2).sum(-1) + (q - self.goal_block[:, None]).pow(
            2
        ).sum(-1)


@pytest.mark.parametrize("budget", [(128, 16, 30), (300, 30, 30)])
def test_returned_plan_scores_at_least_as_well_as_the_true_sequence(budget):
    """Regression (issue H): the learned Push-T models scored CEM's returned plan worse than the
    true actions, while CEM had sampled better ones; so does this analytic model. Returning the
    best candidate scored fixes it; the paper's final mean does not, even at the paper's
    budget (it leaves the narrow post-contact valley the elites sit in)."""
    model = PushModel(16)
    s, k, it = budget
    true_cost = model(model.true[:, None])[:, 0]
    cfg = CEMConfig(samples=s, elites=k, iterations=it)
    best = CEMSolver(dataclasses.replace(cfg, returns="best")).solve(
        model, 16, 10, generator=torch.Generator().manual_seed(0)
    )
    assert (model(best.actions[:, None])[:, 0] <= true_cost).all()
    mean = CEMSolver(cfg).solve(model, 16, 10, generator=torch.Generator().manual_seed(0))
    assert (model(mean.actions[:, None])[:, 0] <= true_cost).float().mean() < 1.0


@pytest.mark.parametrize("include_mean", [True, False])
def test_include_mean_makes_candidate_zero_the_mean(include_mean):
    firsts = []

    def cost(c):
        firsts.append(c[:, 0].clone())
        return ok_cost(c)

    init = torch.full((2, 3, 2), 0.5)
    solver = CEMSolver(
        CEMConfig(samples=8, elites=2, iterations=1, horizon=3), include_mean=include_mean
    )
    solver.solve(cost, 2, 2, generator=torch.Generator(), init_mean=init)
    assert torch.equal(firsts[0], init) == include_mean
