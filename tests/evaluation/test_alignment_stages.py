"""The counterfactual and causal stages on learned slots, through slot-object alignment.

A "learned" encoder that is the oracle under a known slot permutation (its slot masks: the
instance masks under the same permutation) must give the oracle's numbers with nothing dropped;
a tiny trained CNN slot encoder must give finite metrics whose alignment counts add up to what
the oracle run reads on the same episodes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

import cjepa.encoders as encoders
from cjepa.data.shards import iter_episode_shard
from cjepa.data.splits import list_shards
from cjepa.evaluation import aligned_slots
from cjepa.evaluation.causal import causal_stage
from cjepa.evaluation.counterfactual import counterfactual_stage
from cjepa.evaluation.rollouts import write_slots
from cjepa.evaluation.stage import StageContext
from cjepa.train import build_predictor

ROOT = Path(__file__).resolve().parents[2]
PERM = np.array([3, 6, 0, 5, 1, 4, 2])  # learned slot i holds oracle slot PERM[i]
CF = {"horizon": 8, "per_episode": 2}
CAUSAL = {"stride": 4, "graph_window": "window"}


class PermutedOracle:
    """The collide oracle with its slots permuted by ``PERM``: a perfectly aligned encoder
    whose slot order is not the object order."""

    n_slots, slot_dim, hash = 7, 128, "permuted-oracle"

    def __init__(self) -> None:
        self.config = {"kind": "permuted-oracle"}

    def encode_episodes(self, episodes):
        return [z[:, PERM] for z in encoders.OracleEncoder("collide").encode_episodes(episodes)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, collide_setup):
    root = tmp_path_factory.mktemp("aligned")
    cfg, data = collide_setup(root, episodes=16, shard_size=8, questions=False, val_fraction=0.4)
    return cfg, data, root


def run_both(cfg, state, data, out, encoder, **alignment):
    """(counterfactual metrics, causal metrics) with ``encoder`` as StageContext.encoder."""
    got = []
    for name, stage, opts in (("cf", counterfactual_stage, CF), ("causal", causal_stage, CAUSAL)):
        (out / name).mkdir(parents=True)
        options = {**opts, "alignment": alignment} if alignment else opts
        ctx = StageContext(out / name, options=options, encoder=encoder, episode_dir=data)
        got.append(stage(cfg, state, ctx))
    return got


@pytest.fixture(scope="module")
def oracle(tiny):
    """A random predictor's state and its (counterfactual, causal) metrics on oracle slots,
    with their files under ``root / "oracle"``."""
    cfg, data, root = tiny
    state = {"model": build_predictor(cfg).state_dict()}
    return state, run_both(cfg, state, data, root / "oracle", "oracle:collide")


def scores(metrics):
    return {k: v for k, v in metrics.items() if "/align/" not in k and not k.endswith("seconds")}


def causal_pairs(path) -> dict:
    """{(episode, start, hidden object, candidate): per-layer attention mass} of a causal run."""
    out = {}
    for r in json.loads(path.read_text()):
        for j, mass in zip(r["cand"], np.transpose(r["mass"]), strict=True):
            out[(r["episode_id"], r["start"], r["k"], j)] = mass
    return out


def use_permuted_oracle(monkeypatch, data):
    """``load_encoder("perm")`` gives :class:`PermutedOracle`, whose slot masks are the instance
    masks under ``PERM``; returns each episode's (T, K) visible objects (own a pixel)."""
    load = encoders.load_encoder

    def load_perm(spec, **kw):
        return PermutedOracle() if spec == "perm" else load(spec, **kw)

    inverse = np.argsort(PERM)  # oracle slot k (object k; 6 = background) -> learned slot
    labels, visible = {}, {}
    for path in list_shards(data, "episodes"):
        for ep in iter_episode_shard(path):
            labels[ep.frames.tobytes()] = inverse[np.where(ep.masks > 0, ep.masks - 1, 6)]
            visible[ep.episode_id] = np.stack([np.isin(np.arange(1, 7), m) for m in ep.masks])
    monkeypatch.setattr(encoders, "load_encoder", load_perm)
    monkeypatch.setattr(
        aligned_slots, "slot_labels", lambda _, frames, __: labels[frames.tobytes()]
    )
    return visible


