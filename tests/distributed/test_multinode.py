"""A real two-node Ray cluster on this machine: a head and a worker node, each `ray start` with
its own CPUs and custom resource; the tiny ablation submitted with `ray job submit`, two Train
workers per trial spread over the nodes; the run's own MLflow tags must show that Ray Train
placed a worker on each node and that extraction ran on both; then both nodes are stopped by
their PIDs, and nothing of the cluster may be left running. Slow (`make test-slow`)."""

import shutil
import tempfile
from pathlib import Path

import pytest

from cjepa.distributed import local_cluster as lc
from cjepa.distributed.registry import load_registered
from cjepa.distributed.tracking import client

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_tiny_ablation_uses_both_nodes_of_a_local_cluster(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="rm", dir="/tmp"))  # short: Ray's socket paths
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cluster = lc.start_cluster(temp, head_cpus=2, worker_cpus=2)
    try:
        nodes = {n["node_id"]: n for n in lc.list_nodes(cluster)}
        head = next(k for k, n in nodes.items() if n["is_head_node"])
        worker = next(k for k, n in nodes.items() if not n["is_head_node"])
        assert nodes[head]["resources_total"]["node_head"] == 1
        assert nodes[worker]["resources_total"]["node_worker"] == 1
        job = lc.submit(
            cluster,
            lc.spread_ablation("tiny", tmp_path / "runs", "multinode"),
            working_dir=REPO,
            env_vars={"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)},
            timeout=2400,
        )
        assert job.returncode == 0 and "succeeded" in job.stdout, (
            job.stdout[-4000:] + job.stderr[-2000:]
        )
        assert "on 2 node(s)" in job.stdout  # the pipeline's own extraction line
        print("\n".join(line for line in job.stdout.splitlines() if line.startswith("[")))
    finally:
        left = lc.stop_cluster(cluster)
        pids = [n.pid for n in cluster.nodes]
        shutil.rmtree(temp, ignore_errors=True)
    assert not any(lc.group_alive(pid) for pid in pids)
    assert left == [], f"processes of the cluster outlived its nodes: {left}"

    where = lc.sweep_placement(uri, "cjepa-ablation", "multinode")
    assert sorted(set(where.extract)) == sorted([head, worker])
    assert len(where.train) == 3  # the tiny sweep's trials
    names = {head: "head", worker: "worker"}
    print(f"extraction on {[names[n] for n in sorted(set(where.extract))]}")
    for trial, ranks in where.train.items():
        print(f"trial {trial}: Train workers by rank on {[names.get(n, n) for n in ranks]}")
        assert sorted(ranks) == sorted([head, worker]), trial
    # The sweep's best trial is in the Model Registry, and its checkpoint loads.
    assert client(uri).search_model_versions("name = 'cjepa-tiny-collide'")
    assert "model" in load_registered(uri, "cjepa-tiny-collide")
