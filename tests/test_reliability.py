"""Bad input and faults refused where they enter, with one line naming the culprit, and nothing
on disk changed (issue I). The sweep-level faults are in tests/distributed/."""

import time
from pathlib import Path

import numpy as np
import pytest

from cjepa import cli
from cjepa.config import load_config
from cjepa.data.shards import ShardError, read_slot_shard, write_slot_shard
from cjepa.data.sources import load_windows
from cjepa.tracking import JsonlTracker
from cjepa.train import CHECKPOINT_NAME, NonFiniteLoss, fit, load_checkpoint


def smoke(*extra):
    return load_config(
        "experiments/configs/smoke.yaml",
        ["train.steps=20", "train.log_every=10", "train.eval_every=10", *extra],
    )


def slots(rows=6, n=3, d=4):
    return np.random.default_rng(0).normal(size=(rows, n, d)).astype(np.float32)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_slots_refused_at_write(tmp_path, value):
    s = slots()
    s[4, 1, 2] = value
    path = tmp_path / "s.parquet"
    with pytest.raises(ValueError, match=r"s\.parquet.*1 row\(s\).*episode 'b' frame 1"):
        write_slot_shard(
            path, ["a"] * 3 + ["b"] * 3, [0, 1, 2, 0, 1, 2], s, encoder_hash="h", encoder_config={}
        )
    assert not path.exists()


def test_non_finite_slots_refused_at_read(tmp_path, monkeypatch):
    import cjepa.data.shards as shards

    s = slots()
    s[2, 0, 0] = np.nan
    monkeypatch.setattr(shards, "_check_finite", lambda *a: None)  # a writer without the check
    path = tmp_path / "s.parquet"
    write_slot_shard(path, ["a"] * 6, range(6), s, encoder_hash="h", encoder_config={})
    monkeypatch.undo()
    with pytest.raises(ShardError, match=r"s\.parquet.*episode 'a' frame 2"):
        read_slot_shard(path)


def test_non_finite_loss_stops_before_any_checkpoint(tmp_path):
    cfg = smoke("train.ckpt_every=5")
    train, val = load_windows(cfg.data)
    train.slots[:] = float("nan")
    with pytest.raises(NonFiniteLoss, match="non-finite training loss"):
        fit(cfg, train, val, out_dir=tmp_path, progress=False, log=lambda *_: None)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_resume_with_another_config_is_refused_and_changes_nothing(tmp_path):
    cfg = smoke()
    train, val = load_windows(cfg.data)
    tracker = JsonlTracker(tmp_path / "metrics.jsonl")
    fit(
        cfg,
        train,
        val,
        out_dir=tmp_path,
        stop_after=10,
        tracker=tracker,
        progress=False,
        log=lambda *_: None,
    )
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    other = smoke("masking.unit=token", "optim.lr=0.01")
    with pytest.raises(ValueError, match=r"another config \(masking.unit: 'object' -> 'token'"):
        fit(
            other,
            train,
            val,
            out_dir=tmp_path,
            tracker=JsonlTracker(tmp_path / "metrics.jsonl"),
            progress=False,
            log=lambda *_: None,
        )
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # checkpoint, params.json and metrics untouched
    # fields that do not change the trajectory may differ on resume
    same = smoke("train.log_every=5", "train.eval_every=5")
    result = fit(same, train, val, out_dir=tmp_path, progress=False, log=lambda *_: None)
    assert result.resumed_from == 10


