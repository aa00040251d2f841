"""Pre-training of video slot encoders on episode shards, and their FG-ARI evaluation.

Shape legend: B clips, T frames per clip, N slots, H x W pixels.

``fit_encoder`` trains on short clips (reconstruction MSE), seeded end to end: the model is
initialised under ``train.seed``, clips and initial-slot noise come from explicit generators,
and a resumed run continues those generators from the checkpoint. It scores FG-ARI on
held-out episodes (``split_of``) for the trained model and for the same architecture at its
random initialisation, so every reported number comes with its chance-level reference.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cjepa.data.episode import EpisodeData
from cjepa.data.shards import read_episode_shard
from cjepa.data.splits import list_shards, split_of
from cjepa.encoders.base import save_encoder
from cjepa.encoders.config import EncoderConfig, EncoderExperiment
from cjepa.encoders.metrics import fg_ari, upsample_masks
from cjepa.encoders.video import VideoSlotModel
from cjepa.train import load_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"  # training state (resume)
ENCODER_NAME = "encoder.pt"  # weights + config only: what load_encoder reads
METRICS_NAME = "fg_ari.json"


def build_video_model(cfg: EncoderConfig, seed: int) -> VideoSlotModel:
    """A ``VideoSlotModel`` whose random init is a pure function of ``seed``.

    torch's module initialisers draw from the global RNG; forking it keeps the caller's state
    untouched while the seed fixes the weights (the random-init baseline is rebuilt this way).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoSlotModel(cfg)


def load_episodes(data_dir: str | Path) -> list[EpisodeData]:
    shards = list_shards(data_dir, kind="episodes")
    if not shards:
        raise FileNotFoundError(f"no episode shards (*.parquet) in {data_dir}")
    return [ep for path in shards for ep in read_episode_shard(path)]


def split_episodes(
    episodes: Sequence[EpisodeData], val_fraction: float
) -> tuple[list[EpisodeData], list[EpisodeData]]:
    train = [e for e in episodes if split_of(e.episode_id, val_fraction) == "train"]
    val = sorted((e for e in episodes if split_of(e.episode_id, val_fraction) == "val"),
                 key=lambda e: e.episode_id)  # fmt: skip
    if not train or not val:
        raise ValueError(f"{len(episodes)} episodes give {len(train)} train / {len(val)} val "
                         f"at val_fraction={val_fraction}: need both")  # fmt: skip
    return train, val


def sample_clips(
    episodes: Sequence[EpisodeData], batch: int, length: int, stride: int, g: torch.Generator
) -> torch.Tensor:
    """Random clips (B, T, H, W, 3) uint8: episode and start drawn from ``g``."""
    span = (length - 1) * stride + 1
    clips = []
    for i in torch.randint(len(episodes), (batch,), generator=g).tolist():
        frames = episodes[i].frames
        if frames.shape[0] < span:
            raise ValueError(f"episode {episodes[i].episode_id!r} has {frames.shape[0]} frames, "
                             f"a clip needs {span}")  # fmt: skip
        start = int(torch.randint(frames.shape[0] - span + 1, (1,), generator=g))
        clips.append(frames[start : start + span : stride])
    return torch.from_numpy(np.stack(clips))


def reconstruction_loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Plain MSE between the decoder's reconstruction and its target (pixels or features)."""
    return F.mse_loss(out["recon"], out["target"])


def train_step(
    model: VideoSlotModel, frames: torch.Tensor, noise: torch.Tensor,
    optimizer: torch.optim.Optimizer, grad_clip: float,
) -> dict[str, float]:  # fmt: skip
    """One optimisation step on clips (B, T, H, W, 3) uint8 with initial noise (B, N, D)."""
    model.train()
    loss = reconstruction_loss(model(frames, noise))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return {"loss": loss.item(), "grad_norm": norm.item()}


