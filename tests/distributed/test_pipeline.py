"""AblationConfig's own checks (no Ray started): every check in ``__post_init__`` runs, stage
defaults come from the world's spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cjepa.distributed.pipeline import AblationConfig, load_ablation

PRESETS = Path(__file__).resolve().parents[2] / "experiments/configs/ablate"


@pytest.mark.parametrize("size", [0, -3])
def test_extract_batch_size_check_fires(size):
    with pytest.raises(ValueError, match=rf"extract_batch_size must be >= 1, got {size}"):
        AblationConfig(extract_batch_size=size)
    with pytest.raises(ValueError, match=r"smoke\.yaml: extract_batch_size must be >= 1"):
        load_ablation(PRESETS / "smoke.yaml", [f"extract_batch_size={size}"])


def test_both_checks_run_on_a_config_with_stages():
    # a valid world with stages set must not skip the batch-size check, and vice versa
    with pytest.raises(ValueError, match="extract_batch_size must be >= 1"):
        AblationConfig(extract_batch_size=0, stages={"collide": {"vqa": {}}})
    with pytest.raises(ValueError, match=r"world must be one of \['clevrer', 'collide', 'pusht'\]"):
        AblationConfig(extract_batch_size=4, stages={"mars": {}})
    assert AblationConfig(extract_batch_size=4).extract_batch_size == 4


def test_stages_for_uses_the_preset_then_the_world_default():
    cfg = AblationConfig(stages={"collide": {"vqa": {"n": 1}, "causal": None}})
    assert cfg.stages_for("collide") == {"vqa": {"n": 1}}  # null removes an inherited stage
    assert cfg.stages_for("pusht") == {"final_validation": {}}
    known = r"\['clevrer', 'collide', 'pusht'\]"
    with pytest.raises(ValueError, match=rf"unknown world 'mars'; known: {known}"):
        cfg.stages_for("mars")