def test_a_permuted_oracle_reads_as_the_oracle(tiny, oracle, monkeypatch):
    """Same numbers as the oracle; the only objects dropped are those that own no pixel."""
    cfg, data, root = tiny
    state, (cf, _) = oracle
    visible = use_permuted_oracle(monkeypatch, data)
    learned = write_slots(data, "perm", root / "perm_slots")
    lcfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, slot_dir=str(learned)))
    cf_p, causal_p = run_both(lcfg, state, data, root / "perm", "perm")
    assert cf["cf/n_interventions"] > 0 and cf["cf/collide/n_pairs"] > 0
    assert scores(cf_p) == pytest.approx(scores(cf), rel=1e-4, abs=1e-6, nan_ok=True)
    assert cf_p["cf/align/n_dropped_interventions"] == cf_p["cf/align/n_dropped_pairs"] == 0
    assert causal_p["causal/align/n_dropped_queries"] == 0
    for m, prefix in ((cf_p, "cf"), (causal_p, "causal")):
        assert m[f"{prefix}/align/mean_iou"] == 1.0 and m[f"{prefix}/align/n_episodes"] > 0
        assert m[f"{prefix}/align/n_dropped_episodes"] == 0
    rows = json.loads((root / "perm" / "cf" / "cf_interventions.json").read_text())
    assert all(r["slot"] == np.argsort(PERM)[r["object"]] for r in rows)  # X's slot removed
    want = causal_pairs(root / "oracle" / "causal" / "causal_scores.json")
    got = causal_pairs(root / "perm" / "causal" / "causal_scores.json")
    assert set(got) <= set(want)
    assert len(want) - len(got) == causal_p["causal/align/n_dropped_pairs"]
    for key, mass in got.items():
        np.testing.assert_allclose(mass, want[key], rtol=1e-4, atol=1e-7)
    f = cfg.data.frameskip
    span = f * (cfg.data.history + cfg.data.n_future - 1) + 1
    for ep, start, _, j in set(want) - set(got):  # dropped: the candidate owns no pixel
        assert not visible[ep][start : start + span : f, j].any()


#: experiments/configs/encoders/cnn_collide.yaml (the README's collide encoder), narrower and cut
#: to 2 steps: its masks are still coarse blobs, so alignment needs a low min_iou to match.
FEW_STEPS = ["encoder.cnn_channels=8", "encoder.decoder_channels=8",
             "train.steps=2", "train.batch_size=2", "train.warmup_steps=1", "train.log_every=1",
             "train.ckpt_every=0", "train.val_fraction=0.3", "train.eval_episodes=1",
             "train.eval_frames=2"]  # fmt: skip


@pytest.fixture(scope="module")
def learned(tiny):
    """A pre-trained (2 steps) CNN slot encoder's checkpoint, its slots, and the config of a
    predictor over them."""
    from cjepa.encoders.config import load_encoder_experiment
    from cjepa.encoders.train import fit_encoder, load_episodes

    cfg, data, root = tiny
    exp = load_encoder_experiment(ROOT / "experiments/configs/encoders/cnn_collide.yaml", FEW_STEPS)
    fit_encoder(exp, load_episodes(data), root / "enc", progress=False, log=lambda _: None)
    enc = str(root / "enc" / "encoder.pt")
    slots = write_slots(data, enc, root / "learned_slots")
    d = dataclasses.replace(cfg.data, slot_dir=str(slots), n_slots=7, slot_dim=32)
    return dataclasses.replace(cfg, data=d), enc


