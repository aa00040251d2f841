"""Typed configs of the slot encoders and of their pre-training (strict, like ``cjepa.config``).

Presets live in ``experiments/configs/encoders/``; ``load_encoder_experiment`` reads one and
applies dotted overrides (``encoder.n_slots=5``, ``train.steps=100``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cjepa.schema import apply_overrides, check, from_dict, read_yaml

KINDS = ("video", "patch")
BACKBONES = ("cnn", "dinov2")


@dataclass
class EncoderConfig:
    """Architecture of a learned encoder (SPEC section 2). Defaults: SAVi-style CNN, 64 px.

    kind: ``video`` (slot attention over time, SAVi / VideoSAUR) or ``patch`` (backbone patch
    tokens as slots, the DINO-WM baseline; needs the dinov2 backbone).
    backbone: ``cnn`` (trained from scratch, reconstructs pixels) or ``dinov2`` (frozen ViT,
    the decoder reconstructs its features).
    """

    kind: str = "video"
    backbone: str = "cnn"
    image_size: int = 64
    n_slots: int = 7
    slot_dim: int = 128
    iters_first: int = 3
    iters: int = 2
    predictor_heads: int = 4
    # CNN backbone and pixel decoder
    cnn_channels: int = 64
    cnn_downsample: int = 1
    decoder_channels: int = 64
    decoder_grid: int = 8
    # DINOv2 backbone, feature projection and feature decoder
    vit_dim: int = 384
    vit_depth: int = 12
    vit_heads: int = 6
    patch_size: int = 14
    proj_hidden: int = 768
    decoder_hidden: int = 1024
    dinov2_weights: str | None = None
    # Extraction uses one fixed initial-slot noise drawn from this seed (deterministic slots).
    extract_seed: int = 0

    def __post_init__(self) -> None:
        check(self.kind in KINDS, "encoder.kind", self.kind, f"one of {list(KINDS)}")
        check(self.backbone in BACKBONES, "encoder.backbone", self.backbone,
               f"one of {list(BACKBONES)}")  # fmt: skip
        positive = ("image_size", "n_slots", "slot_dim", "iters_first", "iters", "predictor_heads",
                    "cnn_channels", "decoder_channels", "vit_dim", "vit_depth", "vit_heads",
                    "patch_size", "proj_hidden", "decoder_hidden")  # fmt: skip
        for name in positive:
            check(getattr(self, name) >= 1, f"encoder.{name}", getattr(self, name), ">= 1")
        check(self.slot_dim % self.predictor_heads == 0, "encoder.slot_dim", self.slot_dim,
               f"divisible by encoder.predictor_heads={self.predictor_heads}")  # fmt: skip
        if self.kind == "patch":
            check(self.backbone == "dinov2", "encoder.backbone", self.backbone,
                   "'dinov2' for a patch encoder (CNN patches are not a baseline)")  # fmt: skip
        if self.backbone == "dinov2":
            check(self.image_size % self.patch_size == 0, "encoder.image_size", self.image_size,
                   f"a multiple of encoder.patch_size={self.patch_size}")  # fmt: skip
        else:
            ds = self.cnn_downsample
            check(ds in (1, 2, 4, 8) and self.image_size % ds == 0, "encoder.cnn_downsample",
                   ds, "1, 2, 4 or 8 and divide encoder.image_size")  # fmt: skip
            ratio = self.image_size // self.decoder_grid
            ok = self.image_size % self.decoder_grid == 0 and ratio & (ratio - 1) == 0
            want = f"such that image_size / decoder_grid is a power of two ({self.image_size} px)"
            check(ok, "encoder.decoder_grid", self.decoder_grid, want)

    @property
    def out_slots(self) -> int:
        """N of the produced slots (patch encoders: one slot per patch)."""
        if self.kind == "patch":
            return (self.image_size // self.patch_size) ** 2
        return self.n_slots

    @property
    def out_dim(self) -> int:
        """D of the produced slots."""
        return self.vit_dim if self.kind == "patch" else self.slot_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EncoderTrainConfig:
    """Pre-training of a video slot encoder on short clips (reconstruction MSE)."""

    steps: int = 3000
    batch_size: int = 16
    clip_len: int = 6
    clip_stride: int = 1
    lr: float = 4e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    val_fraction: float = 0.1
    eval_episodes: int = 16
    eval_frames: int = 32
    log_every: int = 50
    ckpt_every: int = 200
    #: Also save the encoder every this many steps as ``encoder-step<step>.pt`` (0: off): the
    #: checkpoints of increasing quality along one run that the encoder-quality study reads.
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "clip_len", "clip_stride", "eval_episodes",
                     "eval_frames", "log_every"):  # fmt: skip
            check(getattr(self, name) >= 1, f"train.{name}", getattr(self, name), ">= 1")
        check(self.lr > 0, "train.lr", self.lr, "> 0")
        check(self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, ">= 0")
        check(self.grad_clip > 0, "train.grad_clip", self.grad_clip, "> 0")
        check(0 < self.val_fraction < 1, "train.val_fraction", self.val_fraction, "in (0, 1)")
        check(self.ckpt_every >= 0, "train.ckpt_every", self.ckpt_every, ">= 0 (0 = off)")
        check(self.snapshot_every >= 0, "train.snapshot_every", self.snapshot_every,
              ">= 0 (0 = off)")  # fmt: skip


@dataclass
class EncoderExperiment:
    name: str = "encoder"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: EncoderTrainConfig = field(default_factory=EncoderTrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def encoder_config_from_dict(data: dict[str, Any]) -> EncoderConfig:
    return from_dict(EncoderConfig, data, prefix="encoder")


def load_encoder_experiment(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> EncoderExperiment:
    """An ``EncoderExperiment`` from a YAML preset (or defaults) plus dotted overrides."""
    # read_yaml: syntax errors name the file, and a preset may name a ``base:`` preset
    data: dict[str, Any] = read_yaml(Path(path)) if path is not None else {}
    return from_dict(EncoderExperiment, apply_overrides(data, list(overrides or [])))