@torch.no_grad()
def evaluate_fg_ari(
    model: VideoSlotModel, episodes: Sequence[EpisodeData], n_frames: int, device: torch.device
) -> dict[str, float]:
    """FG-ARI of slot-attention masks (and decoder alpha masks) on the first ``n_frames``
    frames of each episode, with the deterministic extraction noise.

    Returns:
        ``fg_ari`` (per frame, slot attention), ``fg_ari_video`` (time flattened into pixels,
        so slots must keep their object), ``fg_ari_decoder`` (per frame, decoder alphas).
    """
    model.eval()
    noise = model.extraction_noise().to(device)
    frame_scores, video_scores, dec_scores = [], [], []
    for ep in episodes:
        if ep.masks is None:
            raise ValueError(f"episode {ep.episode_id!r} has no instance masks for FG-ARI")
        frames = torch.from_numpy(ep.frames[None, :n_frames]).to(device)  # (1, T, H, W, 3)
        true = ep.masks[:n_frames]  # (T, H, W)
        size = tuple(true.shape[1:])
        tokens, _ = model.features(frames)
        slots, attn = model.slots_over_time(tokens, noise)
        labels = upsample_masks(attn[0], (model.grid, model.grid), size).cpu().numpy()
        frame_scores.append(fg_ari(true, labels))
        video_scores.append(fg_ari(true[None], labels[None]))
        _, dec = model.decoder(slots[0])  # (T, N, S * S or P)
        side = math.isqrt(dec.shape[-1])
        dec_scores.append(fg_ari(true, upsample_masks(dec, (side, side), size).cpu().numpy()))

    def mean(scores: list[np.ndarray]) -> float:
        return float(np.nanmean(np.concatenate(scores)))

    return {"fg_ari": mean(frame_scores), "fg_ari_video": mean(video_scores),
            "fg_ari_decoder": mean(dec_scores)}  # fmt: skip


