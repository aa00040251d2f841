"""Receding-horizon control around a solver, kept apart from it (STYLE: stable-worldmodel's shape).

Each ``act`` plans H action blocks for every episode, returns the first ``execute`` of them, and
keeps the plan: the next plan starts from it shifted by ``execute`` blocks, its tail filled with
the initial mean (zero). The paper executes the whole plan (horizon 5, receding horizon 5) and
replans from scratch, which is ``execute = horizon``. The environment loop belongs to the caller
(the Push-T harness): it observes, builds a cost for the current histories, calls ``act``, steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cjepa.planning.cem import CEMSolver, Cost, PlanResult


def shift_plan(mean: torch.Tensor, steps: int) -> torch.Tensor:
    """A plan advanced by ``steps`` executed blocks, zero-filled at the end.

    Args:
        mean: (B, H, A) the previous plan.
        steps: blocks executed since it was made, 0 <= steps.

    Returns:
        (B, H, A) with out[:, t] = mean[:, t + steps] for t + steps < H, else 0.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    h = mean.shape[1]
    k = min(steps, h)
    return torch.cat([mean[:, k:], mean.new_zeros(mean.shape[0], k, mean.shape[2])], dim=1)


class RecedingHorizon:
    """Plans B episodes together and remembers each one's plan for the next warm start.

    Args:
        solver: a ``CEMSolver`` (its config's horizon is H).
        batch: B episodes.
        action_dim: A, the predictor's action block size (raw A x frameskip).
        execute: blocks returned and executed per ``act``, 1 <= execute <= H.
        generator: source of every draw; the device is the generator's unless ``device``.
        warm_start: start each plan from the previous one, shifted (False: always from zero).
    """

    def __init__(
        self,
        solver: CEMSolver,
        batch: int,
        action_dim: int,
        *,
        execute: int,
        generator: torch.Generator,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        warm_start: bool = True,
    ) -> None:
        h = solver.config.horizon
        if not isinstance(execute, int) or not 1 <= execute <= h:
            raise ValueError(f"execute must be an int in [1, horizon={h}], got {execute!r}")
        if batch < 1 or action_dim < 1:
            raise ValueError(f"batch and action_dim must be >= 1, got {batch} and {action_dim}")
        self.solver, self.batch, self.action_dim = solver, batch, action_dim
        self.execute, self.generator, self.warm_start = execute, generator, warm_start
        device = torch.device(device) if device is not None else generator.device
        self.mean = torch.zeros(
            batch, h, action_dim, device=device, dtype=dtype or torch.get_default_dtype()
        )  # (B, H, A): the warm start of the next plan
        self.last: PlanResult | None = None
        self.plans = 0

    def reset(self, which: torch.Tensor | Sequence[int] | None = None) -> None:
        """Forget the plans of episodes ``which`` (bool (B,) mask or indices; None = all)."""
        if which is None:
            self.mean.zero_()
            return
        idx = torch.as_tensor(which, device=self.mean.device)
        if idx.dtype == torch.bool and idx.shape != (self.batch,):
            raise ValueError(f"which as a mask must be (B,) = ({self.batch},), got {idx.shape}")
        self.mean[idx] = 0

    def act(self, cost: Cost) -> torch.Tensor:
        """Plan every episode and return the blocks to execute now.

        Args:
            cost: candidates (B, S, H, A) -> (B, S), for the episodes' current states.

        Returns:
            (B, execute, A) the first ``execute`` blocks of each episode's plan.
        """
        init = self.mean if self.warm_start else torch.zeros_like(self.mean)
        result = self.solver.solve(
            cost,
            self.batch,
            self.action_dim,
            generator=self.generator,
            init_mean=init,
        )
        self.last, self.plans = result, self.plans + 1
        self.mean = shift_plan(result.actions, self.execute)
        return result.actions[:, : self.execute]
