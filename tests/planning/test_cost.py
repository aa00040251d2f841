import pytest
import torch

from cjepa.planning.cost import match_permutations, match_scipy, pairwise_sq_dist, slot_goal_cost

B, S, N, D, P = 3, 7, 4, 8, 4


def data(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, S, n, D, generator=g),
        torch.randn(B, n, D, generator=g),
        torch.randn(B, S, P, generator=g),
        torch.randn(B, P, generator=g),
    )


def brute_force(pred, goal):
    """Slow reference: min over all permutations, one candidate at a time, in float64."""
    import itertools

    out = torch.empty(pred.shape[:2], dtype=torch.float64)
    for b in range(pred.shape[0]):
        for s in range(pred.shape[1]):
            p, g = pred[b, s].double(), goal[b].double()
            out[b, s] = min(
                (p - g[list(perm)]).pow(2).mean() for perm in itertools.permutations(range(len(g)))
            )
    return out


def test_matches_brute_force_and_ignores_order():
    pred, goal, _, _ = data()
    cost = slot_goal_cost(pred, goal)
    assert cost.shape == (B, S)
    assert torch.allclose(cost.double(), brute_force(pred, goal), atol=1e-5)


def test_invariant_to_slot_permutations_of_prediction_and_goal():
    pred, goal, pp, gp = data(1)
    base = slot_goal_cost(pred, goal, pp, gp)
    g = torch.Generator().manual_seed(2)
    pred_perm = pred[:, :, torch.randperm(N, generator=g)]
    goal_perm = goal[:, torch.randperm(N, generator=g)]
    assert torch.allclose(slot_goal_cost(pred_perm, goal_perm, pp, gp), base, atol=1e-6)
    # A permuted copy of the goal costs zero; "none" matching would not see that.
    exact = goal[:, None, torch.randperm(N, generator=g)].expand(B, S, N, D)
    assert slot_goal_cost(exact, goal).abs().max() < 1e-6
    assert (slot_goal_cost(exact, goal, match="none") > 1e-2).all()


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_permutation_path_equals_scipy(n):
    pred, goal, pp, gp = data(3, n=n)
    a = slot_goal_cost(pred, goal, pp, gp, solver="permutations")
    b = slot_goal_cost(pred, goal, pp, gp, solver="scipy")
    assert torch.allclose(a, b, atol=1e-6)


def test_assignments_agree_on_distances():
    pred, goal, _, _ = data(4, n=5)
    flat_p, flat_g = pred.reshape(-1, 5, D), goal[:, None].expand(B, S, 5, D).reshape(-1, 5, D)
    dist = pairwise_sq_dist(flat_p, flat_g)
    ref = (flat_p[:, :, None] - flat_g[:, None]).pow(2).sum(-1)
    assert torch.allclose(dist, ref, atol=1e-4)
    rows = torch.arange(5)
    ta = dist[torch.arange(dist.shape[0])[:, None], rows, match_permutations(dist)].sum(-1)
    tb = dist[torch.arange(dist.shape[0])[:, None], rows, match_scipy(dist)].sum(-1)
    assert torch.allclose(ta, tb, atol=1e-5)


def test_large_n_uses_scipy_and_agrees_with_auto():
    pred, goal, _, _ = data(5, n=8)
    assert torch.allclose(
        slot_goal_cost(pred, goal), slot_goal_cost(pred, goal, solver="scipy"), atol=1e-6
    )


def test_proprio_term_and_weight():
    pred, goal, pp, gp = data(6)
    slots_only = slot_goal_cost(pred, goal)
    with_p = slot_goal_cost(pred, goal, pp, gp, proprio_weight=2.0)
    expected = slots_only + 2.0 * (pp - gp[:, None]).pow(2).mean(-1)
    assert torch.allclose(with_p, expected, atol=1e-6)


def test_none_match_is_plain_mse():
    pred, goal, _, _ = data(7)
    expected = (pred - goal[:, None]).pow(2).mean(dim=(-2, -1))
    assert torch.allclose(slot_goal_cost(pred, goal, match="none"), expected)


@pytest.mark.parametrize(
    ("change", "msg"),
    [
        ({"goal_slots": torch.zeros(B, N + 1, D)}, "goal_slots"),
        ({"pred_slots": torch.zeros(B, N, D)}, "pred_slots"),
        ({"goal_proprio": None}, "goal_proprio"),
        ({"pred_proprio": torch.zeros(B, S + 1, P)}, "pred_proprio"),
        ({"match": "greedy"}, "match"),
        ({"solver": "lapjv"}, "solver"),
    ],
)
def test_bad_inputs_raise(change, msg):
    pred, goal, pp, gp = data()
    args = {"pred_slots": pred, "goal_slots": goal, "pred_proprio": pp, "goal_proprio": gp}
    kw = {k: change.pop(k) for k in ("match", "solver") if k in change}
    args.update(change)
    with pytest.raises(ValueError, match=msg):
        slot_goal_cost(**args, **kw)
