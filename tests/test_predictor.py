import pytest
import torch

from cjepa.config import PredictorConfig
from cjepa.predictor import SlotPredictor

B, TH, TP, N, D, A, P = 3, 4, 2, 5, 16, 2, 4
AUX = ["entity", "concat", "none"]


def small(aux="none", dropout=0.0, **kw):
    cfg = PredictorConfig(
        width=16, depth=2, heads=2, head_dim=8, mlp_dim=32, dropout=dropout, aux_encoding=aux, **kw
    )
    torch.manual_seed(0)
    dims = {"action_dim": A, "proprio_dim": P} if aux != "none" else {}
    return SlotPredictor(cfg, slot_dim=D, history=TH, n_future=TP, **dims).eval()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    slots = torch.randn(B, TH, N, D, generator=g)
    mask = torch.zeros(B, TH, N, dtype=torch.bool)
    mask[:, 1:, 1] = True  # object 1 hidden at t >= 1
    actions = torch.randn(B, TH + TP, A, generator=g)
    proprio = torch.randn(B, TH, P, generator=g)
    return slots, mask, actions, proprio


@pytest.mark.parametrize("aux", AUX)
def test_output_shapes(aux):
    model = small(aux)
    slots, mask, actions, proprio = inputs()
    out = model(slots, mask, actions=actions, proprio=proprio, need_weights=True)
    assert out.slots.shape == (B, TH + TP, N, D)
    e = N + (2 if aux == "entity" else 0)
    assert len(out.attentions) == 2
    assert out.attentions[0].shape == (B, 2, (TH + TP) * e, (TH + TP) * e)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(B, 2, (TH + TP) * e))
    if aux == "entity":
        assert out.proprio.shape == (B, TH + TP, P)
    else:
        assert out.proprio is None
    rolled, rolled_p = model.rollout(slots, 5, actions=torch.randn(B, TH + 5, A), proprio=proprio)
    assert rolled.shape == (B, 5, N, D)
    assert (rolled_p is None) == (aux != "entity")


@pytest.mark.parametrize("aux", AUX)
def test_hidden_values_are_never_read(aux):
    """Visible tokens and predictions cannot see what is hidden (no leak of masked content)."""
    model = small(aux)
    slots, mask, actions, proprio = inputs()
    out = model(slots, mask, actions=actions, proprio=proprio)
    changed = slots.clone()
    changed[mask] = torch.randn(int(mask.sum()), D) * 100
    out2 = model(changed, mask, actions=actions, proprio=proprio)
    torch.testing.assert_close(out.slots, out2.slots)


def test_future_proprio_is_not_read():
    model = small("entity")
    slots, mask, actions, proprio = inputs()
    longer = torch.cat([proprio, torch.randn(B, TP, P)], dim=1)
    a = model(slots, mask, actions=actions, proprio=proprio).slots
    b = model(slots, mask, actions=actions, proprio=longer).slots
    torch.testing.assert_close(a, b)


def test_slot_permutation_equivariance():
    """No positional code along slots: permuting objects permutes the predictions."""
    model = small()
    slots, mask, _, _ = inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    out = model(slots, mask).slots
    out_p = model(slots[:, :, perm], mask[:, :, perm]).slots
    torch.testing.assert_close(out[:, :, perm], out_p, atol=1e-5, rtol=1e-5)


