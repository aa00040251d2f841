"""The evaluation-stage registry and runner (cjepa.evaluation.stage)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from cjepa.config import load_config
from cjepa.evaluation import stage as st
from cjepa.train import build_predictor, save_checkpoint


def _cfg():
    return load_config("experiments/configs/smoke.yaml")


def test_run_stages_merges_metrics_and_gives_each_stage_its_directory(tmp_path, monkeypatch):
    seen = {}

    @dataclass
    class ProbeOptions:
        scale: float = 1.0

    def probe(cfg, state, ctx):
        opts = st.parse_options("probe", ProbeOptions, ctx.options)
        seen["dir"], seen["seed"] = ctx.out_dir, ctx.seed
        (ctx.out_dir / "table.csv").write_text("a,b\n")
        return {"probe/value": opts.scale * state["step"]}

    monkeypatch.setitem(st.STAGES, "probe", st.StageSpec(probe, ProbeOptions))
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


BUILT_IN = sorted(st.STAGES)


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_stage_has_defaulted_options_and_an_unknown_key_is_named(name):
    spec = st.get_spec(name)
    assert isinstance(st.parse_options(name, spec.options, {}), spec.options)
    known = sorted(f.name for f in dataclasses.fields(spec.options))
    with pytest.raises(ValueError) as err:
        st.check_stages({name: {"typo": 1}})
    assert str(err.value) == f"stages.{name}: unknown option(s) ['typo']; known: {known}"


@pytest.mark.parametrize(
    ("name", "field", "value", "says"),
    [
        ("final_validation", "max_windows", -1, "must be >= 0, got -1"),
        ("final_validation", "batch_size", 2.5, "must be an integer, got 2.5"),
        ("vqa", "steps", "many", "must be an integer, got 'many'"),
        ("vqa", "pool", "yes", "must be true or false, got 'yes'"),
        ("vqa", "reader_input", "pixels", "must be one of ['rollout', 'encoder'], got 'pixels'"),
        ("counterfactual", "horizon", 0, "must be >= 1, got 0"),
        ("counterfactual", "ridge", "big", "must be a number, got 'big'"),
        ("causal", "graph_window", "all", "must be one of ['history', 'window'], got 'all'"),
        ("planning", "samples", "x", "must be an integer, got 'x'"),
        ("planning", "seeds", 3, "must be a list, got 3"),
        ("planning", "oracle", {"sample": 3}, ": unknown CEM field(s) ['sample']"),
    ],
)
def test_a_bad_stage_option_names_the_stage_field_and_value(name, field, value, says):
    with pytest.raises(ValueError) as err:
        st.check_stages({name: {field: value}})
    sep = "" if says.startswith(":") else " "
    assert str(err.value).startswith(f"stages.{name}.{field}{sep}{says}"), str(err.value)


def test_register_stage_takes_a_spec_and_its_metrics_join_describe(monkeypatch):
    from cjepa import metrics

    @dataclass
    class ToyOptions:
        k: int = 1

    family = metrics.MetricFamily("toy", patterns=(("toy/score", "max"),), headline=("toy/score",))
    monkeypatch.setitem(st.STAGES, "toy", st.StageSpec(lambda c, s, x: {}, ToyOptions, (family,)))
    got = metrics.describe(["toy/score", "toy/other"], {})
    assert got["toy/score"]["direction"] == "max" and got["toy/score"]["stage"] == "toy"
    assert got["toy/score"]["headline"] and got["toy/score"]["family"] == "toy"
    assert got["toy/other"]["direction"] is None  # declared nowhere: not guessed here
    assert metrics.direction("control/copy_last/toy/score") == "max"
    with pytest.raises(TypeError, match="takes a StageSpec"):
        st.register_stage("bare", lambda c, s, x: {})
    with pytest.raises(TypeError, match="must be a dataclass"):
        st.StageSpec(lambda c, s, x: {}, dict)
    with pytest.raises(ValueError, match="direction must be one of"):
        metrics.MetricFamily("bad", direction="up")


def test_a_sweep_refuses_a_bad_stage_option_before_anything_runs(tmp_path):
    from cjepa.distributed.sweep import run_sweep
    from cjepa.sweeps import load_sweep

    spec = load_sweep("experiments/configs/sweeps/tiny.yaml")
    with pytest.raises(ValueError, match=r"stages.causal.stride must be >= 1, got 0"):
        run_sweep(_cfg(), spec, sweep_id="x", storage_path=tmp_path, tracking_uri=None,
                  stages={"causal": {"stride": 0}})  # fmt: skip
    assert not any(tmp_path.iterdir())  # no sweep directory, no trial
