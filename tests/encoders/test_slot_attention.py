"""Slot attention: shapes, permutation equivariance over slots, masks as a partition of unity,
and the initialiser's explicit randomness."""

from __future__ import annotations

import torch

from cjepa.encoders.slot_attention import SlotAttention, SlotInit, SlotTransition

B, N, D, M, C = 3, 5, 16, 20, 12


def _seeded(build, seed: int = 0):
    """Build a module whose default init is fixed by ``seed``, leaving the global RNG alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _module(seed: int = 0) -> SlotAttention:
    return _seeded(lambda: SlotAttention(C, D), seed)


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, M, C, generator=g), torch.randn(B, N, D, generator=g)


def test_shapes_and_masks_sum_to_one_over_slots():
    sa = _module()
    x, slots = _inputs()
    out, attn = sa(x, slots, iters=3)
    assert out.shape == (B, N, D) and attn.shape == (B, N, M)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(B, M))
    assert (attn >= 0).all()


def test_permuting_initial_slots_permutes_outputs():
    sa = _module()
    x, slots = _inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    out, attn = sa(x, slots, iters=2)
    out_p, attn_p = sa(x, slots[:, perm], iters=2)
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, perm], rtol=1e-5, atol=1e-5)
    # ...and the outputs depend on the slots at all (the test can fail).
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)


def test_input_order_does_not_matter():
    sa = _module()
    x, slots = _inputs()
    perm = torch.randperm(M, generator=torch.Generator().manual_seed(2))
    out, attn = sa(x, slots, iters=2)
    out_p, attn_p = sa(x[:, perm], slots, iters=2)
    torch.testing.assert_close(out_p, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, :, perm], rtol=1e-5, atol=1e-5)


def test_transition_is_permutation_equivariant():
    tr = _seeded(lambda: SlotTransition(D, heads=4))
    _, slots = _inputs()
    perm = torch.tensor([4, 2, 0, 1, 3])
    torch.testing.assert_close(tr(slots[:, perm]), tr(slots)[:, perm], rtol=1e-5, atol=1e-5)


def test_init_noise_comes_only_from_the_generator():
    init = SlotInit(N, D)
    torch.testing.assert_close(SlotInit(N, D).mu, init.mu)  # its init is seeded too
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)  # the global RNG must not matter
        a = init(init.noise(B, torch.Generator().manual_seed(7)))
        torch.manual_seed(456)
        b = init(init.noise(B, torch.Generator().manual_seed(7)))
    c = init(init.noise(B, torch.Generator().manual_seed(8)))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert a.shape == (B, N, D)
    # Shared noise (N, D) broadcasts over the batch: every sample starts alike.
    shared = init(torch.randn(N, D, generator=torch.Generator().manual_seed(0)))
    assert shared.shape == (1, N, D)
