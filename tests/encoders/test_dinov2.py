"""DINOv2 ViT-S/14: token count and width, official key layout, strict and explicit loading."""

from __future__ import annotations

import pytest
import torch

from cjepa.encoders.dinov2 import (
    DinoVisionTransformer,
    load_dinov2_weights,
    load_official_state_dict,
)

# The key layout of the released dinov2_vits14_pretrain.pth (facebookresearch/dinov2,
# hub models built with block_chunks=0); per block i in 0..11.
TOP_KEYS = {
    "cls_token": (1, 1, 384),
    "pos_embed": (1, 1370, 384),  # 1 + 37 * 37 positions: trained at 518 px
    "mask_token": (1, 384),
    "patch_embed.proj.weight": (384, 3, 14, 14),
    "patch_embed.proj.bias": (384,),
    "norm.weight": (384,),
    "norm.bias": (384,),
}
BLOCK_KEYS = {
    "norm1.weight": (384,),
    "norm1.bias": (384,),
    "attn.qkv.weight": (1152, 384),
    "attn.qkv.bias": (1152,),
    "attn.proj.weight": (384, 384),
    "attn.proj.bias": (384,),
    "ls1.gamma": (384,),
    "norm2.weight": (384,),
    "norm2.bias": (384,),
    "mlp.fc1.weight": (1536, 384),
    "mlp.fc1.bias": (1536,),
    "mlp.fc2.weight": (384, 1536),
    "mlp.fc2.bias": (384,),
    "ls2.gamma": (384,),
}


def official_layout() -> dict[str, tuple[int, ...]]:
    keys = dict(TOP_KEYS)
    for i in range(12):
        keys.update({f"blocks.{i}.{k}": v for k, v in BLOCK_KEYS.items()})
    return keys


@pytest.fixture(scope="module")
def vit() -> DinoVisionTransformer:
    return DinoVisionTransformer().eval()


def test_state_dict_matches_the_official_layout(vit):
    got = {k: tuple(v.shape) for k, v in vit.state_dict().items()}
    assert got == official_layout()


def test_196_tokens_of_width_384_at_196px(vit):
    x = torch.randn(2, 3, 196, 196, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = vit(x)
    assert tokens.shape == (2, 196, 384)
    assert torch.isfinite(tokens).all()
    # Images differ -> tokens differ (the position table was interpolated, not ignored).
    assert not torch.allclose(tokens[0], tokens[1])


def test_pos_embed_interpolation_is_identity_at_native_grid(vit):
    assert vit.interpolate_pos_embed(37, 37) is vit.pos_embed
    table = vit.interpolate_pos_embed(14, 14)
    assert table.shape == (1, 197, 384)
    torch.testing.assert_close(table[:, 0], vit.pos_embed[:, 0])  # cls position kept


def _random_official_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.02 for k, shape in official_layout().items()}


def test_strict_load_from_a_local_file(tmp_path):
    state = _random_official_state(1)
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    model = DinoVisionTransformer()
    load_dinov2_weights(model, path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_missing_or_unexpected_keys_are_named():
    state = _random_official_state(2)
    del state["blocks.3.ls1.gamma"]
    with pytest.raises(KeyError, match=r"blocks\.3\.ls1\.gamma"):
        load_official_state_dict(DinoVisionTransformer(), state)
    state = _random_official_state(2)
    state["blocks.0.attn.q.weight"] = state.pop("blocks.0.attn.qkv.weight")  # wrong name
    with pytest.raises(KeyError, match=r"blocks\.0\.attn\.q\.weight"):
        load_official_state_dict(DinoVisionTransformer(), state)


def test_wrong_shape_is_named():
    state = _random_official_state(3)
    state["pos_embed"] = torch.zeros(1, 197, 384)
    with pytest.raises(ValueError, match="pos_embed"):
        load_official_state_dict(DinoVisionTransformer(), state)


def test_missing_file_is_not_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_dinov2_weights(DinoVisionTransformer(), tmp_path / "nope.pth")
