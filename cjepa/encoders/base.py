"""The ``SlotEncoder`` interface, and its implementation for learned encoder checkpoints.

Shape legend: T frames, N slots, D slot dim, M feature tokens per frame, H x W pixels.

An encoder checkpoint (``.pt``, written atomically by ``save_encoder``) is a plain dict that
``torch.load(weights_only=True)`` reads: ``{"format": FORMAT, "encoder_config": dict,
"model": state_dict}`` (pre-training checkpoints add optimizer and RNG state, and load too).
Its ``hash`` is the SHA-256 of the file bytes, so slots record exactly which weights made them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from cjepa.data.episode import EpisodeData
from cjepa.encoders.config import EncoderConfig, encoder_config_from_dict
from cjepa.encoders.video import PatchModel, VideoSlotModel, build_model
from cjepa.train import load_checkpoint, save_checkpoint

FORMAT = "cjepa-encoder-v1"


@runtime_checkable
class SlotEncoder(Protocol):
    """What slot extraction calls. ``encode_episodes`` returns one (T, N, D) float32 array per
    episode, over the whole video, deterministic (no random slot initialisation)."""

    n_slots: int
    slot_dim: int
    config: dict[str, Any]
    hash: str

    def encode_episodes(self, episodes: list[EpisodeData]) -> list[np.ndarray]: ...


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_sha256(data: dict[str, Any]) -> str:
    """Hash of canonical JSON (sorted keys, no spaces): equal configs -> equal hashes."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_encoder(
    path: str | Path,
    model: nn.Module,
    cfg: EncoderConfig,
    *,
    training: dict[str, Any] | None = None,
) -> None:
    """Atomically write an encoder checkpoint that ``load_encoder(path)`` reads.

    Args:
        training: resume state stored beside the payload (pre-training checkpoints: optimizer,
            step, RNG states, ...). A key that names a payload field (``format``,
            ``encoder_config``, ``model``) is refused rather than allowed to overwrite it.
    """
    payload = {"format": FORMAT, "encoder_config": cfg.to_dict(), "model": model.state_dict()}
    clash = sorted(set(training or {}) & set(payload))
    if clash:
        raise ValueError(f"save_encoder: training state keys {clash} would overwrite the payload")
    save_checkpoint(path, {**payload, **(training or {})})


def read_encoder_checkpoint(path: str | Path) -> tuple[EncoderConfig, dict[str, torch.Tensor]]:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path}: not a cjepa encoder checkpoint (format {got!r}, want {FORMAT!r})"
        )
    return encoder_config_from_dict(state["encoder_config"]), state["model"]


def batches_by_shape(episodes: Sequence[EpisodeData], batch_size: int) -> Iterator[list[int]]:
    """Indices of episodes grouped by frames shape (T, H, W), in chunks of ``batch_size``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, ep in enumerate(episodes):
        groups.setdefault(tuple(ep.frames.shape[:3]), []).append(i)
    for idx in groups.values():
        for start in range(0, len(idx), batch_size):
            yield idx[start : start + batch_size]


class CheckpointEncoder:
    """A learned encoder (video slots or DINOv2 patches) loaded from a checkpoint.

    Args:
        batch_size: episodes encoded together (same frame count and size only).
        time_chunk: frames per backbone call; bounds memory on long videos. Slots carry over
            chunk boundaries, so the result is the whole-video recurrence.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: EncoderConfig,
        hash: str,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        time_chunk: int = 32,
    ) -> None:
        self.model = model.to(device).eval()
        self.cfg = cfg
        self.device = torch.device(device)
        self.n_slots, self.slot_dim = cfg.out_slots, cfg.out_dim
        self.config = cfg.to_dict()
        self.hash = hash
        self.batch_size, self.time_chunk = batch_size, time_chunk

    @torch.no_grad()
    def encode_video(
        self, frames: np.ndarray, masks: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Slots (B, T, N, D) float32 of a batch of equally shaped uint8 videos (B, T, H, W, 3),
        and with ``masks`` the slot-attention masks (B, T, N, M) (None for patch encoders)."""
        video = torch.from_numpy(np.ascontiguousarray(frames))
        slots, attns, prev = [], [], None
        if isinstance(self.model, VideoSlotModel):
            noise = self.model.extraction_noise().to(self.device)
        for t0 in range(0, video.shape[1], self.time_chunk):
            chunk = video[:, t0 : t0 + self.time_chunk].to(self.device)
            if isinstance(self.model, PatchModel):
                slots.append(self.model(chunk).float().cpu())
                continue
            tokens, _ = self.model.features(chunk)
            s, a = self.model.slots_over_time(tokens, noise, prev)
            prev = s[:, -1]
            slots.append(s.float().cpu())
            if masks:
                attns.append(a.float().cpu())
        out = torch.cat(slots, 1).numpy()
        return out, (torch.cat(attns, 1).numpy() if attns else None)

    def encode_episodes(self, episodes: list[EpisodeData]) -> list[np.ndarray]:
        """One (T, N, D) float32 array per episode, in input order."""
        out: list[np.ndarray | None] = [None] * len(episodes)
        for idx in batches_by_shape(episodes, self.batch_size):
            slots, _ = self.encode_video(np.stack([episodes[i].frames for i in idx]))
            for j, i in enumerate(idx):
                out[i] = np.ascontiguousarray(slots[j], dtype=np.float32)
        return out  # type: ignore[return-value]


def load_checkpoint_encoder(path: str | Path, *, device: str = "cpu") -> CheckpointEncoder:
    cfg, state = read_encoder_checkpoint(path)
    model = build_model(cfg, load_backbone_weights=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # torch lists every tensor; name the first and the config
        first = next((ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()), str(err))
        raise ValueError(
            f"{path}: weights do not fit the stored encoder config (n_slots {cfg.n_slots}, "
            f"slot_dim {cfg.slot_dim}, backbone {cfg.backbone}): {first[:300]}"
        ) from err
    return CheckpointEncoder(model, cfg, file_sha256(path), device=device)
