"""Planning cost: distance between predicted last-step latents and the goal's (SPEC section 9).

cost = MSE(matched predicted slots, goal slots) + proprio_weight * MSE(predicted proprio, goal
proprio). Slots are exchangeable, so for slot models each candidate's slots are matched to the
goal's by the Hungarian algorithm on the pairwise squared distances; patch tokens have fixed
positions and are compared in place (``match="none"``).

Two exact matchers: for N <= ``PERMUTATION_MAX_SLOTS`` every permutation is scored in torch in
one batched gather (fast on any device, no host sync per candidate); above that,
``scipy.optimize.linear_sum_assignment`` runs per candidate on the CPU. Both return a minimum-cost
assignment, and the cost is then recomputed from the matched slots, so the two agree.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch

#: Largest N matched by enumerating all N! permutations (720 at N = 6).
PERMUTATION_MAX_SLOTS = 6

MATCHES = ("hungarian", "none")
_CPU = torch.device("cpu")
SOLVERS = ("auto", "permutations", "scipy")


@lru_cache(maxsize=16)
def _permutations(n: int, device: torch.device = _CPU) -> torch.Tensor:
    """(n!, n) long: every permutation of range(n), on ``device``; cached per device, so a
    planner on a GPU copies the table from the host once, not at every CEM iteration."""
    with torch.inference_mode(False):  # an ordinary tensor, whatever mode first asks for it
        perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)
        return perms.to(device)


def pairwise_sq_dist(pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between every predicted and goal slot.

    Args:
        pred: (M, N, D); goal: (M, N, D).

    Returns:
        (M, N, N), entry [m, i, j] = ||pred[m, i] - goal[m, j]||^2.
    """
    cross = pred @ goal.transpose(-2, -1)  # (M, N, N)
    sq = pred.pow(2).sum(-1)[:, :, None] + goal.pow(2).sum(-1)[:, None, :] - 2 * cross
    return sq.clamp_min(0)


def match_permutations(dist: torch.Tensor) -> torch.Tensor:
    """Minimum-cost assignment by scoring all N! permutations.

    Args:
        dist: (M, N, N) cost of assigning predicted slot i to goal slot j.

    Returns:
        (M, N) long, entry [m, i] = the goal slot matched to predicted slot i.
    """
    n = dist.shape[1]
    perms = _permutations(n, dist.device)  # (P, N)
    rows = torch.arange(n, device=dist.device)
    totals = dist[:, rows[None, :], perms].sum(-1)  # (M, P)
    return perms[totals.argmin(dim=1)]


def match_scipy(dist: torch.Tensor) -> torch.Tensor:
    """Minimum-cost assignment with ``scipy.optimize.linear_sum_assignment`` (one per row).

    Args:
        dist: (M, N, N).

    Returns:
        (M, N) long on ``dist``'s device, entry [m, i] = the goal slot matched to slot i.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    host = dist.detach().to("cpu", torch.float64).numpy()
    cols = np.zeros(host.shape[:2], dtype=np.int64)
    for m, d in enumerate(host):
        cols[m] = linear_sum_assignment(d)[1]  # its rows come back sorted 0..N-1
    return torch.as_tensor(cols, device=dist.device)


def match_slots(pred: torch.Tensor, goal: torch.Tensor, solver: str = "auto") -> torch.Tensor:
    """Goal slots reordered to best match each candidate's predicted slots.

    Args:
        pred: (M, N, D); goal: (M, N, D).
        solver: "permutations", "scipy", or "auto" (permutations for N <= 6).

    Returns:
        (M, N, D) goal slots, row i matched to ``pred[:, i]``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    n = pred.shape[1]
    if solver == "auto":
        solver = "permutations" if n <= PERMUTATION_MAX_SLOTS else "scipy"
    dist = pairwise_sq_dist(pred, goal)
    assign = match_permutations(dist) if solver == "permutations" else match_scipy(dist)
    return goal.gather(1, assign[:, :, None].expand(-1, -1, goal.shape[-1]))


def slot_goal_cost(
    pred_slots: torch.Tensor,
    goal_slots: torch.Tensor,
    pred_proprio: torch.Tensor | None = None,
    goal_proprio: torch.Tensor | None = None,
    *,
    match: str = "hungarian",
    proprio_weight: float = 1.0,
    solver: str = "auto",
) -> torch.Tensor:
    """Cost of every candidate's predicted last step against its episode's goal.

    Args:
        pred_slots: (B, S, N, D) predicted last-step slots (or patch tokens).
        goal_slots: (B, N, D) the goal's slots.
        pred_proprio: (B, S, P) predicted last-step proprio, or None.
        goal_proprio: (B, P) the goal's proprio; given exactly when ``pred_proprio`` is.
        match: "hungarian" (slot models: exchangeable slots) or "none" (fixed token positions).
        proprio_weight: weight of the proprio MSE.
        solver: Hungarian matcher, "auto" | "permutations" | "scipy" (same result).

    Returns:
        (B, S) mean squared slot error + proprio_weight * mean squared proprio error.
    """
    _check_cost_inputs(pred_slots, goal_slots, pred_proprio, goal_proprio, match)
    b, s, n, d = pred_slots.shape
    goal = goal_slots.unsqueeze(1).expand(b, s, n, d)  # (B, S, N, D)
    if match == "hungarian" and n > 1:
        flat = match_slots(pred_slots.reshape(b * s, n, d), goal.reshape(b * s, n, d), solver)
        goal = flat.reshape(b, s, n, d)
    cost = (pred_slots - goal).pow(2).mean(dim=(-2, -1))  # (B, S)
    if pred_proprio is not None:
        cost = cost + proprio_weight * _proprio_mse(pred_proprio, goal_proprio, b, s)
    return cost


def _check_cost_inputs(
    pred_slots: torch.Tensor,
    goal_slots: torch.Tensor,
    pred_proprio: torch.Tensor | None,
    goal_proprio: torch.Tensor | None,
    match: str,
) -> None:
    """``slot_goal_cost``'s checks of match and the slot shapes; proprio given in pairs."""
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    if pred_slots.ndim != 4:
        raise ValueError(f"pred_slots must be (B, S, N, D), got {tuple(pred_slots.shape)}")
    b, _, n, d = pred_slots.shape
    if tuple(goal_slots.shape) != (b, n, d):
        raise ValueError(
            f"goal_slots must be (B, N, D) = {(b, n, d)}, got {tuple(goal_slots.shape)}"
        )
    if (pred_proprio is None) != (goal_proprio is None):
        raise ValueError(
            "pred_proprio and goal_proprio must be given together "
            f"(got pred_proprio={'set' if pred_proprio is not None else None}, "
            f"goal_proprio={'set' if goal_proprio is not None else None})"
        )


def _proprio_mse(
    pred_proprio: torch.Tensor, goal_proprio: torch.Tensor, b: int, s: int
) -> torch.Tensor:
    """(B, S) mean squared error of pred_proprio (B, S, P) against goal_proprio (B, P)."""
    p = goal_proprio.shape[-1]
    if tuple(pred_proprio.shape) != (b, s, p) or tuple(goal_proprio.shape) != (b, p):
        raise ValueError(
            f"pred_proprio must be (B, S, P) = {(b, s, p)} and goal_proprio (B, P) = "
            f"{(b, p)}, got {tuple(pred_proprio.shape)} and {tuple(goal_proprio.shape)}"
        )
    return (pred_proprio - goal_proprio[:, None]).pow(2).mean(-1)
