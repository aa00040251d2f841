"""`make run`'s wall time by stage, read from what a real run prints and records.

    python bench/smoke_wall.py                   # `make run`'s preset (smoke, collide), ~14 min
    python bench/smoke_wall.py --quick           # the tiny preset (tests)
    python bench/smoke_wall.py --preset smoke --root /tmp/sw --log /tmp/sw.log

Runs ``experiments/ablate_masking.py`` exactly as ``make run`` does, but on a fresh ``--root``
(default: a temporary folder, so data and slots are made, not reused) and a fresh SQLite MLflow
store inside it. Every output line is time-stamped as it arrives; the stage boundaries are the
pipeline's own ``[ablate]`` lines:

- start-up: process start to ``[ablate] root`` (imports, preflight checks, ``ray.init``);
- data: the seconds ``[ablate] data:`` prints (simulation and shard writing);
- extraction: ``data:`` line to ``slots:`` line (Ray Data slot extraction, actor start-up);
- sweep: ``slots:`` line to ``trials finished`` (Tune + every trial), then the wait for the
  controls (copy-last / true-slot references, run beside the trials), then tables and MLflow.

Inside the sweep, each trial's MLflow run gives its wall time (run start to end), its training
time (``train.steps / steps_per_s``) and each evaluation stage's ``eval/<stage>_s``; the rest
of a trial (process and trainer start-up, checkpointing, logging) is its overhead. Trials run
concurrently, so the per-trial sums are CPU-side shares, not slices of the sweep's wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "ablate_masking.py"
MARKS = {  # stage boundary -> the pipeline line that ends it
    "startup": re.compile(r"^\[ablate\] root "),
    "data": re.compile(r"^\[ablate\] data: .*, ([0-9.]+) s\)"),
    "slots": re.compile(r"^\[ablate\] slots: "),
    "trials": re.compile(r"^\[ablate\] trials finished"),
    "summary": re.compile(r"^\[ablate\] \d+ trial\(s\), \d+ failed"),
}


def run_logged(cmd: list[str], env: dict[str, str], log: Path, echo: bool) -> tuple[int, list]:
    """Run ``cmd``; returns its exit code and ``[(seconds since start, line), ...]``."""
    t0 = time.perf_counter()
    lines = []
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            t = time.perf_counter() - t0
            lines.append((t, line.rstrip("\n")))
            fh.write(f"{t:8.2f} {line}")
            fh.flush()  # the log is readable while the run goes on
            if echo:
                print(f"{t:8.2f} {line}", end="", flush=True)
        rc = proc.wait()
    lines.append((time.perf_counter() - t0, "<exit>"))
    return rc, lines


def boundaries(lines: list) -> tuple[dict[str, float], float | None]:
    """The time each ``MARKS`` line arrived, and the seconds the data line prints."""
    at, data_s = {}, None
    for t, line in lines:
        for name, pattern in MARKS.items():
            m = pattern.search(line)
            if m and name not in at:
                at[name] = t
                if name == "data":
                    data_s = float(m.group(1))
    return at, data_s


def trial_times(uri: str, experiment: str) -> list[dict[str, float]]:
    """Per trial: wall, training and ``eval/<stage>_s`` seconds from its MLflow run."""
    from cjepa.distributed import tracking

    mlf = tracking.client(uri)
    exp = mlf.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out = []
    for r in mlf.search_runs([exp.experiment_id], "tags.`cjepa.role` = 'trial'"):
        if r.info.end_time is None:  # still running (a partial read of a live run)
            continue
        m, steps = r.data.metrics, float(r.data.params.get("train.steps", "nan"))
        row = {"wall": (r.info.end_time - r.info.start_time) / 1e3}
        row["train"] = steps / m["steps_per_s"] if m.get("steps_per_s") else float("nan")
        row.update({k[5:-2]: v for k, v in m.items() if k.startswith("eval/") and k.endswith("_s")})
        out.append(row)
    return out


def report(lines: list, trials: list[dict[str, float]]) -> None:
    at, data_s = boundaries(lines)
    end = lines[-1][0]
    missing = [k for k in MARKS if k not in at]
    if missing:
        raise SystemExit(f"smoke_wall: the run printed no line for {missing}; see the log")
    stages = [
        ("start-up (imports, checks, ray.init)", at["startup"]),
        ("data generation", data_s),
        ("extraction (Ray Data)", at["slots"] - at["data"]),
        ("sweep (Tune, all trials)", at["trials"] - at["slots"]),
        ("controls (wait after the trials)", at["summary"] - at["trials"]),
        ("tables, MLflow, shutdown", end - at["summary"]),
    ]
    other = at["data"] - at["startup"] - data_s  # between root and data lines besides data
    stages.insert(2, ("other before data", other))
    print(f"{'stage':<40}{'wall s':>9}{'share':>8}")
    for name, s in stages:
        print(f"{name:<40}{s:>9.1f}{s / end:>8.1%}")
    print(f"{'total':<40}{end:>9.1f}")
    if not trials:
        print("no trial runs found in MLflow")
        return
    keys = ["wall", "train", *sorted({k for t in trials for k in t} - {"wall", "train"})]
    total = {k: sum(t.get(k, 0.0) for t in trials) for k in keys}
    total["overhead"] = total["wall"] - sum(v for k, v in total.items() if k != "wall")
    sweep = at["trials"] - at["slots"]
    print(
        f"{len(trials)} trials, summed over trials (they run concurrently: sum of trial walls / "
        f"sweep wall = {total['wall'] / sweep:.2f}):"
    )
    print(f"{'part':<40}{'sum s':>9}{'share':>8}{'per trial':>11}")
    for k in ["train", *keys[2:], "overhead"]:
        label = {"train": "training", "overhead": "overhead (start-up, ckpt, logging)"}.get(
            k, f"eval: {k}"
        )
        v = total[k]
        print(f"{label:<40}{v:>9.1f}{v / total['wall']:>8.1%}{v / len(trials):>11.1f}")
    print(f"{'trial wall':<40}{total['wall']:>9.1f}{1:>8.1%}{total['wall'] / len(trials):>11.1f}")
    top = max(stages, key=lambda x: x[1])
    print(f"dominant stage: {top[0]} ({top[1] / end:.0%} of the wall time)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="smoke")
    p.add_argument("--world", default="collide")
    p.add_argument("--quick", action="store_true", help="the tiny preset (seconds to minutes)")
    p.add_argument("--root", default=None, help="fresh folder for data, slots, sweep, MLflow")
    p.add_argument("--log", default=None, help="the time-stamped output (default: ROOT/run.log)")
    p.add_argument("--echo", action="store_true", help="print the run's output as it arrives")
    p.add_argument("overrides", nargs="*", help="passed to ablate_masking.py")
    args = p.parse_args()
    preset = "tiny" if args.quick else args.preset
    with tempfile.TemporaryDirectory(prefix="smoke_wall_") as tmp:
        root = Path(args.root or tmp).resolve()
        root.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{root / 'mlruns.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)  # a local Ray, as `make run` starts
        cmd = [sys.executable, str(SCRIPT), "--preset", preset, "--world", args.world]
        cmd += ["--root", str(root / "runs"), *args.overrides]
        log = Path(args.log) if args.log else root / "run.log"
        print(f"command: {' '.join(cmd)}\nMLflow {uri}; log {log}", flush=True)
        rc, lines = run_logged(cmd, env, log, args.echo)
        if rc != 0:
            tail = "\n".join(line for _, line in lines[-30:])
            raise SystemExit(f"smoke_wall: the run exited {rc}:\n{tail}")
        report(lines, trial_times(uri, "cjepa-ablation"))


if __name__ == "__main__":
    main()
