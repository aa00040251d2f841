"""The evaluation-stage registry and runner (cjepa.evaluation.stage)."""

from __future__ import annotations

import pytest
import torch

from cjepa.config import load_config
from cjepa.evaluation import stage as st
from cjepa.train import build_predictor, save_checkpoint


def _cfg():
    return load_config("experiments/configs/smoke.yaml")


def test_run_stages_merges_metrics_and_gives_each_stage_its_directory(tmp_path, monkeypatch):
    seen = {}

    def probe(cfg, state, ctx):
        opts = st.check_options("probe", ctx.options, {"scale": 1.0})
        seen["dir"], seen["seed"] = ctx.out_dir, ctx.seed
        (ctx.out_dir / "table.csv").write_text("a,b\n")
        return {"probe/value": opts["scale"] * state["step"]}

    monkeypatch.setitem(st.STAGES, "probe", probe)
    state = {"model": {}, "history": [{"val/future_visible": 0.5, "val/history": 0.25}], "step": 4}
    ctx = st.StageContext(out_dir=tmp_path, seed=7)
    out = st.run_stages(_cfg(), state, {"final_validation": {}, "probe": {"scale": 2.0}}, ctx)
    assert out["final/future_visible"] == 0.5 and out["final/history"] == 0.25
    assert out["probe/value"] == 8.0
    assert out["eval/probe_s"] >= 0.0
    assert seen["dir"] == tmp_path / "probe" and seen["seed"] == 7
    assert (tmp_path / "probe" / "table.csv").is_file()


def test_unknown_stage_and_unknown_option_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown evaluation stage 'nope'"):
        st.get_stage("nope")
    ctx = st.StageContext(out_dir=tmp_path, options={"typo": 1})
    with pytest.raises(
        ValueError, match=r"stages.final_validation: unknown option\(s\) \['typo'\]"
    ):
        st.final_validation(_cfg(), {"history": []}, ctx)


def test_load_state_round_trips_a_trial_checkpoint(tmp_path):
    cfg = _cfg()
    model = build_predictor(cfg)
    save_checkpoint(
        tmp_path / "p.pt", {"model": model.state_dict(), "config": cfg.to_dict(), "step": 3}
    )
    cfg2, state = st.load_state(tmp_path / "p.pt")
    assert cfg2 == cfg and state["step"] == 3
    rebuilt = st.model_from_state(cfg2, state)
    assert not rebuilt.training
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v)
    torch.save({"model": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no 'config' entry"):
        st.load_state(tmp_path / "bad.pt")
