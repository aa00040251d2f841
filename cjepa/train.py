"""Training: ``train_step`` / ``eval_step`` and a seeded, resumable single-process loop.

Randomness: model init, window sampling, masks and dropout each come from a seed derived from
``train.seed``; windows and masks use their own ``torch.Generator``s, dropout uses torch's global
RNG (seeded at the start, saved and restored with every checkpoint), so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cjepa.config import ExperimentConfig, LossConfig, MaskingConfig, OptimConfig, flatten
from cjepa.data.windows import SlotWindows
from cjepa.losses import cjepa_loss, future_loss, history_loss
from cjepa.masking import make_mask
from cjepa.predictor import SlotPredictor
from cjepa.tracking import NullTracker, Tracker
from cjepa.types import SlotBatch

CHECKPOINT_NAME = "checkpoint.pt"
#: How validation is measured; recorded with every run.
EVAL_PROTOCOL = (
    "val windows drawn with a fixed generator; future MSE with the full history visible "
    "(inference setting) vs copy-last-frame baseline; history MSE on cells hidden by the run's "
    "masking unit at its exact budget"
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


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
    """Draws history masks for a masking config from its own generator."""

    def __init__(self, cfg: MaskingConfig, generator: torch.Generator) -> None:
        self.cfg, self.generator = cfg, generator

    def __call__(self, batch: int, time: int, slots: int) -> torch.Tensor:
        return make_mask(
            self.cfg.unit, batch, time, slots, self.cfg.budget,
            generator=self.generator, sampling=self.cfg.sampling,
        )


def _to(batch: SlotBatch, device: torch.device) -> SlotBatch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}  # type: ignore[return-value]


def forward_loss(
    model: SlotPredictor, batch: SlotBatch, loss: LossConfig
) -> dict[str, torch.Tensor]:
    """Predict the window of ``batch`` and score it (SPEC sections 4 and 6)."""
    th = model.history
    slots, mask = batch["slots"], batch["mask"]
    out = model(slots[:, :th], mask, actions=batch.get("actions"), proprio=batch.get("proprio"))
    return cjepa_loss(
        out.slots, slots, mask, loss, pred_proprio=out.proprio, proprio=batch.get("proprio")
    )


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
    terms["loss"].backward()
    metrics = {k: float(v.detach()) for k, v in terms.items()}
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


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: a temp file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (tensors and plain data only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err


@dataclass
class FitResult:
    model: SlotPredictor
    history: list[dict[str, float]] = field(default_factory=list)
    steps_per_s: float = 0.0
    resumed_from: int = 0


def _evaluate(model, data: SlotWindows, cfg: ExperimentConfig, device) -> dict[str, float]:
    """Mean of ``eval_step`` over ``train.eval_batches`` fixed validation batches."""
    g = torch.Generator().manual_seed(cfg.train.seed + 1000)
    masking = MaskSampler(
        MaskingConfig(cfg.masking.unit, cfg.masking.budget, None, "exact"),
        torch.Generator().manual_seed(cfg.train.seed + 2000),
    )
    totals: dict[str, float] = {}
    for _ in range(cfg.train.eval_batches):
        batch = data.sample(cfg.train.batch_size, g)
        slots = batch["slots"]
        batch["mask"] = masking(slots.shape[0], cfg.data.history, slots.shape[2])
        for k, v in eval_step(model, _to(batch, device), loss=cfg.loss).items():
            totals[k] = totals.get(k, 0.0) + v / cfg.train.eval_batches
    return totals


def fit(
    cfg: ExperimentConfig,
    train_data: SlotWindows,
    val_data: SlotWindows | None = None,
    *,
    out_dir: str | Path | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    tracker: Tracker | None = None,
    progress: bool | None = None,
    log=print,
) -> FitResult:
    """Train ``cfg.train.steps`` steps, resuming from ``out_dir/checkpoint.pt`` when present.

    Args:
        stop_after: stop (with a checkpoint) after this many steps of this call, as if the run
            were interrupted; the schedule still follows ``cfg.train.steps``.
        progress: show a progress bar (None: only when attached to a terminal).
    """
    tc = cfg.train
    device = resolve_device(tc.device)
    tracker = tracker or NullTracker()
    out = Path(out_dir if out_dir is not None else tc.out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    model = build_predictor(cfg).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    data_rng = torch.Generator().manual_seed(tc.seed + 1)
    masks = MaskSampler(cfg.masking, torch.Generator().manual_seed(tc.seed + 2))
    torch.manual_seed(tc.seed + 3)  # dropout
    step = 0
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}  # sums of train metrics since the last log row
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_rng.set_state(state["data_rng"])
        masks.generator.set_state(state["mask_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, history = int(state["step"]), list(state["history"])
        running = dict(state["running"])
        log(f"resumed from {ckpt_path} at step {step}")
    resumed_from = step
    tracker.log_params({**flatten(cfg.to_dict()), "eval_protocol": EVAL_PROTOCOL})

    def checkpoint() -> None:
        payload = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "data_rng": data_rng.get_state(), "mask_rng": masks.generator.get_state(),
            "torch_rng": torch.get_rng_state(), "history": history, "running": running,
            "config": cfg.to_dict(),
        }
        if device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state_all()
        save_checkpoint(ckpt_path, payload)

    end = tc.steps if stop_after is None else min(tc.steps, step + stop_after)
    bar = tqdm(total=tc.steps, initial=step, disable=None if progress is None else not progress,
               desc=cfg.name, unit="step", dynamic_ncols=True)
    t0, first = time.perf_counter(), step
    while step < end:
        lr = lr_at(step, tc.steps, cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = train_data.sample(tc.batch_size, data_rng)
        slots = batch["slots"]
        batch["mask"] = masks(slots.shape[0], cfg.data.history, slots.shape[2])
        metrics = train_step(model, _to(batch, device), optimizer, loss=cfg.loss,
                             grad_clip=cfg.optim.grad_clip)
        step += 1
        bar.update(1)
        for k, v in metrics.items():
            running[k] = running.get(k, 0.0) + v
        if step % tc.log_every == 0 or step == tc.steps:
            n = tc.log_every if step % tc.log_every == 0 else step % tc.log_every
            row = {f"train/{k}": v / n for k, v in running.items()}
            row["lr"] = lr
            running = {}
            if val_data is not None and (step % tc.eval_every == 0 or step == tc.steps):
                row.update({f"val/{k}": v for k, v in _evaluate(model, val_data, cfg, device).items()})
            row["steps_per_s"] = (step - first) / (time.perf_counter() - t0)
            history.append({"step": step, **row})
            tracker.log_metrics(row, step)
            bar.set_postfix(loss=f"{row['train/loss']:.4f}")
            (bar.write if bar.disable is False else log)(format_row(step, tc.steps, row))
        if tc.ckpt_every and step % tc.ckpt_every == 0:
            checkpoint()
    bar.close()
    elapsed = time.perf_counter() - t0
    if step > first:
        checkpoint()
    steps_per_s = (step - first) / elapsed if elapsed > 0 else 0.0
    return FitResult(model, history, steps_per_s, resumed_from)


def format_row(step: int, total: int, row: dict[str, float]) -> str:
    text = (f"step {step:>6}/{total} | loss {row['train/loss']:.4f} "
            f"(hist {row['train/history']:.4f}, fut {row['train/future']:.4f}) | lr {row['lr']:.2e}")
    if "val/future_visible" in row:
        text += (f" | val future {row['val/future_visible']:.4f} vs copy-last "
                 f"{row['val/copy_last']:.4f}, val hidden-history {row['val/history']:.4f}")
    return text
