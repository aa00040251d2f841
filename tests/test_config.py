import re
from pathlib import Path

import pytest

from cjepa.config import OFFICIAL, ExperimentConfig, from_dict, load_config

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
        ("predictor.short_history=left_align", "predictor.short_history"),
        ("predictor.aux_order=slots_first", "predictor.aux_order"),
        ("predictor.future_action=visible", "predictor.future_action"),
        ("predictor.proprio_target=latent", "predictor.proprio_target"),
        ("predictor.concat_join=stack", "predictor.concat_join"),
        ("predictor.time_embed_init=zeros", "predictor.time_embed_init"),
        ("predictor.attention_output_dropout=2", "predictor.attention_output_dropout"),
        ("predictor.head_dim=0", "predictor.head_dim"),
        ("loss.history_frames=anchor", "loss.history_frames"),
        ("masking.sampling=fixed_numpy", "masking.sampling"),
        ("variant=offical", "variant"),
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


def _get(cfg, key):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def test_official_variant_sets_every_listed_field():
    cfg = load_config(None, ["variant=official"])
    assert cfg.variant == "official"
    for key, value in OFFICIAL.items():
        assert _get(cfg, key) == value, key
    paper = load_config(None, [])
    assert all(
        _get(paper, key) != value
        for key, value in OFFICIAL.items()
        if key
        not in (
            "predictor.future_query",
            "predictor.future_residual",  # the paper's values already
        )
    )
    # The recorded config loads back as it is.
    assert from_dict(ExperimentConfig, cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "override",
    [
        "predictor.norm_before_attention=true",
        "predictor.head_dim=8",
        "predictor.future_query=last_visible",
        "loss.history_frames=masked",
        "masking.sampling=uniform",
    ],
)
def test_official_variant_refuses_a_conflicting_setting(override):
    key = override.split("=")[0]
    with pytest.raises(ValueError, match=r"variant='official' conflicts with " + re.escape(key)):
        load_config(None, ["variant=official", override])


def test_official_variant_on_a_preset_names_every_conflict_in_one_line():
    smoke = Path(__file__).parents[1] / "experiments" / "configs" / "smoke.yaml"
    with pytest.raises(ValueError) as err:
        load_config(smoke, ["variant=official"])
    message = str(err.value)
    assert "\n" not in message
    assert "predictor.head_dim=8" in message and "masking.sampling='uniform'" in message
    assert "predictor.head_dim=null masking.sampling=fixed_official" in message
    fixed = ["variant=official", "predictor.head_dim=null", "masking.sampling=fixed_official"]
    assert load_config(smoke, fixed).variant == "official"


def test_official_variant_accepts_its_own_values_and_other_fields():
    cfg = load_config(
        None, ["variant=official", "predictor.norm_before_attention=false", "predictor.depth=2"]
    )
    assert cfg.predictor.depth == 2 and cfg.predictor.norm_before_attention is False


def test_official_variant_built_directly_must_be_complete():
    with pytest.raises(ValueError, match=r"variant='official'"):
        ExperimentConfig(variant="official")


def test_old_history_anchor_flag_conflicts_with_official():
    with pytest.raises(ValueError, match=r"loss\.history_loss_includes_anchor"):
        load_config(None, ["variant=official", "loss.history_loss_includes_anchor=true"])


def test_embedding_proprio_target_needs_width_equal_to_slot_dim():
    args = ["variant=official", "data.synthetic.with_agent=true", "data.slot_dim=64"]
    with pytest.raises(ValueError, match=r"predictor\.width"):
        load_config(None, [*args, "predictor.width=128"])
    assert load_config(None, [*args, "predictor.width=64"]).predictor.width == 64


def test_fixed_official_needs_object_masks():
    with pytest.raises(ValueError, match=r"masking\.unit"):
        load_config(None, ["masking.sampling=fixed_official", "masking.unit=tube"])
