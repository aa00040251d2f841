import pytest
import torch

from cjepa.config import PredictorConfig
from cjepa.predictor import SlotPredictor

B, TH, TP, N, D, A, P = 3, 4, 2, 5, 16, 2, 4
AUX = ["entity", "concat", "none"]


def small(aux="none", dropout=0.0, **kw):
    base = {"width": 16, "depth": 2, "heads": 2, "head_dim": 8, "mlp_dim": 32}
    cfg = PredictorConfig(**(base | {"dropout": dropout, "aux_encoding": aux} | kw))
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


# ----------------------------------------------------------------------------------------------
# Official-code options (PredictorConfig docstring; ExperimentConfig variant "official")


def _copy_with_history(model, history, **kw):
    """The same weights in a model built for ``history`` frames, whose time embedding holds the
    last ``history + T_p`` rows of ``model``'s: a right-aligned short history, spelled out."""
    other = SlotPredictor(
        model.cfg,
        slot_dim=D,
        history=history,
        n_future=TP,
        action_dim=model.action_dim,
        proprio_dim=model.proprio_dim,
    ).eval()
    state = dict(model.state_dict())
    state["time_embed"] = model.time_embed.detach()[TH - history :].clone()
    other.load_state_dict(state)
    return other


@pytest.mark.parametrize("aux", AUX)
@pytest.mark.parametrize("k", [1, 2])
def test_short_history_right_aligns_the_time_embedding(aux, k):
    model = small(aux, short_history="right_align")
    slots, mask, actions, proprio = inputs()
    short_mask = torch.zeros(B, k, N, dtype=torch.bool)
    a, p = actions[:, : k + TP], proprio[:, :k]
    got = model(slots[:, :k], short_mask, actions=a, proprio=p)
    ref = _copy_with_history(model, k)(slots[:, :k], short_mask, actions=a, proprio=p)
    assert got.slots.shape == (B, k + TP, N, D)
    assert torch.equal(got.slots, ref.slots)
    if aux == "entity":
        assert torch.equal(got.proprio, ref.proprio)
    # A full history is unchanged by the setting.
    full = model(slots, mask, actions=actions, proprio=proprio).slots
    torch.testing.assert_close(
        full, small(aux)(slots, mask, actions=actions, proprio=proprio).slots
    )


def test_one_frame_history_reads_the_last_history_row():
    """k = 1: the frame takes time row T_h - 1 (not row 0) and the future rows follow it."""
    model = small(short_history="right_align")
    slots, _, _, _ = inputs()
    one = torch.zeros(B, 1, N, dtype=torch.bool)
    base = model(slots[:, :1], one).slots
    # Random (not constant: a LayerNorm would remove a constant shift) changes of the rows.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.time_embed[: TH - 1] += torch.randn(TH - 1, 16, generator=g)  # rows k=1 skips
    torch.testing.assert_close(model(slots[:, :1], one).slots, base)
    with torch.no_grad():
        model.time_embed[TH - 1] += torch.randn(16, generator=g)  # the row it reads
    assert (model(slots[:, :1], one).slots - base).abs().max() > 1e-2


def test_short_history_is_rejected_by_default():
    model = small()
    slots, mask, _, _ = inputs()
    with pytest.raises(ValueError, match="short_history=right_align"):
        model(slots[:, :2], mask[:, :2])


def test_rollout_from_a_short_history_grows_then_slides():
    model = small(short_history="right_align")
    slots, _, _, _ = inputs()
    rolled, _ = model.rollout(slots[:, :1], 5)  # windows of 1, 3, then the last 4 frames
    seq = slots[:, :1]
    for _ in range(3):
        window = seq[:, -TH:]
        vis = torch.zeros(B, window.shape[1], N, dtype=torch.bool)
        seq = torch.cat([seq, model(window, vis).slots[:, window.shape[1] :]], dim=1)
    torch.testing.assert_close(rolled, seq[:, 1:6])


