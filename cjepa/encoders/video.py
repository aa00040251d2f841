"""Video slot encoders (SAVi / VideoSAUR style) and the DINOv2 patch baseline, as nn.Modules.

Shape legend: B batch, T frames, N slots, D slot dim, M feature tokens per frame (h * w grid),
C backbone feature dim, H x W image pixels, P DINOv2 patches.

``VideoSlotModel``: per-frame features -> slot attention. Frame 0 starts from the learned
Gaussian (``SlotInit``) and runs ``iters_first`` (3) iterations; every later frame starts from
``SlotTransition(slots[t - 1])`` and runs ``iters`` (2), so a slot keeps following one object.
A spatial-broadcast decoder with alpha masks (softmax over slots) reconstructs pixels (CNN
backbone) or frozen DINOv2 features (VideoSAUR); training minimises that reconstruction MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cjepa.encoders.config import EncoderConfig
from cjepa.encoders.dinov2 import DinoVisionTransformer, load_dinov2_weights, normalise_images
from cjepa.encoders.slot_attention import SlotAttention, SlotInit, SlotTransition


def position_grid(h: int, w: int, device=None) -> torch.Tensor:
    """(h, w, 4) of [y, x, 1 - y, 1 - x] in [0, 1]: SAVi's soft position code."""
    ys = torch.linspace(0.0, 1.0, h, device=device)
    xs = torch.linspace(0.0, 1.0, w, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([y, x, 1 - y, 1 - x], dim=-1)


class SoftPositionEmbed(nn.Module):
    """Adds a linear map of the position grid to channel-last features (..., h, w, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(position_grid(x.shape[-3], x.shape[-2], x.device))


def to_pixels(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames (B, H, W, 3) -> float (B, 3, size, size) in [-1, 1]."""
    x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


class CNNBackbone(nn.Module):
    """Four 5x5 convs (SAVi's 64 px encoder), stride-2 convs first when ``downsample`` > 1.

    (B, 3, H, W) -> tokens (B, M, C), M = (H / downsample) * (W / downsample).
    """

    def __init__(self, channels: int, downsample: int) -> None:
        super().__init__()
        n_down = downsample.bit_length() - 1
        strides = [1] + [2 if i < n_down else 1 for i in range(3)]
        layers: list[nn.Module] = []
        for i, s in enumerate(strides):
            layers += [nn.Conv2d(3 if i == 0 else channels, channels, 5, s, 2), nn.ReLU()]
        self.convs = nn.Sequential(*layers[:-1])  # no ReLU before the position code
        self.pos = SoftPositionEmbed(channels)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(),
                                 nn.Linear(channels, channels))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos(self.convs(x).permute(0, 2, 3, 1))  # (B, h, w, C)
        return self.mlp(self.norm(x.flatten(1, 2)))  # (B, M, C)


class PixelDecoder(nn.Module):
    """Spatial broadcast decoder: each slot -> RGB + alpha logit image; alphas softmax over N.

    Slots (B, N, D) -> reconstruction (B, 3, H, W) and masks (B, N, H * W).
    """

    def __init__(self, dim: int, channels: int, grid: int, size: int) -> None:
        super().__init__()
        self.grid = grid
        self.pos = SoftPositionEmbed(dim)
        n_up = (size // grid).bit_length() - 1
        layers: list[nn.Module] = []
        for i in range(n_up):  # each 4x4 stride-2 transposed conv doubles the size exactly
            cin = dim if i == 0 else channels
            layers += [nn.ConvTranspose2d(cin, channels, 4, 2, 1), nn.ReLU()]
        layers.append(nn.Conv2d(channels if n_up else dim, 4, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = slots.shape
        x = slots.reshape(b * n, 1, 1, d).expand(-1, self.grid, self.grid, -1)
        x = self.net(self.pos(x).permute(0, 3, 1, 2))  # (B * N, 4, H, W)
        x = x.reshape(b, n, 4, *x.shape[-2:])
        alpha = x[:, :, 3:].softmax(dim=1)  # (B, N, 1, H, W)
        recon = (alpha * x[:, :, :3]).sum(dim=1)
        return recon, alpha.flatten(2)


class FeatureDecoder(nn.Module):
    """VideoSAUR's MLP broadcast decoder: slot + learned patch position -> feature + alpha.

    Slots (B, N, D) -> reconstruction (B, P, C) and masks (B, N, P).
    """

    def __init__(self, dim: int, hidden: int, out_dim: int, n_tokens: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, 1, n_tokens, dim))
        nn.init.normal_(self.pos, std=0.02, generator=torch.Generator().manual_seed(0))
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim + 1),
        )  # fmt: skip

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.mlp(slots.unsqueeze(2) + self.pos)  # (B, N, P, C + 1)
        alpha = x[..., -1:].softmax(dim=1)
        return (alpha * x[..., :-1]).sum(dim=1), alpha.squeeze(-1)


def build_dinov2(cfg: EncoderConfig, load_weights: bool) -> DinoVisionTransformer:
    vit = DinoVisionTransformer(cfg.patch_size, cfg.vit_dim, cfg.vit_depth, cfg.vit_heads)
    if load_weights and cfg.dinov2_weights is not None:
        load_dinov2_weights(vit, cfg.dinov2_weights)
    vit.requires_grad_(False)  # frozen, as in the paper: only slot modules train
    return vit.eval()