def test_masked_tokens_follow_their_own_anchor():
    """A hidden object's prediction is tied to its own frame-0 slot (identity via phi)."""
    model = small()
    slots, mask, _, _ = inputs()
    slots = slots.clone().requires_grad_(True)
    out = model(slots, mask).slots
    out[:, 1:TH, 1].sum().backward()  # object 1's hidden history predictions
    grad = slots.grad[:, 0].abs().sum(dim=(0, 2))  # sensitivity to each object's anchor
    assert grad[1] > 3 * grad[[0, 2, 3, 4]].max()

    # Swapping the anchors of two hidden objects swaps their predictions.
    mask2 = mask.clone()
    mask2[:, 1:, 3] = True
    swapped = slots.detach().clone()
    swapped[:, 0, [1, 3]] = swapped[:, 0, [3, 1]]
    a = model(slots.detach(), mask2).slots
    b = model(swapped, mask2).slots
    torch.testing.assert_close(a[:, 1:TH, 1], b[:, 1:TH, 3], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("aux", ["entity", "concat"])
def test_actions_condition_the_future(aux):
    model = small(aux)
    slots, mask, actions, proprio = inputs()
    a = model(slots, mask, actions=actions, proprio=proprio).slots[:, TH:]
    b = model(slots, mask, actions=actions + 1.0, proprio=proprio).slots[:, TH:]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("aux", ["entity", "concat"])
def test_last_steps_action_is_not_read(aux):
    # actions[:, t] follows frame t: the window's last action affects no frame in it, and a
    # planner cannot know it, so changing it must change nothing.
    model = small(aux)
    slots, mask, actions, proprio = inputs()
    other = actions.clone()
    other[:, -1] += 5.0
    a = model(slots, mask, actions=actions, proprio=proprio)
    b = model(slots, mask, actions=other, proprio=proprio)
    torch.testing.assert_close(a.slots, b.slots)
    other[:, -2] += 5.0  # the action before the last predicted frame does matter
    c = model(slots, mask, actions=other, proprio=proprio)
    assert not torch.allclose(a.slots[:, -1], c.slots[:, -1])


def test_official_variant_runs():
    model = small(norm_before_attention=False)
    assert model(*inputs()[:2]).slots.shape == (B, TH + TP, N, D)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("anchor", "frame 0"),
        ("shape", "slots must be"),
        ("mask_dtype", "mask must be"),
        ("actions", "actions must be"),
    ],
)
def test_bad_inputs_raise(change, message):
    model = small("entity")
    slots, mask, actions, proprio = inputs()
    if change == "anchor":
        mask[:, 0, 0] = True
    elif change == "shape":
        slots = slots[:, :2]
        mask = mask[:, :2]
    elif change == "mask_dtype":
        mask = mask.float()
    elif change == "actions":
        actions = actions[:, :TH]
    with pytest.raises(ValueError, match=message):
        model(slots, mask, actions=actions, proprio=proprio)


def test_rollout_matches_manual_sliding_window():
    model = small()
    slots, _, _, _ = inputs()
    visible = torch.zeros(B, TH, N, dtype=torch.bool)
    rolled, _ = model.rollout(slots, 3)
    first = model(slots, visible).slots[:, TH:]
    window = torch.cat([slots, first], dim=1)[:, -TH:]
    second = model(window, visible).slots[:, TH:]
    torch.testing.assert_close(rolled, torch.cat([first, second], dim=1)[:, :3])


def _values_only(model):
    """Attention that carries nothing between tokens: each output depends on its own token."""
    for block in model.blocks:
        torch.nn.init.zeros_(block.attn.qkv.weight)
        torch.nn.init.zeros_(block.attn.qkv.bias)
    return model


@pytest.mark.parametrize("mode", ["anchor", "last_visible"])
def test_future_query_starts_from_the_chosen_frame(mode):
    model = _values_only(small(future_query=mode))
    slots, mask, _, _ = inputs()
    mask[:] = False
    mask[:, 2:, 1] = True  # object 1: last visible at t = 1
    moved = slots.clone()
    moved[:, TH - 1] += 1.0  # every object's last history frame
    moved[:, 1, 1] += 1.0  # object 1's last visible frame
    a = model(slots, mask).slots[:, TH:]
    b = model(moved, mask).slots[:, TH:]
    if mode == "anchor":  # future tokens start from frame 0 only
        torch.testing.assert_close(a, b)
    else:  # ... or from each object's last visible frame (object 1: t = 1)
        assert not torch.allclose(a[:, :, 0], b[:, :, 0])
        assert not torch.allclose(a[:, :, 1], b[:, :, 1])
        only_last = slots.clone()
        only_last[:, TH - 1, 1] += 1.0  # object 1's hidden last frame is not read
        torch.testing.assert_close(a[:, :, 1], model(only_last, mask).slots[:, TH:, 1])


def test_future_residual_adds_the_last_visible_slot():
    cfg = PredictorConfig(width=16, depth=1, heads=2, head_dim=8, mlp_dim=16, dropout=0.0)
    model = SlotPredictor(
        PredictorConfig(**{**cfg.__dict__, "future_residual": True}),
        slot_dim=16,
        history=3,
        n_future=2,
    )
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)  # the head now outputs 0: future = last visible slot
    x = torch.randn(2, 3, 4, 16)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[0, 2, 1] = True  # object 1 of sample 0 hidden at the last frame: falls back to frame 1
    out = model(x, mask).slots
    assert torch.equal(out[1, 3:], x[1, 2:3].expand(2, 4, 16))
    assert torch.equal(out[0, 3:, 1], x[0, 1:2, 1].expand(2, 16))
    assert torch.equal(out[:, :3], torch.zeros_like(out[:, :3]))  # history cells: head only
