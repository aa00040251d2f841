"""Cross-entropy method over action sequences, batched over episodes (SPEC section 9).

One ``CEMSolver.solve`` call optimises B independent episodes at once: every iteration draws S
candidate sequences per episode, scores all B * S of them with ONE call of the cost, and refits
each episode's Gaussian to its own top-k elites (mean and standard deviation per step and action
dimension). The paper's budget is S = 300 samples, k = 30 elites, 30 iterations, horizon 5,
initial mean 0 and std 1 in normalised action space. The official code plans one episode at a
time; batching the episodes is the speed-up SPEC section 9 points at.

As in DINO-WM's ``CEMPlanner`` (which C-JEPA's planner copies) candidate 0 of every iteration is
the current mean itself, the elite std is the unbiased one, and the returned plan is the final
mean. Every draw comes from the caller's ``torch.Generator``; the device is the generator's (or
``init_mean``'s), never a global default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

#: cost(candidates (B, S, H, A)) -> (B, S), lower is better.
Cost = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CEMConfig:
    """A CEM budget. Defaults are the paper's Push-T settings (SPEC section 9)."""

    samples: int = 300
    elites: int = 30
    iterations: int = 30
    horizon: int = 5
    init_std: float = 1.0
    min_std: float = 0.0
    momentum: float = 0.0
    returns: str = "mean"

    def __post_init__(self) -> None:
        _check_budget(self.samples, self.elites, self.iterations, self.horizon, prefix="cem.")
        if not self.init_std > 0:
            raise ValueError(f"cem.init_std must be > 0, got {self.init_std}")
        _check_update(self.min_std, self.momentum, self.returns, prefix="cem.")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


RETURNS = ("mean", "best")


@dataclass(frozen=True)
class PlanResult:
    """What ``CEMSolver.solve`` returns.

    actions: (B, H, A) the plan: the final mean of each episode's sampling distribution
        (``returns="mean"``) or its lowest-cost candidate of all iterations (``"best"``).
    cost: (B,) the lowest cost sampled in the last iteration (``"mean"``) or of all (``"best"``).
    std: (B, H, A) the final standard deviation.
    calls: number of cost calls made (= iterations).
    """

    actions: torch.Tensor
    cost: torch.Tensor
    std: torch.Tensor
    calls: int


