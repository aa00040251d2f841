"""A two-node Ray cluster on this machine, the tiny ablation submitted to it, and where it ran.

    python cluster/local_cluster.py                     # make cluster-local
    python cluster/local_cluster.py --preset smoke --head-cpus 4 --worker-cpus 4

Starts a head (``ray start --head``, custom resource ``node_head``) and a worker node (``ray
start --address``, ``node_worker``), each with ``--num-cpus`` of its own; submits the ablation
with ``ray job submit`` (two Train workers per trial, ``sweep.placement=STRICT_SPREAD``); prints
which node extracted slots and which node each trial's Train workers ran on (the run's own
MLflow tags); then stops both nodes by their PIDs. Exits 1 when the job failed or did not use
both nodes. Runs land in ``--tracking-uri`` (default ``sqlite:///<cwd>/mlruns.db``, ``make ui``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from cjepa import cli
from cjepa.distributed.local_cluster import (
    list_nodes,
    local_cluster,
    spread_ablation,
    submit,
    sweep_placement,
)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "cjepa-ablation"  # the presets' mlflow_experiment


def _log(message: str) -> None:
    print(f"[cluster-local] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="ablation preset (default tiny)")
    parser.add_argument("--root", default="runs/cluster-local", help="data, slots and sweeps")
    parser.add_argument("--tracking-uri", help="MLflow store (default sqlite:///<cwd>/mlruns.db)")
    parser.add_argument("--head-cpus", type=int, default=2)
    parser.add_argument("--worker-cpus", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=1800, help="for the job")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    uri = args.tracking_uri or f"sqlite:///{Path.cwd().resolve() / 'mlruns.db'}"
    sweep_id = f"cluster-local-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a limit
    cpus = {"head_cpus": args.head_cpus, "worker_cpus": args.worker_cpus}
    with local_cluster(temp, **cpus) as cluster:
        names = {}
        for node in list_nodes(cluster):
            names[node["node_id"]] = "head" if node["is_head_node"] else "worker"
            _log(f"{names[node['node_id']]} node {node['node_id']} ({node['state']})")
        _log(f"submitting the {args.preset} ablation to {cluster.dashboard}")
        job = submit(
            cluster,
            spread_ablation(args.preset, root, sweep_id),
            working_dir=REPO,
            env_vars={"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)},
            timeout=args.timeout_s,
            capture=False,
        )
        pids = ", ".join(f"{n.name} pid {n.pid}" for n in cluster.nodes)
    _log(f"stopped {pids}")
    if job.returncode != 0:
        raise SystemExit(
            f"[cluster-local] the job failed (ray job submit exit {job.returncode}); "
            f"the nodes' logs are in {temp}"
        )
    shutil.rmtree(temp, ignore_errors=True)
    _report(uri, sweep_id, names)


def _report(uri: str, sweep_id: str, names: dict[str, str]) -> None:
    """Print where the sweep ran; exit 1 unless extraction and every trial used both nodes."""
    where = sweep_placement(uri, EXPERIMENT, sweep_id)

    def label(nodes: list[str]) -> str:
        return ", ".join(names.get(n, n[:12]) for n in nodes)

    _log(f"extraction: slot shards written on {label(sorted(set(where.extract)))}")
    for trial, nodes in sorted(where.train.items()):
        _log(f"trial {trial}: Train workers by rank on {label(nodes)}")
    both = set(names)
    spread = set(where.extract) == both and all(set(n) == both for n in where.train.values())
    if not (spread and where.train):
        raise SystemExit("[cluster-local] the job did not use both nodes for every stage")
    _log(f"sweep {sweep_id} used both nodes; runs in {uri}")


if __name__ == "__main__":
    cli.run(main)
