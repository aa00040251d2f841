"""WorldModelCost with the official code's proprio target (``proprio_target="embedding"``)."""

import torch

from cjepa.config import PredictorConfig
from cjepa.planning.cost import slot_goal_cost
from cjepa.planning.world_model import WorldModelCost
from cjepa.predictor import SlotPredictor

B, S, H, TH, N, D, A, P = 2, 3, 2, 3, 4, 8, 4, 3


def test_goal_proprio_is_compared_in_embedding_space():
    cfg = PredictorConfig(
        width=D, depth=1, heads=2, head_dim=None, mlp_dim=16, dropout=0.0,
        proprio_target="embedding", aux_order="proprio_action", future_action="masked",
    )  # fmt: skip
    torch.manual_seed(0)
    m = SlotPredictor(cfg, slot_dim=D, history=TH, n_future=1, action_dim=A, proprio_dim=P).eval()
    g = torch.Generator().manual_seed(0)
    x = {
        "history_slots": torch.randn(B, TH, N, D, generator=g),
        "goal_slots": torch.randn(B, N, D, generator=g),
        "history_actions": torch.randn(B, TH - 1, A, generator=g),
        "history_proprio": torch.randn(B, TH, P, generator=g),
        "goal_proprio": torch.randn(B, P, generator=g),
    }
    c = torch.randn(B, S, H, A, generator=g)
    cost = WorldModelCost(m, **x)
    assert cost.uses_proprio
    out = cost(c)
    ref = torch.empty(B, S)
    with torch.no_grad():
        goal_p = m.proprio_in(x["goal_proprio"])  # (B, W): the goal's proprio embedding
        for b in range(B):
            for s in range(S):
                acts = torch.cat([x["history_actions"][b], c[b, s], torch.zeros(1, A)])[None]
                slots, prop = m.rollout(
                    x["history_slots"][b : b + 1], H, actions=acts,
                    proprio=x["history_proprio"][b : b + 1],
                )  # fmt: skip
                assert prop.shape == (1, H, D)  # predicted embeddings, width W = D
                ref[b, s] = slot_goal_cost(
                    slots[:, -1:], x["goal_slots"][b : b + 1], prop[:, -1:], goal_p[b : b + 1]
                )[0, 0]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