class VideoSlotModel(nn.Module):
    """SAVi (CNN, pixels) or VideoSAUR (DINOv2, features) slot encoder. See module doc.

    Args:
        load_backbone_weights: read ``cfg.dinov2_weights`` now (False when a checkpoint's
            state dict will supply them).
    """

    def __init__(self, cfg: EncoderConfig, load_backbone_weights: bool = True) -> None:
        super().__init__()
        if cfg.kind != "video":
            raise ValueError(f"VideoSlotModel needs encoder.kind='video', got {cfg.kind!r}")
        self.cfg = cfg
        d = cfg.slot_dim
        if cfg.backbone == "cnn":
            self.backbone: nn.Module = CNNBackbone(cfg.cnn_channels, cfg.cnn_downsample)
            self.proj: nn.Module = nn.Identity()
            in_dim = cfg.cnn_channels
            self.grid = cfg.image_size // cfg.cnn_downsample
            self.decoder: nn.Module = PixelDecoder(d, cfg.decoder_channels, cfg.decoder_grid,
                                                   cfg.image_size)  # fmt: skip
        else:
            self.backbone = build_dinov2(cfg, load_backbone_weights)
            # SPEC section 2: MLP 384 -> 768 -> 128 from DINOv2 features into slot attention.
            self.proj = nn.Sequential(
                nn.LayerNorm(cfg.vit_dim), nn.Linear(cfg.vit_dim, cfg.proj_hidden), nn.ReLU(),
                nn.Linear(cfg.proj_hidden, d),
            )  # fmt: skip
            in_dim = d
            self.grid = cfg.image_size // cfg.patch_size
            self.decoder = FeatureDecoder(d, cfg.decoder_hidden, cfg.vit_dim, self.grid**2)
        self.init = SlotInit(cfg.n_slots, d)
        self.slot_attention = SlotAttention(in_dim, d)
        self.transition = SlotTransition(d, cfg.predictor_heads)

    def train(self, mode: bool = True) -> VideoSlotModel:
        super().train(mode)
        if self.cfg.backbone == "dinov2":
            self.backbone.eval()  # the frozen ViT never switches to training mode
        return self

    def features(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames (B, T, H, W, 3) -> slot-attention inputs (B, T, M, C_in) and the
        reconstruction targets: pixels (B, T, 3, S, S) or DINOv2 features (B, T, P, C)."""
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        if self.cfg.backbone == "cnn":
            target = to_pixels(flat, self.cfg.image_size)
            tokens = self.backbone(target)
        else:
            with torch.no_grad():
                target = self.backbone(normalise_images(flat, self.cfg.image_size))
            tokens = self.proj(target)
        return tokens.unflatten(0, (b, t)), target.unflatten(0, (b, t))

    def initial_noise(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Initial-slot noise (B, N, D) from an explicit generator (training)."""
        return self.init.noise(batch, generator)

    def extraction_noise(self) -> torch.Tensor:
        """The fixed noise (N, D) used for extraction: every episode starts alike."""
        g = torch.Generator().manual_seed(self.cfg.extract_seed)
        return self.init.noise(1, g)[0]

    def slots_over_time(
        self, tokens: torch.Tensor, noise: torch.Tensor | None, prev: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run slot attention frame by frame.

        Args:
            tokens: (B, T, M, C_in) features.
            noise: (B, N, D) or (N, D) initial noise; used when ``prev`` is None.
            prev: (B, N, D) slots of the frame before ``tokens[:, 0]`` (chunked videos).

        Returns:
            slots (B, T, N, D) and attention masks (B, T, N, M).
        """
        all_slots, all_attn = [], []
        for t in range(tokens.shape[1]):
            if prev is None:
                if noise is None:
                    raise ValueError("noise is required for the first frame of a video")
                init = self.init(noise).expand(tokens.shape[0], -1, -1)
                slots, attn = self.slot_attention(tokens[:, t], init, self.cfg.iters_first)
            else:
                slots, attn = self.slot_attention(tokens[:, t], self.transition(prev),
                                                  self.cfg.iters)  # fmt: skip
            all_slots.append(slots)
            all_attn.append(attn)
            prev = slots
        return torch.stack(all_slots, 1), torch.stack(all_attn, 1)

    def forward(self, frames: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """A training pass over clips (B, T, H, W, 3) uint8.

        Returns:
            ``slots`` (B, T, N, D), ``attn`` (B, T, N, M), ``recon`` and ``target`` (pixels
            (B, T, 3, S, S) or features (B, T, P, C)), ``masks`` (B, T, N, S * S or P).
        """
        tokens, target = self.features(frames)
        slots, attn = self.slots_over_time(tokens, noise)
        recon, masks = self.decoder(slots.flatten(0, 1))
        b, t = frames.shape[:2]
        return {"slots": slots, "attn": attn, "recon": recon.unflatten(0, (b, t)),
                "target": target, "masks": masks.unflatten(0, (b, t))}  # fmt: skip


class PatchModel(nn.Module):
    """DINO-WM baseline: slots are the frozen DINOv2 patch tokens (no slot attention)."""

    def __init__(self, cfg: EncoderConfig, load_backbone_weights: bool = True) -> None:
        super().__init__()
        if cfg.kind != "patch":
            raise ValueError(f"PatchModel needs encoder.kind='patch', got {cfg.kind!r}")
        self.cfg = cfg
        self.backbone = build_dinov2(cfg, load_backbone_weights)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, H, W, 3) -> patch tokens (B, T, P, C)."""
        b, t = frames.shape[:2]
        x = normalise_images(frames.flatten(0, 1), self.cfg.image_size)
        return self.backbone(x).unflatten(0, (b, t))


def build_model(cfg: EncoderConfig, load_backbone_weights: bool = True) -> nn.Module:
    if cfg.kind == "video":
        return VideoSlotModel(cfg, load_backbone_weights)
    return PatchModel(cfg, load_backbone_weights)
