import math

import pytest
import torch

from cjepa.config import PredictorConfig
from cjepa.planning.cem import CEMConfig, CEMSolver
from cjepa.planning.cost import slot_goal_cost
from cjepa.planning.world_model import WorldModelCost, check_history, takes_short_history
from cjepa.predictor import SlotPredictor

B, S, H, TH, N, D, A, P = 2, 5, 3, 3, 4, 8, 4, 3


def model(aux="entity", n_future=1, proprio=True):
    cfg = PredictorConfig(
        width=16, depth=1, heads=2, head_dim=8, mlp_dim=32, dropout=0.0, aux_encoding=aux
    )
    torch.manual_seed(0)
    return SlotPredictor(
        cfg,
        slot_dim=D,
        history=TH,
        n_future=n_future,
        action_dim=A,
        proprio_dim=P if proprio else 0,
    ).eval()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "history_slots": torch.randn(B, TH, N, D, generator=g),
        "goal_slots": torch.randn(B, N, D, generator=g),
        "history_actions": torch.randn(B, TH - 1, A, generator=g),
        "history_proprio": torch.randn(B, TH, P, generator=g),
        "goal_proprio": torch.randn(B, P, generator=g),
    }


def candidates(seed=1):
    return torch.randn(B, S, H, A, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("aux", "n_future"), [("entity", 1), ("concat", 1), ("entity", 2)])
def test_cost_matches_per_candidate_rollouts(aux, n_future):
    m, x, c = model(aux, n_future), inputs(), candidates()
    cost = WorldModelCost(m, **x)
    out = cost(c)
    assert out.shape == (B, S)
    assert cost.uses_proprio == (aux == "entity")
    # Reference: one rollout per (episode, candidate), actions laid out explicitly.
    ref = torch.empty(B, S)
    for b in range(B):
        for s in range(S):
            acts = torch.cat([x["history_actions"][b], c[b, s], torch.zeros(1, A)])[None]
            slots, prop = m.rollout(
                x["history_slots"][b : b + 1],
                H,
                actions=acts,
                proprio=x["history_proprio"][b : b + 1],
            )
            ref[b, s] = slot_goal_cost(
                slots[:, -1:],
                x["goal_slots"][b : b + 1],
                None if prop is None else prop[:, -1:],
                None if prop is None else x["goal_proprio"][b : b + 1],
            )[0, 0]
    assert torch.allclose(out, ref, atol=1e-5)
    steps = math.ceil(H / n_future)
    assert cost.stats() == {
        "cost_calls": 1,
        "forward_calls": steps,
        "rows_forwarded": B * S * steps,
        "rollout_steps": steps,
    }


def test_candidates_change_the_cost_and_history_actions_matter():
    m, x = model(), inputs()
    c = candidates()
    base = WorldModelCost(m, **x)(c)
    assert not torch.allclose(base, WorldModelCost(m, **x)(candidates(2)))
    x2 = dict(x, history_actions=x["history_actions"] + 1)
    assert not torch.allclose(base, WorldModelCost(m, **x2)(c))
    # A T_h-long action history is accepted; its last block (the first planned one) is ignored.
    x3 = dict(x, history_actions=torch.cat([x["history_actions"], torch.ones(B, 1, A)], 1))
    assert torch.equal(base, WorldModelCost(m, **x3)(c))


def test_chunking_gives_same_cost_and_counts_forwards():
    m, x, c = model(), inputs(), candidates()
    whole = WorldModelCost(m, **x)(c)
    chunked = WorldModelCost(m, **x, max_batch=4)
    assert torch.allclose(chunked(c), whole, atol=1e-6)
    chunks = math.ceil(B * S / 4)
    assert chunked.forward_calls == chunks * H and chunked.rollout_steps == H


