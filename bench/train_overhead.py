"""Ray Train vs the plain loop: steps/s of the same run (1 worker, same steps), in one process.

    python bench/train_overhead.py                # smoke config, 300 steps
    python bench/train_overhead.py --steps 1000 predictor.depth=4

Prints the plain loop's steps/s (cjepa.train.fit), Ray Train's steps/s measured inside the
worker (training only) and end to end (``TorchTrainer.fit()`` wall time, with worker start-up),
and their ratios. Ray runs a 1-CPU worker with one torch thread; for a small model that is
faster than torch's default of one thread per core, so compare with ``OMP_NUM_THREADS=1`` too.
The two runs train identical models (same seed), which is checked. After one untimed plain
run (warm-up: imports, allocator, data), the plain loop and Ray Train alternate ``--repeats``
times, each Ray run a fresh ``fit()`` under its own name (the same name would resume); the
figures are medians over the repeats. ``--quick``: 20 steps, 1 repeat (seconds, for tests).
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--repeats", type=int, default=3, help="runs per arm (median)")
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 repeat (for tests)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 20, 1
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
    quiet = {"out_dir": None, "resume": False, "progress": False, "log": lambda *_: None}
    plains, rays = [], []
    with tempfile.TemporaryDirectory() as d:
        fit(cfg, train, val, **{**quiet, "out_dir": f"{d}/warm"})  # warm-up, untimed
        init_ray(num_cpus=os.cpu_count(), log_to_driver=False)
        for i in range(args.repeats):
            t0 = time.perf_counter()
            plain = fit(cfg, train, val, **{**quiet, "out_dir": f"{d}/plain{i}"})
            plains.append((plain.steps_per_s, time.perf_counter() - t0, plain))
            t0 = time.perf_counter()
            state = load_trained(make_trainer(cfg, name=f"bench{i}", storage_path=d).fit())
            rays.append((state["history"][-1]["steps_per_s"], time.perf_counter() - t0, state))
    plain_sps = statistics.median(r[0] for r in plains)
    plain_wall = statistics.median(r[1] for r in plains)
    ray_sps = statistics.median(r[0] for r in rays)
    ray_wall = statistics.median(r[1] for r in rays)
    plain, state = plains[0][2], rays[0][2]
    same = abs(state["history"][-1]["train/loss"] - plain.history[-1]["train/loss"]) < 1e-4
    import torch

    print(
        f"config {args.config}, {args.steps} steps, batch {cfg.train.batch_size}, 1 worker; "
        f"plain loop on {torch.get_num_threads()} torch thread(s) (Ray gives a 1-CPU worker 1; "
        f"set OMP_NUM_THREADS=1 to compare like with like); median of {args.repeats} repeats"
    )
    print(f"plain loop          {plain_sps:8.1f} steps/s  (wall {plain_wall:.1f} s)")
    print(f"Ray Train, in-loop  {ray_sps:8.1f} steps/s  ratio {ray_sps / plain_sps:.2f}")
    print(
        f"Ray Train, fit()    {args.steps / ray_wall:8.1f} steps/s  (wall {ray_wall:.1f} s) "
        f"ratio {args.steps / ray_wall / plain_sps:.2f}"
    )
    print(f"same final loss: {same}")


if __name__ == "__main__":
    main()
