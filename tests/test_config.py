from pathlib import Path

import pytest

from cjepa.config import ExperimentConfig, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "experiments" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_preset_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.masking.budget is not None and cfg.masking.ratio is not None


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["predictor.depth=3", "optim.lr=1e-3", "masking.unit=tube"])
    assert cfg.predictor.depth == 3 and cfg.optim.lr == 1e-3 and cfg.masking.unit == "tube"


def test_ratio_resolves_to_budget_and_both_recorded():
    cfg = load_config(None, ["data.synthetic.n_objects=7", "masking.ratio=0.56"])
    assert cfg.masking.budget == 4 and cfg.masking.ratio == pytest.approx(4 / 7)
    assert cfg.to_dict()["masking"]["budget"] == 4


def test_budget_and_ratio_must_agree():
    with pytest.raises(ValueError, match="disagree"):
        load_config(None, ["data.synthetic.n_objects=7", "masking.ratio=0.56", "masking.budget=2"])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("predictor.depth=0", "predictor.depth"),
        ("predictor.depth=two", "predictor.depth"),
        ("predictor.aux_encoding=tokens", "predictor.aux_encoding"),
        ("masking.unit=patch", "masking.unit"),
        ("masking.budget=9", "masking.budget"),
        ("optim.schedule=linear", "optim.schedule"),
        ("train.device=tpu", "train.device"),
        ("data.history=1", "data.history"),
        ("predictor.norm_before_attention=1", "predictor.norm_before_attention"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="depht"):
        load_config(None, ["predictor.depht=3"])


def test_base_preset_composition(tmp_path):
    (tmp_path / "base.yaml").write_text("predictor: {depth: 2, width: 32}\ntrain: {steps: 5}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\npredictor: {depth: 3}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.predictor.depth, cfg.predictor.width, cfg.train.steps) == (3, 32, 5)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