def snapshot_path(out_dir: Path, step: int) -> Path:
    """Where ``train.snapshot_every`` saves the encoder at ``step``."""
    return out_dir / f"encoder-step{step:06d}.pt"


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero (SAVi's schedule)."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class EncoderFitResult:
    model: VideoSlotModel
    metrics: dict[str, Any]
    history: list[dict[str, float]]


@dataclass
class EncoderRun:
    """The state one pre-training run carries from step to step (what ``checkpoint.pt`` holds)."""

    model: VideoSlotModel
    optimizer: torch.optim.Optimizer
    data_rng: torch.Generator
    noise_rng: torch.Generator
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def save(self, path: Path, exp: EncoderExperiment) -> None:
        """The weights and config (as ``save_encoder``), plus everything a resume needs."""
        save_encoder(path, self.model, exp.encoder, training={
            "optimizer": self.optimizer.state_dict(), "step": self.step, "history": self.history,
            "data_rng": self.data_rng.get_state(), "noise_rng": self.noise_rng.get_state(),
            "experiment": exp.to_dict(),
        })  # fmt: skip


def fit_encoder(
    exp: EncoderExperiment,
    episodes: Sequence[EpisodeData],
    out_dir: str | Path,
    *,
    device: str = "cpu",
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> EncoderFitResult:
    """Train ``exp.train.steps`` steps, resuming from ``out_dir/checkpoint.pt`` when present.

    Writes ``checkpoint.pt`` (every ``ckpt_every`` steps and at the end), ``encoder.pt`` and
    ``fg_ari.json`` (trained vs random-init FG-ARI on held-out episodes) when training ends.
    ``stop_after`` stops this call early (as if interrupted), keeping the schedule.
    """
    tc = exp.train
    check_trainable(exp.encoder)
    dev, out = torch.device(device), Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    train_eps, val_eps = split_episodes(episodes, tc.val_fraction)
    val_eps = val_eps[: tc.eval_episodes]
    run = start_run(exp, dev)
    if resume and ckpt_path.exists():
        resume_run(run, ckpt_path, exp.encoder)
        log(f"resumed from {ckpt_path} at step {run.step}")
    first = run.step
    end = tc.steps if stop_after is None else min(tc.steps, run.step + stop_after)
    train_steps(run, exp, train_eps, end, ckpt_path, dev, progress, log)
    if run.step > first:
        run.save(ckpt_path, exp)
    result: dict[str, Any] = {"step": run.step, "finished": run.step >= tc.steps}
    if run.step >= tc.steps:
        result.update(finish(run, exp, val_eps, out, dev))
    return EncoderFitResult(run.model, result, run.history)


def check_trainable(cfg: EncoderConfig) -> None:
    """Refuse encoders this module does not train."""
    if cfg.kind != "video":
        raise ValueError(f"only video slot encoders are trained; encoder.kind={cfg.kind!r}")
    if cfg.backbone == "dinov2" and cfg.dinov2_weights is None:
        raise ValueError("encoder.dinov2_weights must name a local DINOv2 weights file to train "
                         "on its features (random ViT weights are for tests only)")  # fmt: skip


def start_run(exp: EncoderExperiment, dev: torch.device) -> EncoderRun:
    """The model at its ``train.seed`` init, its optimizer and the clip / noise generators."""
    tc = exp.train
    model = build_video_model(exp.encoder, tc.seed).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]  # DINOv2 stays frozen
    return EncoderRun(
        model,
        torch.optim.Adam(params, lr=tc.lr),
        torch.Generator().manual_seed(tc.seed + 1),
        torch.Generator().manual_seed(tc.seed + 2),
    )


def resume_run(run: EncoderRun, ckpt_path: Path, cfg: EncoderConfig) -> None:
    """Load ``ckpt_path`` into ``run``; refuses a checkpoint of another encoder config."""
    state = load_checkpoint(ckpt_path)
    saved, now = state.get("encoder_config", {}), cfg.to_dict()
    changes = [  # the weights path may move; every other field shapes the model
        f"encoder.{k}: {saved[k]!r} -> {now[k]!r}"
        for k in sorted(saved.keys() & now.keys())
        if saved[k] != now[k] and k != "dinov2_weights"
    ]
    if changes:
        raise ValueError(
            f"{ckpt_path} was trained with another encoder config ({'; '.join(changes)}); "
            "use another out_dir, or delete it to start over"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.data_rng.set_state(state["data_rng"])
    run.noise_rng.set_state(state["noise_rng"])
    run.step, run.history = int(state["step"]), list(state["history"])


def train_steps(
    run: EncoderRun,
    exp: EncoderExperiment,
    train_eps: Sequence[EpisodeData],
    end: int,
    ckpt_path: Path,
    dev: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
) -> None:
    """Step ``run`` up to step ``end``: a history row every ``log_every``, a checkpoint every
    ``ckpt_every`` steps."""
    tc = exp.train
    bar = tqdm(total=tc.steps, initial=run.step, disable=None if progress is None else not progress,
               desc=exp.name, unit="step", dynamic_ncols=True)  # fmt: skip
    t0, first, running = time.perf_counter(), run.step, {"loss": 0.0, "n": 0}
    while run.step < end:
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at(run.step, tc.steps, tc.lr, tc.warmup_steps)
        frames = sample_clips(train_eps, tc.batch_size, tc.clip_len, tc.clip_stride, run.data_rng)
        noise = run.model.initial_noise(tc.batch_size, run.noise_rng).to(dev)
        metrics = train_step(run.model, frames.to(dev), noise, run.optimizer, tc.grad_clip)
        run.step += 1
        bar.update(1)
        running["loss"] += metrics["loss"]
        running["n"] += 1
        if run.step % tc.log_every == 0 or run.step == end:
            row = {"step": run.step, "loss": running["loss"] / running["n"],
                   "steps_per_s": (run.step - first) / (time.perf_counter() - t0)}  # fmt: skip
            run.history.append(row)
            running = {"loss": 0.0, "n": 0}
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            msg = (f"step {run.step:>6}/{tc.steps} | loss {row['loss']:.5f} | "
                   f"{row['steps_per_s']:.2f} it/s")  # fmt: skip
            (bar.write if bar.disable is False else log)(msg)
        if tc.ckpt_every and run.step % tc.ckpt_every == 0:
            run.save(ckpt_path, exp)
        if tc.snapshot_every and run.step % tc.snapshot_every == 0:
            save_encoder(snapshot_path(ckpt_path.parent, run.step), run.model, exp.encoder)
    bar.close()


def finish(
    run: EncoderRun,
    exp: EncoderExperiment,
    val_eps: Sequence[EpisodeData],
    out: Path,
    dev: torch.device,
) -> dict[str, Any]:
    """At the end of training: ``encoder.pt``, and FG-ARI of the trained model and of its
    random init on the held-out episodes (skipped without instance masks) in ``fg_ari.json``."""
    tc = exp.train
    save_encoder(out / ENCODER_NAME, run.model, exp.encoder)
    result: dict[str, Any] = {"step": run.step, "finished": True}
    if any(e.masks is None for e in val_eps):
        result["fg_ari_skipped"] = "held-out episodes have no instance masks"
    else:
        random_init = build_video_model(exp.encoder, tc.seed).to(dev)
        result.update({
            "val_episodes": [e.episode_id for e in val_eps], "eval_frames": tc.eval_frames,
            "trained": evaluate_fg_ari(run.model, val_eps, tc.eval_frames, dev),
            "random_init": evaluate_fg_ari(random_init, val_eps, tc.eval_frames, dev),
        })  # fmt: skip
    (out / METRICS_NAME).write_text(json.dumps(result, indent=2) + "\n")
    return result
