"""The units a training loop is made of: the model and optimiser for a config, the learning-rate
schedule, mask sampling, and ``train_step`` / ``eval_step`` (SPEC sections 4 to 6).

``cjepa.train`` runs them as a seeded, resumable loop (and re-exports every name here).
"""

from __future__ import annotations

import math

import torch

from cjepa.config import ExperimentConfig, LossConfig, MaskingConfig, OptimConfig
from cjepa.losses import cjepa_loss, future_loss
from cjepa.masking import make_mask
from cjepa.predictor import SlotPredictor
from cjepa.types import SlotBatch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` when ``threads`` > 0 (``train.threads``)."""
    if threads > 0:
        torch.set_num_threads(threads)


def build_predictor(cfg: ExperimentConfig) -> SlotPredictor:
    """The predictor for ``cfg``, initialised from ``train.seed`` without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return SlotPredictor(
            cfg.predictor,
            slot_dim=cfg.data.slot_dim,
            history=cfg.data.history,
            n_future=cfg.data.n_future,
            action_dim=cfg.data.action_dim * cfg.data.frameskip,
            proprio_dim=cfg.data.proprio_dim,
        )


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam / AdamW over ``model``'s parameters with the multi-tensor (``foreach``) update.

    ``foreach`` gives the same weights bit for bit as torch's per-parameter loop (the CPU
    default; ``tests/test_train.py`` checks it) at a third of the optimiser's time on the smoke
    predictor (docs/benchmarks.md, "make run by stage"); ``fused`` would be faster still but
    rounds differently, which would change the reference table.
    """
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, then constant or cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


class MaskSampler:
    """Draws history masks for a masking config from its own generator; ``seed`` (the run's
    ``train.seed``) is what ``sampling: fixed_official`` draws its pattern from."""

    def __init__(
        self, cfg: MaskingConfig, generator: torch.Generator, seed: int | None = None
    ) -> None:
        self.cfg, self.generator, self.seed = cfg, generator, seed

    def __call__(self, batch: int, time: int, slots: int) -> torch.Tensor:
        return make_mask(
            self.cfg.unit,
            batch,
            time,
            slots,
            self.cfg.budget,
            generator=self.generator,
            sampling=self.cfg.sampling,
            seed=self.seed,
        )


def to_device(batch: SlotBatch, device: torch.device) -> SlotBatch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}  # type: ignore[return-value]


def forward_loss(
    model: torch.nn.Module, batch: SlotBatch, loss: LossConfig
) -> dict[str, torch.Tensor]:
    """Predict the window of ``batch`` and score it (SPEC sections 4 and 6)."""
    slots, mask = batch["slots"], batch["mask"]
    th = mask.shape[1]
    out = model(slots[:, :th], mask, actions=batch.get("actions"), proprio=batch.get("proprio"))
    # proprio_target="embedding": the model returns its (detached) embedding of the window's
    # proprio, the official target; otherwise the raw proprio is the target.
    target_p = out.proprio_target if out.proprio_target is not None else batch.get("proprio")
    return cjepa_loss(out.slots, slots, mask, loss, pred_proprio=out.proprio, proprio=target_p)


class NonFiniteLoss(ValueError):
    """A training step produced a NaN or infinite loss; training stops without a checkpoint."""


def train_step(
    model: SlotPredictor,
    batch: SlotBatch,
    optimizer: torch.optim.Optimizer,
    *,
    loss: LossConfig = LossConfig(),  # noqa: B008 (frozen, immutable)
    grad_clip: float | None = None,
) -> dict[str, float]:
    """One optimisation step on ``batch`` (which holds its mask). Returns the loss terms."""
    model.train()
    terms = forward_loss(model, batch, loss)
    optimizer.zero_grad(set_to_none=True)
    metrics = {k: float(v.detach()) for k, v in terms.items()}
    if not math.isfinite(metrics["loss"]):
        # Before backward and the optimiser step: the weights stay as they were, and the
        # caller stops before any checkpoint holds them.
        bad = ", ".join(f"{k} {v}" for k, v in metrics.items() if not math.isfinite(v))
        raise NonFiniteLoss(f"non-finite training loss ({bad}); check the slot data and lr")
    terms["loss"].backward()
    if grad_clip is not None:
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
    optimizer.step()
    return metrics


@torch.no_grad()
def eval_step(
    model: SlotPredictor,
    batch: SlotBatch,
    *,
    loss: LossConfig = LossConfig(),  # noqa: B008
) -> dict[str, float]:
    """Scores ``batch`` in eval mode (see ``EVAL_PROTOCOL``).

    Returns the masked-training loss terms for ``batch["mask"]`` plus ``future_visible`` (future
    MSE with the whole history visible, the inference setting) and ``copy_last`` (the future
    MSE of repeating the last history frame).
    """
    model.eval()
    th = model.history
    slots = batch["slots"]
    metrics = {k: float(v) for k, v in forward_loss(model, batch, loss).items()}
    visible = torch.zeros_like(batch["mask"])
    out = model(slots[:, :th], visible, actions=batch.get("actions"), proprio=batch.get("proprio"))
    metrics["future_visible"] = float(future_loss(out.slots[:, th:], slots[:, th:]))
    last = slots[:, th - 1 : th].expand_as(slots[:, th:])
    metrics["copy_last"] = float(future_loss(last, slots[:, th:]))
    return metrics
