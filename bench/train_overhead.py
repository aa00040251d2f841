"""Ray Train vs the plain loop: steps/s of the same run (1 worker, same steps), in one process.

    python bench/train_overhead.py                # smoke config, 300 steps
    python bench/train_overhead.py --steps 1000 predictor.depth=4

Prints the plain loop's steps/s (cjepa.train.fit), Ray Train's steps/s measured inside the
worker (training only) and end to end (``TorchTrainer.fit()`` wall time, with worker start-up),
and their ratios. Ray runs a 1-CPU worker with one torch thread; for a small model that is
faster than torch's default of one thread per core, so compare with ``OMP_NUM_THREADS=1`` too.
The two runs train identical models (same seed), which is checked.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from cjepa.config import load_config
from cjepa.data.sources import load_windows
from cjepa.distributed.runtime import init_ray
from cjepa.distributed.train import load_trained, make_trainer
from cjepa.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/smoke.yaml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(
        args.config,
        [
            f"train.steps={args.steps}",
            f"train.log_every={args.steps}",
            f"train.eval_every={args.steps}",
            "train.ckpt_every=0",
            *args.overrides,
        ],
    )
    train, val = load_windows(cfg.data)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        plain = fit(cfg, train, val, out_dir=d, resume=False, progress=False, log=lambda *_: None)
        plain_wall = time.perf_counter() - t0
        init_ray(num_cpus=os.cpu_count(), log_to_driver=False)
        t0 = time.perf_counter()
        state = load_trained(make_trainer(cfg, name="bench", storage_path=d).fit())
        ray_wall = time.perf_counter() - t0
    ray_sps = state["history"][-1]["steps_per_s"]
    same = abs(state["history"][-1]["train/loss"] - plain.history[-1]["train/loss"]) < 1e-4
    import torch

    print(
        f"config {args.config}, {args.steps} steps, batch {cfg.train.batch_size}, 1 worker; "
        f"plain loop on {torch.get_num_threads()} torch thread(s) (Ray gives a 1-CPU worker 1; "
        "set OMP_NUM_THREADS=1 to compare like with like)"
    )
    print(f"plain loop          {plain.steps_per_s:8.1f} steps/s  (wall {plain_wall:.1f} s)")
    print(f"Ray Train, in-loop  {ray_sps:8.1f} steps/s  ratio {ray_sps / plain.steps_per_s:.2f}")
    print(
        f"Ray Train, fit()    {args.steps / ray_wall:8.1f} steps/s  (wall {ray_wall:.1f} s) "
        f"ratio {args.steps / ray_wall / plain.steps_per_s:.2f}"
    )
    print(f"same final loss: {same}")


if __name__ == "__main__":
    main()