def test_corrupt_checkpoint_message_never_suggests_unsafe_loading(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "weights_only=False" not in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_errors_are_one_line_with_exit_codes(capsys):
    def bad():
        raise ValueError("masking.budget must be <= 7, got 9")

    with pytest.raises(SystemExit) as exit_:
        cli.run(bad, argv=["prog"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: masking.budget must be <= 7, got 9\n"

    class Stopped(RuntimeError):
        exit_code = 130

    def stopped():
        raise Stopped("interrupted: 1 of 3 trials finished; rerun with --resume")

    with pytest.raises(SystemExit) as exit_:
        cli.run(stopped, argv=["prog"])
    assert exit_.value.code == 130 and "rerun with --resume" in capsys.readouterr().err

    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        cli.run(bug, argv=["prog"])
    with pytest.raises(ValueError):  # --debug shows the traceback of expected errors too
        cli.run(bad, argv=["prog", "--debug"])


def test_ablation_checks_fail_before_ray_and_data(tmp_path):
    from cjepa.distributed.pipeline import check_ablation, load_ablation

    preset = "experiments/configs/ablate/tiny.yaml"
    cfg, d = load_ablation(preset, ["experiment.masking.budget=9", f"root={tmp_path}"])
    with pytest.raises(ValueError, match=r"masking\.budget must be <= the number of slots 7"):
        check_ablation(cfg, d, world="collide")
    cfg, d = load_ablation(preset, [f"root={tmp_path}"])
    with pytest.raises(ValueError, match=r"masking\.budget"):
        check_ablation(cfg, d, world="collide", sweep_overrides=["grid={masking.budget: [0, 9]}"])
    cfg, d = load_ablation(preset, ["tracking_uri=http://127.0.0.1:9", f"root={tmp_path}"])
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"http://127\.0\.0\.1:9 is not reachable"):
        check_ablation(cfg, d, world="collide")
    assert time.perf_counter() - t0 < 10
    cfg, d = load_ablation(preset, [f"tracking_uri=sqlite:///{tmp_path}/no/such/dir/m.db"])
    with pytest.raises(PermissionError, match="does not exist or is not writable"):
        check_ablation(cfg, d, world="collide")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 10\nmasking: [\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: YAML syntax error at line \d+, column \d+"):
        load_config(bad)


def test_checkpoint_of_another_width_names_the_config(tmp_path):
    import torch

    from cjepa.evaluation.stage import model_from_state
    from cjepa.train import build_predictor

    small = smoke()
    wide = smoke("predictor.width=64")
    state = {"model": build_predictor(small).state_dict()}
    named = r"predictor width 64, depth 2, slot_dim 32\): (Missing key|size mismatch)"
    with pytest.raises(ValueError, match=named):
        model_from_state(wide, state)
    assert isinstance(model_from_state(small, state), torch.nn.Module)


def test_preset_overrides_and_sweep_keys(tmp_path):
    from cjepa.distributed.pipeline import check_ablation, load_ablation
    from cjepa.sweeps import load_sweep

    # an experiment override the sweep replaces per trial is refused, not ignored
    cfg, d = load_ablation("experiments/configs/ablate/tiny.yaml")
    with pytest.raises(ValueError, match=r"the sweep sets masking\.budget per trial"):
        check_ablation(cfg, d, world="collide", overrides=["experiment.masking.budget=2"])
    # grid keys are dotted field names, kept whole
    spec = load_sweep(
        "experiments/configs/sweeps/tiny.yaml", ["grid.masking.budget=[0, 2]", "seeds=[1]"]
    )
    assert spec.grid["masking.budget"] == [0, 2] and spec.seeds == [1]
    # a preset elsewhere that inherits `sweep:` resolves it where the base file lives
    mine = tmp_path / "mine.yaml"
    tiny = (Path("experiments/configs/ablate/tiny.yaml")).resolve()
    mine.write_text(f"base: {tiny}\nname: mine\n")
    cfg, d = load_ablation(mine)
    assert Path(cfg.sweep) == (tiny.parent / "../sweeps/tiny.yaml").resolve()
    check_ablation(cfg, d, world="collide")


def test_plan_pusht_refuses_an_unwritable_json_before_planning(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "experiments/plan_pusht.py", "--data", str(tmp_path / "no-data"),
         "--model", "random", "--json", "/proc/cjepa-no-dir/out.json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # the output folder is checked before the data is even read
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "/proc/cjepa-no-dir" in done.stderr and "no-data" not in done.stderr