def _block_input(model, *args, **kwargs):
    """The token sequence entering the first transformer block, (B, T, E, W)."""
    seen = {}

    def keep(_module, args):
        seen["h"] = args[0]  # returns None: the input is left as it is

    handle = model.blocks[0].register_forward_pre_hook(keep)
    try:
        out = model(*args, **kwargs)
    finally:
        handle.remove()
    t = out.slots.shape[1]
    return seen["h"].reshape(out.slots.shape[0], t, -1, model.width), out


def test_aux_order_lays_out_proprio_before_action():
    slots, mask, actions, proprio = inputs()
    ap = small("entity")
    pa = small("entity", aux_order="proprio_action")  # same seed: same weights
    x_ap, out_ap = _block_input(ap, slots, mask, actions=actions, proprio=proprio)
    x_pa, out_pa = _block_input(pa, slots, mask, actions=actions, proprio=proprio)
    assert pa.aux_names == ["proprio", "action"] and ap.aux_names == ["action", "proprio"]
    torch.testing.assert_close(x_pa[:, :, N], x_ap[:, :, N + 1])  # proprio token
    torch.testing.assert_close(x_pa[:, :, N + 1], x_ap[:, :, N])  # action token
    # No positional code along entities: the order changes the layout, not the predictions.
    torch.testing.assert_close(out_pa.slots, out_ap.slots, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_pa.proprio, out_ap.proprio, atol=1e-5, rtol=1e-5)


def test_masked_future_action_is_a_query():
    model = small("entity", future_action="masked", aux_order="proprio_action")
    slots, mask, actions, proprio = inputs()
    x, out = _block_input(model, slots, mask, actions=actions, proprio=proprio)
    with torch.no_grad():
        a0 = model.action_in(actions[:, 0])  # (B, W): the frame-0 action embedding
        for t in range(TH, TH + TP):
            want = model.mask_token + model.phi(a0) + model.time_embed[t]
            torch.testing.assert_close(x[:, t, N + 1], want)
        torch.testing.assert_close(
            x[:, 1, N + 1], model.action_in(actions[:, 1]) + model.time_embed[1]
        )
    other = actions.clone()
    other[:, TH:] += 5.0  # every future-frame action: never read
    again = model(slots, mask, actions=other, proprio=proprio).slots
    torch.testing.assert_close(out.slots, again)
    other[:, TH - 1] += 5.0  # the action after the last history frame is read
    assert not torch.allclose(out.slots, model(slots, mask, actions=other, proprio=proprio).slots)


def test_proprio_embedding_target_shares_the_slot_head():
    model = small("entity", proprio_target="embedding")
    assert model.proprio_head is None
    slots, mask, actions, proprio = inputs()
    window = torch.cat([proprio, torch.randn(B, TP, P)], dim=1)  # (B, T, P) as in training
    out = model(slots, mask, actions=actions, proprio=window)
    assert out.proprio.shape == (B, TH + TP, 16)
    assert not out.proprio_target.requires_grad
    torch.testing.assert_close(out.proprio_target, model.proprio_in(window))
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    zero = model(slots, mask, actions=actions, proprio=window)
    assert not zero.slots.any() and not zero.proprio.any()


def test_proprio_embedding_needs_width_equal_to_slot_dim():
    cfg = PredictorConfig(width=32, depth=1, heads=2, head_dim=8, proprio_target="embedding")
    with pytest.raises(ValueError, match=r"predictor\.width=32"):
        SlotPredictor(cfg, slot_dim=D, history=TH, n_future=TP, action_dim=A, proprio_dim=P)


