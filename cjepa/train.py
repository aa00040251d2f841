"""Training: a seeded, resumable single-process loop around ``train_step`` / ``eval_step``
(``cjepa.steps``, re-exported here), and atomic, weights-only checkpoints.

Randomness: model init, window sampling, masks and dropout each come from a seed derived from
``train.seed``; windows and masks use their own ``torch.Generator``s, dropout uses torch's global
RNG (seeded at the start, saved and restored with every checkpoint), so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cjepa.config import ExperimentConfig, MaskingConfig, flatten
from cjepa.data.windows import SlotWindows
from cjepa.predictor import SlotPredictor
from cjepa.steps import (
    MaskSampler,
    NonFiniteLoss,
    build_optimizer,
    build_predictor,
    eval_step,
    forward_loss,
    lr_at,
    resolve_device,
    set_threads,
    to_device,
    train_step,
)
from cjepa.tracking import NullTracker, Tracker

__all__ = [
    "CHECKPOINT_NAME",
    "EVAL_PROTOCOL",
    "RESUME_FREE",
    "FitResult",
    "MaskSampler",
    "NonFiniteLoss",
    "TrainLoop",
    "build_optimizer",
    "build_predictor",
    "config_changes",
    "eval_step",
    "fit",
    "format_row",
    "forward_loss",
    "load_checkpoint",
    "lr_at",
    "resolve_device",
    "resume_loop",
    "run_with_progress",
    "save_checkpoint",
    "set_threads",
    "train_step",
]

CHECKPOINT_NAME = "checkpoint.pt"
#: How validation is measured; recorded with every run.
EVAL_PROTOCOL = (
    "val windows drawn with a fixed generator; future MSE with the full history visible "
    "(inference setting) vs copy-last-frame baseline; history MSE on cells hidden by the run's "
    "masking unit at its exact budget"
)


def config_changes(saved: dict[str, Any], cfg: ExperimentConfig) -> list[str]:
    """Fields where ``cfg`` differs from the config a checkpoint was trained with, as
    ``"field: saved -> now"``; fields that do not change the trajectory (``RESUME_FREE``) and
    fields the saved config predates are not compared."""
    old, new = flatten(saved), flatten(cfg.to_dict())
    return [
        f"{k}: {old[k]!r} -> {new[k]!r}"
        for k in sorted(old.keys() & new.keys())
        if old[k] != new[k] and not any(k == f or k.startswith(f + ".") for f in RESUME_FREE)
    ]


#: Config fields a run may change when it resumes: where it logs and writes, how often it
#: evaluates, and the machine it runs on.
RESUME_FREE = (
    "name",
    "train.out_dir",
    "train.log_every",
    "train.eval_every",
    "train.eval_batches",
    "train.ckpt_every",
    "train.threads",
    "train.device",
)


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
    """Load a checkpoint written by ``save_checkpoint`` (tensors and plain data only).

    ``torch.load(weights_only=True)``: a file that would import any other Python object (a
    pickle whose ``__reduce__`` runs code) is refused before that object is built.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming ``path``: corrupt or truncated, or refused because it holds
            a Python object (named) other than tensors and plain data.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for corrupt files
        # torch's own text suggests weights_only=False or allow-listing the global, either of
        # which would run code from the file: never pass that advice on.
        text = str(err)
        unsafe = _UNSAFE_GLOBAL.search(text)
        if unsafe:
            raise ValueError(
                f"refused checkpoint {path}: it would import the Python object "
                f"{unsafe.group(1)}, and a checkpoint may hold only tensors and plain data "
                "(nothing from it was run)"
            ) from err
        if "Weights only load failed" in text:  # the cause follows torch's advice, if given
            text = text.partition("WeightsUnpickler error:")[2] or "not a tensors-only pickle"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = lines[0] if lines else type(err).__name__
        raise ValueError(
            f"cannot read checkpoint {path}: corrupt, truncated or not a tensors-only "
            f"checkpoint ({type(err).__name__}: {first[:200]})"
        ) from err