def test_drives_cem_and_counts_calls():
    m, x = model(), inputs()
    cost = WorldModelCost(m, **x)
    solver = CEMSolver(CEMConfig(samples=S, elites=2, iterations=3, horizon=H))
    r = solver.solve(cost, B, A, generator=torch.Generator())
    assert r.actions.shape == (B, H, A)
    assert cost.cost_calls == 3 and cost.forward_calls == 3 * H
    cost.reset_counters()
    assert cost.stats()["forward_calls"] == 0


def test_patch_style_no_matching_and_no_proprio():
    m = model(proprio=False)
    x = inputs()
    del x["history_proprio"], x["goal_proprio"]
    cost = WorldModelCost(m, **x, match="none")
    assert cost(candidates()).shape == (B, S) and not cost.uses_proprio


@pytest.mark.parametrize(
    ("change", "msg"),
    [
        ({"history_slots": torch.zeros(B, TH + 1, N, D)}, "history_slots"),
        ({"goal_slots": torch.zeros(B, N + 1, D)}, "goal_slots"),
        ({"history_actions": torch.zeros(B, TH - 1, A + 1)}, "history_actions"),
        ({"history_actions": torch.zeros(B, TH + 1, A)}, "history_actions"),
        ({"history_proprio": None}, "history_proprio"),
        ({"goal_proprio": torch.zeros(B, P + 1)}, "goal_proprio"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_bad_inputs_raise(change, msg):
    with pytest.raises(ValueError, match=msg):
        WorldModelCost(model(), **{**inputs(), **change})


def test_rejects_training_mode_and_bad_candidates():
    m = model().train()
    with pytest.raises(ValueError, match="eval"):
        WorldModelCost(m, **inputs())
    cost = WorldModelCost(m.eval(), **inputs())
    with pytest.raises(ValueError, match="candidates"):
        cost(torch.zeros(B, S, H, A + 1))


def test_short_history_without_predictor_support_is_one_clear_error():
    m, x = model(), inputs()
    short = dict(
        x,
        history_slots=x["history_slots"][:, -1:],
        history_actions=x["history_actions"][:, :0],
        history_proprio=x["history_proprio"][:, -1:],
    )
    assert not takes_short_history(m)  # the default predictor needs exactly T_h frames
    with pytest.raises(ValueError, match="short_history=right_align") as err:
        WorldModelCost(m, **short)
    assert "\n" not in str(err.value) and "T_h=3" in str(err.value)
    with pytest.raises(ValueError, match="at most T_h"):
        check_history(m, TH + 1)
    check_history(m, TH)  # the model's own history is fine


def test_one_frame_history_with_a_right_aligned_predictor():
    cfg = PredictorConfig(width=16, depth=1, heads=2, head_dim=8, mlp_dim=32, dropout=0.0,
                          short_history="right_align")  # fmt: skip
    torch.manual_seed(0)
    m = SlotPredictor(cfg, slot_dim=D, history=TH, n_future=1, action_dim=A, proprio_dim=P).eval()
    assert takes_short_history(m)
    x, c = inputs(), candidates()
    short = dict(x, history_slots=x["history_slots"][:, -1:],
                 history_actions=x["history_actions"][:, :0],
                 history_proprio=x["history_proprio"][:, -1:])  # fmt: skip
    out = WorldModelCost(m, **short)(c)
    ref = torch.empty(B, S)
    for b in range(B):
        for s in range(S):
            acts = torch.cat([c[b, s], torch.zeros(1, A)])[None]  # no executed history blocks
            slots, prop = m.rollout(short["history_slots"][b : b + 1], H, actions=acts,
                                    proprio=short["history_proprio"][b : b + 1])  # fmt: skip
            ref[b, s] = slot_goal_cost(slots[:, -1:], x["goal_slots"][b : b + 1], prop[:, -1:],
                                       x["goal_proprio"][b : b + 1])[0, 0]  # fmt: skip
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the full history still works, and gives another cost
    assert not torch.allclose(WorldModelCost(m, **x)(c), out)
