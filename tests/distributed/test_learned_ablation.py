"""The ablation on a learned slot encoder in one command (issue N): ``ablate_masking.py --preset
tiny encoder=PATH`` with a pretrain_encoder.py checkpoint runs extraction, the sweep and the
object-naming stages through slot-object alignment, and logs the encoder's FG-ARI and alignment
on the sweep's parent run and above the table."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cjepa.distributed import tracking
from cjepa.encoders.quality import QUALITY_KEYS

ROOT = Path(__file__).resolve().parents[2]
#: cnn_collide.yaml cut to a few steps (tests/evaluation/test_alignment_stages.py): coarse masks,
#: so the stages align at a low min_iou.
FEW_STEPS = ["encoder.cnn_channels=8", "encoder.decoder_channels=8", "train.steps=4",
             "train.batch_size=2", "train.warmup_steps=1", "train.log_every=2",
             "train.ckpt_every=0", "train.eval_episodes=1", "train.eval_frames=2"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_ablation_on_a_learned_encoder(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("RAY_ADDRESS", None)

    def script(name, *args):
        cmd = [sys.executable, str(ROOT / "experiments" / name), *args]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    data = tmp_path / "enc-data"
    script("make_data.py", "--world", "collide", "--episodes", "8", "--seed", "1", "--frames",
           "16", "--size", "32", "--no-questions", "--out", str(data))  # fmt: skip
    enc = tmp_path / "enc"
    script("pretrain_encoder.py", "--data", str(data), "--out", str(enc), "--config",
           str(ROOT / "experiments/configs/encoders/cnn_collide.yaml"), *FEW_STEPS)  # fmt: skip
    low = "{min_iou: 0.01}"
    out = script(
        "ablate_masking.py", "--preset", "tiny", "--root", str(tmp_path / "runs"),
        "--sweep-id", "learned", f"encoder={enc / 'encoder.pt'}",
        f"stages.collide.causal={{alignment: {low}}}",
        f"stages.collide.counterfactual={{horizon: 4, per_episode: 1, alignment: {low}}}",
    )  # fmt: skip
    assert f"Encoder: {enc / 'encoder.pt'}; on " in out, out[-3000:]
    mlf = tracking.client(env["MLFLOW_TRACKING_URI"])
    exp = mlf.get_experiment_by_name("cjepa-ablation")
    (parent,) = mlf.search_runs([exp.experiment_id], "tags.`cjepa.role` = 'sweep'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["cjepa.encoder"] == str(enc / "encoder.pt")
    for key in QUALITY_KEYS[:3]:  # FG-ARI of three mask readings
        assert math.isfinite(parent.data.metrics[key]), key
    table = mlf.download_artifacts(parent.info.run_id, "ablation_table.md", str(tmp_path))
    assert "Encoder: " in Path(table).read_text()
    trials = mlf.search_runs([exp.experiment_id], "tags.`cjepa.role` = 'trial'")
    assert trials and all(t.info.status == "FINISHED" for t in trials)
    for t in trials:
        m = t.data.metrics
        assert m["cf/align/n_episodes"] > 0 and m["causal/align/n_episodes"] > 0
        assert math.isfinite(m["causal/align/mean_iou"]) and "cf/align/n_dropped_pairs" in m
