"""Causal validation: exact AUROC with ties, attention mass bookkeeping, the stage end to end."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from cjepa.config import PredictorConfig
from cjepa.evaluation.causal import attention_mass, auroc, causal_stage
from cjepa.evaluation.stage import StageContext
from cjepa.predictor import SlotPredictor
from cjepa.train import build_predictor


def pairwise_auroc(scores, labels) -> float:
    """The definition: mean over (positive, negative) pairs of 1[s+ > s-] + 1/2 1[s+ = s-]."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return sum(wins) / len(wins)


def test_auroc_known_values():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([1, 2, 3], [0, 1, 1]) == 1.0
    assert auroc([1, 2, 3], [1, 0, 0]) == 0.0
    assert auroc([5, 5, 5, 5], [0, 1, 0, 1]) == 0.5  # all tied
    assert auroc([1, 2, 2, 3], [0, 1, 0, 1]) == 0.875  # one tied pair counts 1/2
    assert np.isnan(auroc([1, 2], [1, 1]))
    with pytest.raises(ValueError, match="differ in shape"):
        auroc([1, 2, 3], [0, 1])


def test_auroc_matches_pairwise_definition_with_ties():
    g = np.random.default_rng(0)
    for _ in range(20):
        scores = g.integers(0, 5, 40)  # many ties
        labels = g.random(40) < 0.3
        assert auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


def test_attention_mass_is_a_share_per_layer():
    cfg = PredictorConfig(width=16, depth=3, heads=2, head_dim=8, mlp_dim=32, dropout=0.0)
    torch.manual_seed(0)
    model = SlotPredictor(cfg, slot_dim=8, history=3, n_future=2).eval()
    slots = torch.randn(4, 3, 5, 8, generator=torch.Generator().manual_seed(1))
    hidden = torch.tensor([0, 2, 4, 1])
    mass = attention_mass(model, slots, hidden)
    assert mass.shape == (3, 4, 5)
    assert torch.allclose(mass.sum(-1), torch.ones(3, 4), atol=1e-5)
    # reference for one layer and window: mean over heads and hidden queries, summed per entity
    w = model(
        slots,
        torch.zeros(4, 3, 5, dtype=torch.bool).index_put_(
            (torch.arange(4)[:, None], torch.arange(1, 3)[None], hidden[:, None]),
            torch.tensor(True),
        ),
        need_weights=True,
    ).attentions[1]
    b, k = 1, 2
    queries = [t * 5 + k for t in (1, 2)]
    ref = w[b].mean(0)[queries].mean(0).reshape(5, 5).sum(0)  # keys (T, E) -> per entity
    assert torch.allclose(mass[1, b], ref, atol=1e-6)


def test_causal_stage_end_to_end(tmp_path, collide_setup):
    cfg, data = collide_setup(
        tmp_path, episodes=12, shard_size=12, questions=False, frameskip=1, val_fraction=0.5
    )
    state = {"model": build_predictor(cfg).state_dict()}
    ctx = StageContext(
        tmp_path, options={"stride": 2, "graph_window": "window"}, episode_dir=str(data)
    )
    out = causal_stage(cfg, state, ctx)
    assert out["causal/n_pos"] > 0 and out["causal/n_neg"] > 0
    for key in (
        "causal/auroc",
        "causal/auroc_layer0",
        "causal/auroc_layer1",
        "causal/auroc_proximity",
    ):
        assert 0.0 <= out[key] <= 1.0, key
    rows = json.loads((tmp_path / "causal_scores.json").read_text())
    assert sum(sum(r["labels"]) for r in rows) == out["causal/n_pos"]
    assert all(np.shape(r["mass"]) == (2, len(r["cand"])) for r in rows)
    with pytest.raises(ValueError, match="graph_window"):
        causal_stage(
            cfg,
            state,
            StageContext(tmp_path, options={"graph_window": "all"}, episode_dir=str(data)),
        )