#: The object torch's weights-only unpickler refused, in its error text.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


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
        for k, v in eval_step(model, to_device(batch, device), loss=cfg.loss).items():
            totals[k] = totals.get(k, 0.0) + v / cfg.train.eval_batches
    return totals


class TrainLoop:
    """One training run's state (model, optimiser, step, RNGs, metric rows) and its steps.

    Shared by the single-process ``fit`` and the Ray Train worker function, so both follow the
    same trajectory for the same seed.

    Args:
        val_data: evaluated every ``train.eval_every`` steps (pass None on ranks that do not log).
        rank, world_size: this worker's place in data-parallel training; each rank draws its own
            windows and masks, and ``train.batch_size`` is split across ranks.
        wrap: wraps the model for training (e.g. DDP); evaluation uses the unwrapped model.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        train_data: SlotWindows,
        val_data: SlotWindows | None = None,
        *,
        device: torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
        wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    ) -> None:
        if cfg.train.batch_size % world_size:
            raise ValueError(
                f"train.batch_size={cfg.train.batch_size} is not divisible by "
                f"the {world_size} data-parallel workers"
            )
        self.cfg, self.train_data, self.val_data = cfg, train_data, val_data
        self.device = device or resolve_device(cfg.train.device)
        self.batch_size = cfg.train.batch_size // world_size
        self.model = build_predictor(cfg).to(self.device)
        self.net = wrap(self.model) if wrap else self.model
        self.optimizer = build_optimizer(self.net, cfg.optim)
        seed = cfg.train.seed + 10_000 * rank  # rank 0 draws exactly what a single process draws
        self.data_rng = torch.Generator().manual_seed(seed + 1)
        # fixed_official: every rank hides the same slots, drawn from the run's seed (official)
        self.masks = MaskSampler(
            cfg.masking, torch.Generator().manual_seed(seed + 2), seed=cfg.train.seed
        )
        torch.manual_seed(seed + 3)  # dropout
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.running: dict[str, float] = {}  # sums of train metrics since the last row

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "data_rng": self.data_rng.get_state(),
            "mask_rng": self.masks.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "running": self.running,
            "config": self.cfg.to_dict(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data_rng.set_state(state["data_rng"])
        self.masks.generator.set_state(state["mask_rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.history = int(state["step"]), list(state["history"])
        self.running = dict(state["running"])

    def run(
        self,
        end: int,
        *,
        on_row: Callable[[dict[str, float]], None] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> float:
        """Train until ``step == end``; returns steps/s. ``on_row`` gets each logged row
        (every ``train.log_every`` steps, with validation every ``train.eval_every``)."""
        tc, first, t0 = self.cfg.train, self.step, time.perf_counter()
        while self.step < end:
            lr = lr_at(self.step, tc.steps, self.cfg.optim)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            batch = self.train_data.sample(self.batch_size, self.data_rng)
            slots = batch["slots"]
            batch["mask"] = self.masks(slots.shape[0], self.cfg.data.history, slots.shape[2])
            metrics = train_step(
                self.net,
                to_device(batch, self.device),
                self.optimizer,
                loss=self.cfg.loss,
                grad_clip=self.cfg.optim.grad_clip,
            )
            self.step += 1
            for k, v in metrics.items():
                self.running[k] = self.running.get(k, 0.0) + v
            if self.step % tc.log_every == 0 or self.step == tc.steps:
                row = self._row(lr, (self.step - first) / (time.perf_counter() - t0))
                if on_row is not None:
                    on_row(row)
            if on_step is not None:
                on_step(self.step)
        elapsed = time.perf_counter() - t0
        return (self.step - first) / elapsed if elapsed > 0 else 0.0

    def _row(self, lr: float, steps_per_s: float) -> dict[str, float]:
        tc, step = self.cfg.train, self.step
        n = tc.log_every if step % tc.log_every == 0 else step % tc.log_every
        row = {f"train/{k}": v / n for k, v in self.running.items()}
        row["lr"] = lr
        self.running = {}
        if self.val_data is not None and (step % tc.eval_every == 0 or step == tc.steps):
            val = _evaluate(self.model, self.val_data, self.cfg, self.device)
            row.update({f"val/{k}": v for k, v in val.items()})
        row["steps_per_s"] = steps_per_s
        self.history.append({"step": step, **row})
        return row


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
    """Train ``cfg.train.steps`` steps in this process, resuming from ``out_dir/checkpoint.pt``.

    Args:
        stop_after: stop (with a checkpoint) after this many steps of this call, as if the run
            were interrupted; the schedule still follows ``cfg.train.steps``.
        progress: show a progress bar (None: only when attached to a terminal).
    """
    tc = cfg.train
    set_threads(tc.threads)
    tracker = tracker or NullTracker()
    ckpt_path = Path(out_dir if out_dir is not None else tc.out_dir) / CHECKPOINT_NAME
    loop = TrainLoop(cfg, train_data, val_data)
    if resume and ckpt_path.exists():
        resume_loop(loop, ckpt_path)
        log(f"resumed from {ckpt_path} at step {loop.step}")
    resumed_from = loop.step
    tracker.log_params({**flatten(cfg.to_dict()), "eval_protocol": EVAL_PROTOCOL})
    end = tc.steps if stop_after is None else min(tc.steps, loop.step + stop_after)
    steps_per_s = run_with_progress(loop, end, ckpt_path, tracker, progress, log)
    if loop.step > resumed_from:
        save_checkpoint(ckpt_path, loop.state_dict())
    return FitResult(loop.model, loop.history, steps_per_s, resumed_from)


def resume_loop(loop: TrainLoop, ckpt_path: Path) -> None:
    """Load ``ckpt_path`` into ``loop``; refuses a checkpoint trained with another config."""
    state = load_checkpoint(ckpt_path)
    if changes := config_changes(state.get("config", {}), loop.cfg):
        raise ValueError(
            f"{ckpt_path} was trained with another config ({'; '.join(changes)}); "
            "use another train.out_dir, or start over (train_world_model.py --fresh)"
        )
    loop.load_state_dict(state)


def run_with_progress(
    loop: TrainLoop,
    end: int,
    ckpt_path: Path,
    tracker: Tracker,
    progress: bool | None,
    log: Callable[[str], None],
) -> float:
    """``loop.run(end)`` with a progress bar, each row logged to ``tracker`` and written, and a
    checkpoint every ``train.ckpt_every`` steps; returns steps/s."""
    tc = loop.cfg.train
    bar = tqdm(
        total=tc.steps,
        initial=loop.step,
        desc=loop.cfg.name,
        unit="step",
        dynamic_ncols=True,
        disable=None if progress is None else not progress,
    )
    write = bar.write if bar.disable is False else log

    def on_row(row: dict[str, float]) -> None:
        tracker.log_metrics(row, loop.step)
        bar.set_postfix(loss=f"{row['train/loss']:.4f}")
        write(format_row(loop.step, tc.steps, row))

    def on_step(step: int) -> None:
        bar.update(1)
        if tc.ckpt_every and step % tc.ckpt_every == 0:
            save_checkpoint(ckpt_path, loop.state_dict())

    steps_per_s = loop.run(end, on_row=on_row, on_step=on_step)
    bar.close()
    return steps_per_s


def format_row(step: int, total: int, row: dict[str, float]) -> str:
    text = (
        f"step {step:>6}/{total} | loss {row['train/loss']:.4f} "
        f"(hist {row['train/history']:.4f}, fut {row['train/future']:.4f}) | lr {row['lr']:.2e}"
    )
    if "val/future_visible" in row:
        text += (
            f" | val future {row['val/future_visible']:.4f} vs copy-last "
            f"{row['val/copy_last']:.4f}, val hidden-history {row['val/history']:.4f}"
        )
    return text
