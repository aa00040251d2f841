"""Masking strategies over the history window (SPEC section 5).

Every strategy is a small pure function ``(m, time, slots, generator) -> (B, T, N) bool`` that
hides, for each sample b, exactly ``m[b] * (time - 1)`` cells at steps t >= 1 (frame 0 is the
identity anchor and is never hidden). ``make_mask`` chooses |M| per sample according to the
sampling rule and dispatches to the registered strategy, so every unit hides the same number of
cells for a given |M|: ablations across units are at matched budget.

Budget vs ratio: the paper's token/tube tables quote a masking ratio (14/28/42/56% on CLEVRER
with N = 7). A ratio is the fraction of maskable history cells (steps t >= 1, all N slots) and
converts to a budget by rounding to the nearest integer, halves up:
``budget = floor(ratio * N + 0.5)``; the reverse is ``ratio = budget / N``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

#: ``sampling="fixed"`` draws one pattern from a torch generator with this constant seed (the
#: official code re-seeds its mask generator on every call, SPEC section 5, but with numpy and
#: the run's seed: ``sampling="fixed_official"`` reproduces that draw exactly).
FIXED_SEED = 42

SAMPLINGS = ("uniform", "exact", "fixed", "fixed_official")
#: Units ``fixed_official`` supports: the official code masks whole objects.
OFFICIAL_UNITS = ("object", "none")

Strategy = Callable[[list[int], int, int, torch.Generator], torch.Tensor]


def _hide_objects(m: list[int], time: int, slots: int, g: torch.Generator) -> torch.Tensor:
    """Hide m[b] whole objects at every step t >= 1."""
    batch = len(m)
    keys = torch.rand(batch, slots, generator=g)  # (B, N)
    rank = keys.argsort(dim=1).argsort(dim=1)  # rank of each slot in a random order
    hidden = rank < torch.tensor(m).unsqueeze(1)  # (B, N)
    mask = hidden.unsqueeze(1).expand(batch, time, slots).clone()  # (B, T, N)
    mask[:, 0] = False
    return mask


def _hide_tokens(m: list[int], time: int, slots: int, g: torch.Generator) -> torch.Tensor:
    """Hide m[b] * (time - 1) random (t, slot) cells with t >= 1."""
    batch = len(m)
    cells = (time - 1) * slots
    keys = torch.rand(batch, cells, generator=g)
    rank = keys.argsort(dim=1).argsort(dim=1)
    hidden = rank < (torch.tensor(m) * (time - 1)).unsqueeze(1)  # (B, (T-1) * N)
    mask = torch.zeros(batch, time, slots, dtype=torch.bool)
    mask[:, 1:] = hidden.view(batch, time - 1, slots)
    return mask


def _tube_cells(
    target: int, n_blocks: int, time: int, slots: int, u: list[float], order: list[int]
) -> list[tuple[int, int]]:
    """Cells (t, n) of the union of ``n_blocks`` tubes with exactly ``target`` cells.

    A tube is a contiguous span of steps t >= 1 over one or more slots. Each block's shape comes
    from four uniforms per block in ``u``; ``order`` is a random permutation of the slots used to
    pick the block's slots. Blocks are added in turn and trimmed (cells dropped from the end of
    the span) so the union never exceeds ``target``; the last block is then extended along its
    own slots' time axis, nearest steps first, and onto further slots until the union is exact.
    """
    steps = time - 1
    chosen: dict[tuple[int, int], None] = {}  # insertion-ordered set
    last_slots: list[int] = []
    last_span = (1, 1)
    for k in range(n_blocks):
        uw, ul, us, uo = u[4 * k : 4 * k + 4]
        width = 1 + int(uw * max(1, (slots + 1) // 2))  # 1 .. ceil(N / 2) slots
        length = 1 + int(ul * steps)  # 1 .. T - 1 steps
        start = 1 + int(us * (steps - length + 1))
        offset = int(uo * slots)
        block_slots = [order[(offset + j) % slots] for j in range(width)]
        for n in block_slots:
            for t in range(start, start + length):
                if len(chosen) == target:
                    break
                chosen.setdefault((t, n))
        last_slots, last_span = block_slots, (start, start + length)
    # Extend the last block: its own slots over the rest of the history, steps nearest the span
    # first (the tube grows in time), then the remaining slots in the random order.
    by_distance = sorted(
        range(1, time), key=lambda t: max(last_span[0] - t, t - (last_span[1] - 1), 0)
    )
    extension = last_slots + [n for n in order if n not in last_slots]
    for n in extension:
        for t in by_distance:
            if len(chosen) == target:
                return list(chosen)
            chosen.setdefault((t, n))
    return list(chosen)


def _hide_tubes(m: list[int], time: int, slots: int, g: torch.Generator) -> torch.Tensor:
    """Hide m[b] tubes (V-JEPA-style blocks in (time, slot) space) covering m[b] * (T-1) cells."""
    batch = len(m)
    max_m = max(m, default=0)
    # Draw every random number up front from the generator, then build masks in plain Python.
    u = torch.rand(batch, 4 * max(max_m, 1), generator=g).tolist()
    orders = torch.rand(batch, slots, generator=g).argsort(dim=1).tolist()
    mask = torch.zeros(batch, time, slots, dtype=torch.bool)
    for b, mb in enumerate(m):
        if mb == 0:
            continue
        cells = _tube_cells(mb * (time - 1), mb, time, slots, u[b], orders[b])
        t_idx, n_idx = zip(*cells, strict=True)
        mask[b, list(t_idx), list(n_idx)] = True
    return mask


def _hide_nothing(m: list[int], time: int, slots: int, g: torch.Generator) -> torch.Tensor:
    return torch.zeros(len(m), time, slots, dtype=torch.bool)


#: Masking units by name; configs select one with ``masking.unit``.
STRATEGIES: dict[str, Strategy] = {
    "object": _hide_objects,
    "token": _hide_tokens,
    "tube": _hide_tubes,
    "none": _hide_nothing,
}


def make_mask(
    unit: str,
    batch: int,
    time: int,
    slots: int,
    budget: int,
    *,
    generator: torch.Generator,
    sampling: str = "uniform",
    seed: int | None = None,
) -> torch.Tensor:
    """Sample a history mask.

    Args:
        unit: ``"object"``, ``"token"``, ``"tube"`` or ``"none"``.
        batch, time, slots: B, T_h (history steps, >= 2) and N.
        budget: |M|, a number of objects in 0..N. Token and tube hide |M| * (T - 1) cells.
        generator: the only source of randomness (the global RNG is never touched).
        sampling: ``"uniform"``: |M| drawn per sample from 0..budget (paper); ``"exact"``:
            |M| = budget with fresh cells per sample; ``"fixed"``: |M| = budget and one pattern,
            drawn from ``FIXED_SEED``, shared by every sample and every call; ``"fixed_official"``:
            the official code's pattern, object slots
            ``np.random.RandomState(seed).choice(slots, budget, replace=False)`` hidden at every
            step t >= 1 in every sample (``generator`` is not read; units object and none).
        seed: the run's seed (``train.seed``), required by ``"fixed_official"`` only.

    Returns:
        (B, T, N) bool tensor on the CPU, True = hidden. Frame 0 is never hidden.
    """
    _check_mask_args(unit, batch, time, slots, budget, generator, sampling)
    strategy = STRATEGIES[unit]
    if sampling == "fixed_official":
        return _official_fixed(unit, batch, time, slots, budget, seed)
    if sampling == "fixed":
        fixed = torch.Generator().manual_seed(FIXED_SEED)
        return strategy([budget], time, slots, fixed).expand(batch, time, slots).clone()
    if sampling == "uniform":
        m = torch.randint(0, budget + 1, (batch,), generator=generator).tolist()
    else:
        m = [budget] * batch
    return strategy(m, time, slots, generator)


def _check_mask_args(
    unit: str,
    batch: int,
    time: int,
    slots: int,
    budget: int,
    generator: torch.Generator,
    sampling: str,
) -> None:
    """``make_mask``'s argument checks; each error names the argument."""
    if unit not in STRATEGIES:
        raise ValueError(f"masking unit must be one of {sorted(STRATEGIES)}, got {unit!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"masking sampling must be one of {list(SAMPLINGS)}, got {sampling!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if time < 2:
        raise ValueError(f"time must be >= 2 (frame 0 is the anchor), got {time}")
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    if not 0 <= budget <= slots:
        raise ValueError(f"budget |M| must be in 0..slots={slots}, got {budget}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _official_fixed(
    unit: str, batch: int, time: int, slots: int, budget: int, seed: int | None
) -> torch.Tensor:
    """The official code's fixed object mask: a numpy ``RandomState(seed)`` (its own instance,
    never numpy's global state) picks ``budget`` distinct object slots."""
    if unit not in OFFICIAL_UNITS:
        raise ValueError(
            f"masking sampling 'fixed_official' supports units {list(OFFICIAL_UNITS)}, got {unit!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"masking sampling 'fixed_official' needs an int seed, got {seed!r}")
    mask = torch.zeros(batch, time, slots, dtype=torch.bool)
    if unit == "object" and budget > 0:
        picked = np.random.RandomState(seed).choice(slots, budget, replace=False)
        mask[:, 1:, torch.from_numpy(picked)] = True
    return mask


def budget_from_ratio(ratio: float, slots: int) -> int:
    """|M| for a masking ratio of the maskable history cells: nearest integer, halves up."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"masking ratio must be in [0, 1], got {ratio}")
    return math.floor(ratio * slots + 0.5)


def ratio_from_budget(budget: int, slots: int) -> float:
    """The fraction of maskable history cells (t >= 1) that |M| = budget hides."""
    return budget / slots
