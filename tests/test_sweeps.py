import pytest

from cjepa.config import load_config
from cjepa.sweeps import SweepSpec, apply_trial, config_key, grid_trials, load_sweep, trial_label

SMOKE = "experiments/configs/smoke.yaml"


def test_grid_runs_oc_jepa_once_per_seed():
    base = load_config(SMOKE)
    spec = SweepSpec(
        grid={"masking.unit": ["object", "token", "tube"], "masking.budget": [0, 1, 2]},
        seeds=[0, 1],
    )
    trials = grid_trials(spec, base)
    assert len(trials) == 2 * (1 + 3 * 2)
    none = [t for t in trials if t["masking.unit"] == "none"]
    assert [t["train.seed"] for t in none] == [0, 1]
    keys = {config_key(apply_trial(base.to_dict(), t)) for t in trials}
    assert len(keys) == len(trials)


def test_ratio_trials_resolve_budget():
    base = load_config(SMOKE)  # N = 4
    cfg = apply_trial(base.to_dict(), {"masking.unit": "tube", "masking.ratio": 0.5})
    assert (cfg.masking.budget, cfg.masking.ratio) == (2, 0.5)
    cfg = apply_trial(base.to_dict(), {"masking.budget": 1})
    assert (cfg.masking.budget, cfg.masking.ratio) == (1, 0.25)


def test_bad_grid_key_fails_before_running():
    spec = SweepSpec(grid={"predictor.depht": [1, 2]})
    with pytest.raises(ValueError, match="depht"):
        grid_trials(spec, load_config(SMOKE))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("mode: bayes\n", "sweep.mode"),
        ("grid: {masking.unit: object}\n", "sweep.grid.masking.unit"),
        ("mode: optuna\nspace: {optim.lr: {type: normal, mu: 0}}\n", "sweep.space.optim.lr.type"),
        ("mode: optuna\nspace: {optim.lr: {type: uniform, low: 0}}\n", "sweep.space.optim.lr"),
        ("seeds: 3\n", "sweep.seeds"),
        ("metrc: x\n", "metrc"),
    ],
)
def test_bad_sweep_yaml_names_the_key(tmp_path, text, field):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_sweep(path)


def test_shipped_sweeps_load():
    from pathlib import Path

    for path in sorted(Path("experiments/configs/sweeps").glob("*.yaml")):
        load_sweep(path)


def test_trial_label():
    assert trial_label({"masking.unit": "object", "train.seed": 0}) == "unit=object,seed=0"


def test_use_gpu_yes_from_the_command_line_is_a_string():
    # YAML 1.1 reads `yes` as True; the sweep field takes it back as "yes"
    spec = load_sweep(
        "experiments/configs/sweeps/units_budgets_3seeds.yaml", ["use_gpu=yes", "max_concurrent=8"]
    )
    assert (spec.use_gpu, spec.max_concurrent) == ("yes", 8)


def test_blocks_add_one_seed_cells_to_a_three_seed_grid():
    base = load_config(SMOKE)  # N = 4
    spec = SweepSpec(
        seeds=[0, 1, 2],
        grid={"masking.unit": ["object", "token"], "masking.budget": [0, 2]},
        blocks=[{"grid": {"masking.unit": ["object"], "masking.budget": [1, 2]}, "seeds": [0]}],
    )
    trials = grid_trials(spec, base)
    # 3 OC-JEPA + 3 object|2 + 3 token|2 + object|1 (object|2 seed 0 already runs)
    assert len(trials) == 10
    assert [t for t in trials if t["masking.budget"] == 1] == [
        {"masking.unit": "object", "masking.budget": 1, "train.seed": 0}
    ]
    ref = load_sweep("experiments/configs/sweeps/reference.yaml")
    assert len(grid_trials(ref, base)) == 15


@pytest.mark.parametrize(
    "blocks,field",
    [
        ([{"grid": {"masking.budget": []}}], "sweep.blocks[0].grid.masking.budget"),
        ([{"seeds": [0]}], "sweep.blocks[0]"),
        ([{"grid": {"masking.budget": [1]}, "seeds": []}], "sweep.blocks[0].seeds"),
    ],
)
def test_bad_blocks_name_the_field(blocks, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        SweepSpec(blocks=blocks)