def test_rollout_feeds_predicted_proprio_embeddings_back():
    model = small("entity", proprio_target="embedding", short_history="right_align")
    slots, _, _, proprio = inputs()
    acts = torch.randn(B, TH + 3, A, generator=torch.Generator().manual_seed(3))
    rolled, rolled_p = model.rollout(slots, 3, actions=acts, proprio=proprio)
    vis = torch.zeros(B, TH, N, dtype=torch.bool)
    first = model(slots, vis, actions=acts[:, : TH + TP], proprio=proprio)
    tokens = torch.cat([model.proprio_in(proprio), first.proprio[:, TH:]], dim=1)[:, -TH:]
    window = torch.cat([slots, first.slots[:, TH:]], dim=1)[:, -TH:]
    padded = torch.cat([acts, torch.zeros(B, 2, A)], dim=1)  # rollout pads past the end
    second = model(window, vis, actions=padded[:, TP : TH + 2 * TP], proprio_tokens=tokens)
    torch.testing.assert_close(
        rolled, torch.cat([first.slots[:, TH:], second.slots[:, TH:]], 1)[:, :3]
    )
    want_p = torch.cat([first.proprio[:, TH:], second.proprio[:, TH:]], 1)[:, :3]
    torch.testing.assert_close(rolled_p, want_p)


def test_concat_append_widens_tokens_and_masks_them_whole():
    c = 8
    model = small(
        "concat", concat_dim=c, concat_join="append", aux_order="proprio_action", head_dim=None
    )
    assert model.width == 16 + 2 * c
    assert model.blocks[0].attn.head_dim == (16 + 2 * c) // 2  # width / heads
    slots, mask, actions, proprio = inputs()
    x, out = _block_input(model, slots, mask, actions=actions, proprio=proprio)
    with torch.no_grad():
        ps, ac = model.proprio_small(proprio), model.action_small(actions)  # (B, T_h, C)
        t, n = 2, 0  # a visible cell: [slot, proprio, action] + e_t
        want = torch.cat([slots[:, t, n], ps[:, t], ac[:, t]], dim=-1) + model.time_embed[t]
        torch.testing.assert_close(x[:, t, n], want)
        anchor = torch.cat([slots[:, 0, 1], ps[:, 0], ac[:, 0]], dim=-1)  # hidden object 1
        want = model.mask_token + model.phi(anchor) + model.time_embed[t]
        torch.testing.assert_close(x[:, t, 1], want)
    assert out.slots.shape == (B, TH + TP, N, D) and out.proprio is None


def test_concat_append_embedding_proprio_is_per_slot():
    c = 8
    model = small("concat", concat_dim=c, concat_join="append", proprio_target="embedding")
    slots, mask, actions, proprio = inputs()
    out = model(slots, mask, actions=actions, proprio=proprio)
    assert out.proprio.shape == (B, TH + TP, N, c)
    assert out.proprio_target.shape == (B, TH, 1, c)
    rolled, rolled_p = model.rollout(slots, 3, actions=torch.randn(B, TH + 3, A), proprio=proprio)
    assert rolled.shape == (B, 3, N, D) and rolled_p.shape == (B, 3, N, c)


def test_head_dim_null_needs_heads_to_divide_the_width():
    cfg = PredictorConfig(width=16, depth=1, heads=3, head_dim=None)
    with pytest.raises(ValueError, match=r"predictor\.heads=3"):
        SlotPredictor(cfg, slot_dim=D, history=TH, n_future=TP)


@pytest.mark.parametrize("on", [True, False])
def test_attention_output_dropout_switch(on):
    block = small(dropout=0.5, attention_output_dropout=on).blocks[0].train()
    block.attn.dropout = 0.0  # keep only the residual dropouts
    torch.nn.init.zeros_(block.mlp[-1].weight)
    torch.nn.init.zeros_(block.mlp[-1].bias)  # the MLP branch is 0, dropout or not
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    a, _ = block(x, False)
    torch.manual_seed(2)
    b, _ = block(x, False)
    assert torch.equal(a, b) != on


def test_time_embed_init():
    def table(init):
        cfg = PredictorConfig(width=64, depth=1, heads=2, head_dim=8, time_embed_init=init)
        torch.manual_seed(0)
        return SlotPredictor(cfg, slot_dim=D, history=10, n_future=10).time_embed.detach()

    assert 0.9 < table("standard_normal").std() < 1.1  # 1,280 draws of N(0, 1)
    assert table("trunc_normal").std() < 0.03  # std 0.02
