"""Intervention harness: exact counterfactuals, slot matching, probe, and the stage end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cjepa.config import ExperimentConfig
from cjepa.evaluation.counterfactual import (
    choose_removals,
    counterfactual_stage,
    fit_probe,
    match,
)
from cjepa.evaluation.rollouts import load_split
from cjepa.evaluation.stage import StageContext
from cjepa.train import build_predictor

OPTIONS = {"horizon": 8, "per_episode": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, collide_setup):
    return collide_setup(tmp_path_factory.mktemp("cf"), episodes=24, shard_size=12)


def per_token_state(cfg: ExperimentConfig) -> dict:
    """A predictor whose attention carries no values (qkv = 0): every token's output depends on
    that token alone, so dropping a slot cannot change the other slots' predictions."""
    model = build_predictor(cfg)
    for block in model.blocks:
        torch.nn.init.zeros_(block.attn.qkv.weight)
        torch.nn.init.zeros_(block.attn.qkv.bias)
    return {"model": model.state_dict(), "history": [], "step": 0}


def run(cfg, state, data, out_dir, **options):
    ctx = StageContext(
        out_dir, options={**OPTIONS, **options}, encoder="oracle:collide", episode_dir=data
    )
    out = counterfactual_stage(cfg, state, ctx)
    return out, json.loads((out_dir / "cf_interventions.json").read_text())


def test_harness_is_exact_for_a_non_interacting_predictor(tiny, tmp_path):
    cfg, data = tiny
    out, rows = run(cfg, per_token_state(cfg), data, tmp_path)
    controls = [r for r in rows if r["kind"] == "control"]
    colliders = [r for r in rows if r["kind"] == "collider"]
    assert controls and colliders, "tiny data must hold both kinds of removal"
    for r in controls:  # truth unchanged and predictions unchanged: equal errors, no effect
        assert r["effect"] == 0.0
        assert r["cf"] == pytest.approx(r["factual"], rel=1e-5)
    for r in colliders:  # the model ignores the removal, so its error is the "ignore" error
        assert r["cf"] == pytest.approx(r["ignore"], rel=1e-5)
    assert any(r["effect"] > 0 for r in colliders)
    assert out["cf/control/gap"] == pytest.approx(0.0, abs=1e-6)
    for key in (
        "cf/slot_error_after_contact",
        "cf/slot_error_factual",
        "cf/collide/acc",
        "cf/collide/acc_no_change",
        "cf/contact_distance",
    ):
        assert np.isfinite(out[key]), key


def test_interacting_predictor_responds_to_a_removed_object(tiny, tmp_path):
    cfg, data = tiny
    state = {"model": build_predictor(cfg).state_dict()}  # random weights: attention mixes slots
    out, rows = run(cfg, state, data, tmp_path)
    assert out["cf/control/gap"] > 1e-6
    assert out["cf/n_interventions"] == sum(r["kind"] == "collider" for r in rows)
    again, _ = run(cfg, state, data, tmp_path)
    assert {k: v for k, v in again.items() if k != "cf/seconds"} == pytest.approx(
        {k: v for k, v in out.items() if k != "cf/seconds"}, nan_ok=True
    )


def test_removals_respect_first_contact_and_window(tiny):
    cfg, data = tiny
    for ep in load_split(cfg, data, "val"):
        for x, end, kind in choose_removals(ep, 3, 2, 4, 2, np.random.default_rng(0)):
            contacts = [c for c, i, j in ep.info["collisions"] if x in (i, j)]
            assert end - 2 * 2 >= 0 and end + 2 * 4 < ep.n_frames
            if kind == "collider":
                assert end == min(contacts) - 1
            else:
                assert not contacts


def test_match_prefers_identity_on_ties_and_finds_permutations():
    g = np.random.default_rng(0)
    target = g.normal(size=(5, 4))
    target[3] = target[4] = target[2]  # three identical (empty) slots
    assert match(target[[0, 2, 3, 4]], target, [0, 2, 3, 4]).tolist() == [0, 2, 3, 4]
    perm = np.array([4, 1, 0])
    assert match(target[perm] + 1e-3, target, [0, 1, 2])[1] == 1
    assert match(target[[1, 0]], target, [0, 1]).tolist() == [1, 0]


def test_probe_decodes_positions(tiny):
    cfg, data = tiny
    probe = fit_probe(load_split(cfg, data, "train"), ridge=1e-2)
    errs = []
    for ep in load_split(cfg, data, "val"):
        present = ep.states[:, :, 5] > 0
        xy = probe(ep.slots[:, : ep.states.shape[1]])
        errs.append(np.hypot(*(xy - ep.states[:, :, :2])[present].T))
    # objects are about 0.16 arena widths across; the probe must place them well within that
    assert np.concatenate(errs).mean() < 0.05
