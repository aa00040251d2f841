"""DINOv2 ViT (default ViT-S/14) written here in plain torch, with the official key layout.

Parameter names follow ``facebookresearch/dinov2`` (``dinov2/models/vision_transformer.py``
and ``dinov2/layers/*``, hub models built with ``block_chunks=0``), so the released
``dinov2_vits14_pretrain.pth`` state dict loads strictly:

    cls_token (1, 1, 384)          pos_embed (1, 1 + 37 * 37, 384)   mask_token (1, 384)
    patch_embed.proj.{weight,bias} (384, 3, 14, 14)
    blocks.{i}.norm1.{weight,bias}  blocks.{i}.attn.qkv.{weight,bias}  blocks.{i}.attn.proj.*
    blocks.{i}.ls1.gamma            blocks.{i}.norm2.*  blocks.{i}.mlp.fc1.*  blocks.{i}.mlp.fc2.*
    blocks.{i}.ls2.gamma            norm.{weight,bias}

Weights are never downloaded: the user points at a local file (``load_dinov2_weights``).
Shapes: B batch, P patches ((H / 14) * (W / 14)), C = embed dim.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# DINOv2 was trained on ImageNet-normalised inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, P, C)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, n, C / heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block with layer scale: x += ls1(attn(norm1 x)); x += ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 backbone returning the final-normed patch tokens.

    Args:
        img_size: the size the position table was trained at (518 for the released models:
            37 x 37 patches); other input sizes interpolate it bicubically, as DINOv2 does.
        init_seed: seed of the random init used when no weights are loaded (tests).
    """

    def __init__(
        self,
        patch_size: int = 14,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        img_size: int = 518,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        self.patch_size, self.dim = patch_size, dim
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused; kept for strict loading
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        g = torch.Generator().manual_seed(init_seed)
        with torch.no_grad():  # timm-style init, from an explicit generator
            self.pos_embed.normal_(0.0, 0.02, generator=g)
            self.cls_token.normal_(0.0, 1e-6, generator=g)
            for m in self.modules():
                if isinstance(m, nn.Linear | nn.Conv2d):
                    m.weight.normal_(0.0, 0.02, generator=g)
                    nn.init.zeros_(m.bias)

    def interpolate_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position table (1, 1 + h * w, C) for an h x w patch grid (DINOv2's bicubic rule)."""
        if h == w == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:].float()
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, self.dim).permute(0, 3, 1, 2)
        # DINOv2 scales by (n + 0.1) / grid (the 0.1 avoids a floor error in the output size).
        scale = ((h + 0.1) / self.grid, (w + 0.1) / self.grid)
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic")
        if patch_pos.shape[-2:] != (h, w):
            raise RuntimeError(f"pos_embed interpolation gave {tuple(patch_pos.shape[-2:])}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, h * w, self.dim)
        return torch.cat([cls_pos, patch_pos.to(cls_pos.dtype)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, P, C) of ImageNet-normalised images (B, 3, H, W), H, W % 14 == 0."""
        _, _, h, w = images.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of patch {self.patch_size}")
        x = self.patch_embed(images)  # (B, P, C)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.interpolate_pos_embed(h // self.patch_size, w // self.patch_size)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:]  # drop the cls token: slot attention reads patches


def load_dinov2_weights(model: DinoVisionTransformer, path: str | Path) -> None:
    """Load an official-layout DINOv2 state dict from a local file, strictly.

    Raises:
        FileNotFoundError: ``path`` does not exist (nothing is downloaded).
        ValueError: the file is corrupt or holds Python objects other than tensors (refused by
            ``torch.load(weights_only=True)``).
        KeyError: a key is missing or unexpected; the message names them.
        ValueError: a tensor has the wrong shape; the message names the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DINOv2 weights not found at {path} (they are never downloaded)")
    from cjepa.train import load_checkpoint  # weights-only, one-line errors naming the file

    state = load_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # tolerate a {"model": state_dict} wrapper
    load_official_state_dict(model, state, where=str(path))


def load_official_state_dict(
    model: DinoVisionTransformer, state: dict[str, torch.Tensor], where: str = "state dict"
) -> None:
    """Strict load with errors that name the offending keys (see ``load_dinov2_weights``)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"{where}: DINOv2 keys do not match the official layout: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{where}: key {key!r} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def normalise_images(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames (B, H, W, 3) -> ImageNet-normalised float (B, 3, size, size)."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)  # fmt: skip
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def n_patches(image_size: int, patch_size: int = 14) -> int:
    return (image_size // patch_size) ** 2


def check_grid(image_size: int, patch_size: int) -> None:
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch size {patch_size}")