def _check_budget(samples: int, elites: int, iterations: int, horizon: int, prefix: str) -> None:
    for name, value in (("samples", samples), ("iterations", iterations), ("horizon", horizon)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{prefix}{name} must be an int >= 1, got {value!r}")
    if not isinstance(elites, int) or not 2 <= elites <= samples:
        raise ValueError(
            f"{prefix}elites must be an int in [2, samples={samples}] (the elite std needs two), "
            f"got {elites!r}"
        )


def _check_update(min_std: float, momentum: float, returns: str, prefix: str) -> None:
    if not min_std >= 0:
        raise ValueError(f"{prefix}min_std must be >= 0, got {min_std}")
    if not 0 <= momentum < 1:
        raise ValueError(f"{prefix}momentum must be in [0, 1), got {momentum}")
    if returns not in RETURNS:
        raise ValueError(f"{prefix}returns must be one of {RETURNS}, got {returns!r}")


class CEMSolver:
    """CEM with one budget (``CEMConfig``): ``solve(cost, batch, action_dim, generator=...)``.

    The single planning entry: ``plan`` wraps it, the MPC loop (``cjepa.planning.mpc``) takes any
    object with this ``solve`` signature.

    Args:
        config: samples, elites, iterations, horizon H, init_std, min_std, momentum, returns.
        include_mean: make candidate 0 of every iteration the current mean (DINO-WM does).
    """

    def __init__(self, config: CEMConfig, *, include_mean: bool = True) -> None:
        self.config, self.include_mean = config, include_mean

    def solve(
        self,
        cost: Cost,
        batch: int,
        action_dim: int,
        *,
        generator: torch.Generator,
        init_mean: torch.Tensor | None = None,
        init_std: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> PlanResult:
        """Plan ``batch`` episodes; one cost call per iteration scores every candidate.

        Args:
            cost: maps candidates (B, S, H, A) to costs (B, S), lower is better.
            batch, action_dim: B and A (H is the config's horizon).
            generator: the source of every draw; its device is the planning device unless
                ``init_mean`` or ``device`` says otherwise (they must agree in type).
            init_mean: (B, H, A) warm start; None = zeros.
            init_std: tensor broadcastable to (B, H, A), > 0, replacing the config's float
                ``init_std`` (e.g. one std per action dimension); None = the config's.
            device, dtype: where and in what precision to plan when ``init_mean`` is None.

        Returns:
            PlanResult(actions (B, H, A), cost (B,), std (B, H, A), calls).
        """
        c = self.config
        mean, std = self._start(batch, action_dim, generator, init_mean, init_std, device, dtype)
        # No gradients, and no host-device sync inside the loop: the NaN check is accumulated on
        # the device and read once at the end, so on a GPU the iterations queue back to back.
        with torch.inference_mode():
            best = torch.full((batch,), float("inf"), device=mean.device, dtype=mean.dtype)
            best_actions = mean.clone()
            nan_seen = torch.zeros((), dtype=torch.bool, device=mean.device)
            for _ in range(c.iterations):
                top, elite, nan = self._elites(cost, self._sample(mean, std, generator))
                nan_seen |= nan
                if c.returns == "best":
                    better = top[:, 0] < best  # (B,)
                    best = torch.where(better, top[:, 0], best)
                    best_actions = torch.where(better[:, None, None], elite[:, 0], best_actions)
                else:
                    best = top[:, 0]
                # momentum m keeps m of the previous distribution (0: the paper's plain refit)
                mean = c.momentum * mean + (1 - c.momentum) * elite.mean(dim=1)
                std = (c.momentum * std + (1 - c.momentum) * elite.std(dim=1)).clamp_min(c.min_std)
            if bool(nan_seen):
                raise ValueError("cost returned NaN for some candidates")
        actions = best_actions if c.returns == "best" else mean
        # clones made outside inference mode are ordinary tensors the caller may edit in place
        return PlanResult(actions.clone(), best.clone(), std.clone(), c.iterations)

    def _start(
        self,
        batch: int,
        action_dim: int,
        generator: torch.Generator,
        init_mean: torch.Tensor | None,
        init_std: torch.Tensor | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The checked initial mean and std, each (B, H, A), on the planning device."""
        for name, value in (("batch", batch), ("action_dim", action_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        shape = (batch, self.config.horizon, action_dim)
        if init_mean is not None:
            if tuple(init_mean.shape) != shape:
                got = tuple(init_mean.shape)
                raise ValueError(f"init_mean must be (B, H, A) = {shape}, got {got}")
            if device is not None and torch.device(device) != init_mean.device:
                raise ValueError(f"device={device} disagrees with init_mean on {init_mean.device}")
            device = init_mean.device
            dtype = dtype or init_mean.dtype
        device = torch.device(device) if device is not None else generator.device
        if device.type != generator.device.type:
            raise ValueError(
                f"generator is on {generator.device} but planning runs on {device}; pass a "
                "generator created on the planning device"
            )
        dtype = dtype or torch.get_default_dtype()
        if init_mean is None:
            mean = torch.zeros(shape, device=device, dtype=dtype)
        else:
            mean = init_mean.to(dtype=dtype).clone()
        std_t = torch.as_tensor(
            self.config.init_std if init_std is None else init_std, device=device, dtype=dtype
        )
        try:
            std = torch.broadcast_to(std_t, shape).clone()
        except RuntimeError as err:
            raise ValueError(
                f"init_std {tuple(std_t.shape)} does not broadcast to (B, H, A) = {shape}"
            ) from err
        if not (std > 0).all():
            raise ValueError("init_std must be > 0 everywhere")
        return mean, std

    def _sample(
        self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """(B, S, H, A) candidates around mean (B, H, A); candidate 0 the mean itself."""
        b, h, a = mean.shape
        noise = torch.randn(
            (b, self.config.samples, h, a), generator=generator, device=mean.device,
            dtype=mean.dtype,
        )  # fmt: skip
        candidates = mean.unsqueeze(1) + std.unsqueeze(1) * noise  # (B, S, H, A)
        if self.include_mean:
            candidates[:, 0] = mean
        return candidates

    def _elites(
        self, cost: Cost, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score candidates (B, S, H, A) with one cost call; the top-k costs (B, k), ascending,
        their candidates (B, k, H, A), and whether any cost was NaN (a 0-d bool tensor, left on
        the device)."""
        b, s, h, a = candidates.shape
        costs = cost(candidates)
        if not isinstance(costs, torch.Tensor) or tuple(costs.shape) != (b, s):
            got = tuple(costs.shape) if isinstance(costs, torch.Tensor) else type(costs).__name__
            raise ValueError(f"cost must return (B, S) = {(b, s)} costs, got {got}")
        top, idx = costs.topk(self.config.elites, dim=1, largest=False)  # (B, k), ascending
        elite = candidates.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))  # (B, k, H, A)
        return top, elite, torch.isnan(costs).any()


def plan(
    cost: Cost,
    batch: int,
    action_dim: int,
    config: CEMConfig,
    *,
    generator: torch.Generator,
    init_mean: torch.Tensor | None = None,
    init_std: torch.Tensor | None = None,
) -> torch.Tensor:
    """The actions (B, H, A) of ``CEMSolver(config).solve``; see it for the arguments."""
    solver = CEMSolver(config)
    return solver.solve(
        cost, batch, action_dim, generator=generator, init_mean=init_mean, init_std=init_std
    ).actions