def test_a_tiny_learned_encoder_gives_finite_metrics_and_counts_what_it_drops(
    tiny, oracle, learned
):
    _, data, root = tiny
    lcfg, enc = learned
    state = {"model": build_predictor(lcfg).state_dict()}
    cf, causal = run_both(lcfg, state, data, root / "learned", enc, min_iou=0.01)
    for key in ("cf/slot_error_after_contact", "cf/collide/acc", "cf/align/mean_iou",
                "causal/auroc", "causal/align/mean_iou", "causal/align/complete"):  # fmt: skip
        assert math.isfinite({**cf, **causal}[key]), key
    assert 0.0 < cf["cf/align/mean_iou"] < 1.0 and cf["cf/align/n_dropped_episodes"] == 0
    # the same val episodes and removals as the oracle run: what is not read was dropped
    for kind in ("interventions", "controls"):
        got = cf[f"cf/n_{kind}"] + cf[f"cf/align/n_dropped_{kind}"]
        assert got == oracle[1][0][f"cf/n_{kind}"], kind
    assert cf["cf/align/n_dropped_interventions"] > 0 and cf["cf/n_interventions"] > 0
    got = cf["cf/collide/n_pairs"] + cf["cf/align/n_dropped_pairs"]
    assert got == oracle[1][0]["cf/collide/n_pairs"]
    pairs = causal["causal/n_pos"] + causal["causal/n_neg"]
    o = oracle[1][1]
    assert pairs + causal["causal/align/n_dropped_pairs"] == o["causal/n_pos"] + o["causal/n_neg"]
    assert causal["causal/align/n_dropped_pairs"] > 0 and pairs > 0
    records = json.loads((root / "learned" / "causal" / "causal_alignment.json").read_text())
    assert len(records) == causal["causal/align/n_episodes"] and all(r["kept"] for r in records)
    assert np.mean([r["mean_iou"] for r in records]) == pytest.approx(
        causal["causal/align/mean_iou"]
    )


def test_poor_alignment_drops_everything_and_says_so(tiny, learned):
    _, data, root = tiny
    lcfg, enc = learned
    state = {"model": build_predictor(lcfg).state_dict()}
    cf, causal = run_both(lcfg, state, data, root / "strict", enc, min_iou=1.0, min_complete=0.5)
    assert cf["cf/align/n_episodes"] > 0
    assert cf["cf/align/n_dropped_episodes"] == cf["cf/align/n_episodes"]
    assert cf["cf/n_interventions"] == 0 and math.isnan(cf["cf/slot_error_after_contact"])
    assert math.isnan(causal["causal/auroc"]) and causal["causal/n_pos"] == 0
    assert causal["causal/align/n_dropped_episodes"] == causal["causal/align/n_episodes"]
    rows = json.loads((root / "strict" / "cf" / "cf_alignment.json").read_text())
    assert (
        rows and not any(r["kept"] for r in rows) and {r["split"] for r in rows} == {"val", "train"}
    )


def test_encoder_quality_scores_a_learned_encoder_on_held_out_episodes(tiny, learned):
    from cjepa.encoders.quality import (
        QUALITY_KEYS,
        encoder_quality,
        held_out_episodes,
        quality_line,
    )

    _, data, _ = tiny
    _, enc = learned
    opts = {"val_fraction": 0.4, "episodes": 2, "frames": 4}
    q = encoder_quality(enc, data, min_iou=0.01, **opts)  # a 2-step encoder's masks are blobs
    assert set(q) == {*QUALITY_KEYS, "encoder/quality_episodes"}
    assert q["encoder/quality_episodes"] == len(held_out_episodes(data, 0.4, 2)) == 2
    for key in QUALITY_KEYS:
        assert math.isfinite(q[key]), key
    assert -1.0 <= q["encoder/fg_ari"] <= 1.0 and 0.0 <= q["encoder/align_complete"] <= 1.0
    assert 0.0 <= q["encoder/align_missing"] <= 1.0
    strict = encoder_quality(enc, data, min_iou=1.0, **opts)  # (almost) nothing matches
    assert strict["encoder/fg_ari"] == q["encoder/fg_ari"]  # FG-ARI does not use the matching
    assert strict["encoder/align_missing"] > q["encoder/align_missing"]
    assert strict["encoder/align_complete"] <= q["encoder/align_complete"]
    line = quality_line(enc, q, min_iou=0.01)
    assert line.startswith(f"Encoder: {enc}; on 2 held-out episodes FG-ARI ") and "\n" not in line
    # nothing to score on: no val episode at val_fraction 0
    assert encoder_quality(enc, data, val_fraction=0.0) == {}
