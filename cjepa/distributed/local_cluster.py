"""A multi-node Ray cluster on one machine: a head and a worker node, each its own ``ray start``.

Each node is ``ray start --block`` in a process group of its own, so it is stopped by its own
PID (SIGTERM: Ray's shutdown hooks stop the node's GCS, raylet, agents and workers; then SIGKILL
to whatever is left in its group), never by ``ray stop``, which stops every Ray on the machine.
Every port is chosen free on 127.0.0.1, so the cluster runs beside other Rays; the dashboard
and the Jobs API listen on 127.0.0.1 only. Each node carries a custom resource naming it
(``node_head``, ``node_worker``) besides its CPUs.

Ray keeps a node's IP at 127.0.0.1 only with its multi-node switch off
(``cjepa.distributed.runtime``), and with the switch off a worker node refuses to join; so here
Ray resolves 127.0.0.1 to the machine's address as for any multi-node cluster, and the
cluster's servers are guarded by Ray's token authentication (``RAY_AUTH_MODE=token``; the token
is ``~/.ray/auth_token``, made on first use).

Used by ``cluster/local_cluster.py`` (``make cluster-local``) and the slow tests
``tests/distributed/test_multinode.py`` and ``test_job_submit.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # cjepa.distributed.runtime
READY = "Ray runtime started"  # what `ray start` prints once the node is up


class ClusterError(RuntimeError):
    """A node did not start; the message holds the tail of its ``ray start`` log."""

    exit_code = 1


@dataclass
class Node:
    """One ``ray start --block`` process (its PID is its process group's id)."""

    name: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class LocalCluster:
    """A head (``nodes[0]``) and its worker nodes; ``address`` is the GCS, ``dashboard`` the
    Jobs and State API."""

    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``ray`` commands: token authentication on unless set, no usage
    stats, no inherited ``RAY_ADDRESS`` (which would point them at another cluster) and no
    multi-node switch left off by a local ``init_ray`` in this process (a worker node would
    refuse to start)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("RAY_AUTH_MODE", "token")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    for name in ("RAY_ADDRESS", CLUSTER_SWITCH):
        env.pop(name, None)
    return env


def ensure_token(env: dict[str, str]) -> None:
    """With token authentication on, make Ray's default token (``~/.ray/auth_token``) if no
    token is given: ``ray start`` refuses to start without one and does not make it."""
    if env.get("RAY_AUTH_MODE", "").lower() != "token":
        return
    if env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"):
        return
    if not (Path.home() / ".ray" / "auth_token").is_file():
        # The command prints the token: keep it out of logs.
        subprocess.run(
            [RAY, "get-auth-token", "--generate"], env=env, capture_output=True, check=True
        )


def start_node(name: str, args: list[str], temp_dir: Path, env: dict[str, str], timeout: float):
    """``ray start ARGS --block`` in a new process group, logging to ``temp_dir/<name>.log``;
    returns the ``Node`` once Ray says it started (raises with the log's tail otherwise)."""
    log = temp_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [RAY, "start", *args, "--block"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    node = Node(name, process, log)
    deadline = time.monotonic() + timeout
    while READY not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_node(node)
            tail = log.read_text(errors="replace")[-2000:]
            raise ClusterError(f"ray start of the {name} node did not start ({log}):\n{tail}")
        time.sleep(0.5)
    return node


#: Each node's object store (Ray's default, 30% of RAM per node, is much more than the ablation
#: moves; the store is reserved in shared memory per node).
OBJECT_STORE_BYTES = 512 * 1024**2


def node_args(cpus: int, resource: str, temp_dir: Path) -> list[str]:
    """What every node of the cluster gets: its CPUs, a custom resource naming it, ports of
    its own and its own temp dir (Ray's socket paths must stay short: keep ``temp_dir`` so)."""
    return [
        "--num-cpus",
        str(cpus),
        "--resources",
        json.dumps({resource: 1}),
        "--object-store-memory",
        str(OBJECT_STORE_BYTES),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
    ]


def start_cluster(
    temp_dir: str | Path,
    *,
    head_cpus: int = 2,
    worker_cpus: int = 2,
    workers: int = 1,
    timeout: float = 180,
) -> LocalCluster:
    """A head with ``head_cpus`` and ``workers`` worker nodes (0: a head alone) with
    ``worker_cpus`` each, on this machine; custom resources ``node_head``, ``node_worker``."""
    temp_dir = Path(temp_dir)
    cluster = LocalCluster(temp_dir, free_port(), free_port(), ray_env())
    ensure_token(cluster.env)
    head = [
        "--head",
        "--port",
        str(cluster.gcs_port),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(cluster.dashboard_port),
        "--ray-client-server-port",
        str(free_port()),
        *node_args(head_cpus, "node_head", temp_dir / "head"),
    ]
    cluster.nodes.append(start_node("head", head, temp_dir, cluster.env, timeout))
    try:
        for i in range(workers):
            args = [
                "--address",
                cluster.address,
                *node_args(worker_cpus, "node_worker", temp_dir / f"w{i}"),
            ]
            name = "worker" if workers == 1 else f"worker{i}"
            cluster.nodes.append(start_node(name, args, temp_dir, cluster.env, timeout))
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still there
        return True
    return True


def stop_node(node: Node, timeout: float = 30) -> None:
    """SIGTERM to the node's ``ray start`` (it stops its processes), then SIGKILL to what is
    left of its process group; returns once the group is gone."""
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout)
    deadline = time.monotonic() + timeout
    while group_alive(node.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        time.sleep(0.2)
    if node.process.poll() is None:
        node.process.kill()
    node.process.wait()


def leftovers(temp_dir: str | Path) -> list[int]:
    """PIDs of processes that still belong to the cluster in ``temp_dir``: their command line
    or working directory names it (Ray's servers take it as an argument; a job's workers run
    in its working directory under it). Ray's workers leave their node's process group, so
    this is how they are found."""
    mark, found = str(Path(temp_dir).resolve()), []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if mark in cmdline or os.readlink(proc / "cwd").startswith(mark):
                found.append(int(proc.name))
    return [pid for pid in found if pid != os.getpid()]


def stop_cluster(cluster: LocalCluster, timeout: float = 30) -> list[int]:
    """Stop the worker nodes, then the head, each by its own PID; then wait for the cluster's
    other processes (``leftovers``) to exit, SIGKILL those still there after ``timeout``, and
    return their PIDs (empty when the nodes took everything down)."""
    for node in reversed(cluster.nodes):
        stop_node(node)
    deadline = time.monotonic() + timeout
    while (left := leftovers(cluster.temp_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@contextlib.contextmanager
def local_cluster(temp_dir: str | Path, **kwargs) -> Iterator[LocalCluster]:
    """``start_cluster``; its nodes are stopped however the block ends."""
    cluster = start_cluster(temp_dir, **kwargs)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def list_nodes(cluster: LocalCluster, timeout: float = 60) -> list[dict]:
    """The cluster's nodes from Ray's State API (``node_id``, ``is_head_node``, ``state``,
    ``resources_total``, ...)."""
    out = subprocess.run(
        [RAY, "list", "nodes", "--address", cluster.dashboard, "--format", "json"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(out.stdout)


def submit(
    cluster: LocalCluster,
    entrypoint: list[str],
    *,
    working_dir: str | Path,
    env_vars: dict[str, str],
    timeout: float,
    capture: bool = True,
) -> subprocess.CompletedProcess:
    """``ray job submit`` of ``entrypoint`` with ``working_dir`` and ``env_vars``; waits for the
    job (exit status 0: it succeeded). ``capture``: return the CLI's output, which includes the
    job's log, instead of printing it."""
    runtime = json.dumps({"env_vars": env_vars})
    command = [
        RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(working_dir),
        "--runtime-env-json", runtime, "--", *entrypoint,
    ]  # fmt: skip
    return subprocess.run(
        command, env=cluster.env, capture_output=capture, text=True, timeout=timeout
    )


def spread_ablation(preset: str, root: str | Path, sweep_id: str, workers: int = 2) -> list[str]:
    """The ablation's command line with ``workers`` Train workers per trial, each on a
    different node (``sweep.placement=STRICT_SPREAD``)."""
    return [
        sys.executable, "experiments/ablate_masking.py", "--preset", preset, "--root", str(root),
        "--sweep-id", sweep_id, "--sweep-set", f"workers_per_trial={workers}",
        "--sweep-set", "placement=STRICT_SPREAD",
    ]  # fmt: skip


@dataclass
class Placement:
    """Where a sweep ran, from its MLflow runs: the nodes that extracted its slots (the sweep
    run's ``cjepa.extract_nodes``) and, per trial run name, its Train workers' nodes by rank
    (``cjepa.train_nodes``)."""

    extract: list[str]
    train: dict[str, list[str]]


def sweep_placement(uri: str, experiment: str, sweep_id: str) -> Placement:
    """``Placement`` of sweep ``sweep_id`` in MLflow experiment ``experiment``."""
    from cjepa.distributed import tracking
    from cjepa.distributed.pipeline import EXTRACT_NODES_TAG
    from cjepa.distributed.train import TRAIN_NODES_TAG

    mlf = tracking.client(uri)
    exp = mlf.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment {experiment!r} in {uri}")
    runs = mlf.search_runs([exp.experiment_id], f"tags.`cjepa.sweep_id` = '{sweep_id}'")
    sweep = [r for r in runs if r.data.tags.get("cjepa.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("cjepa.role") == "trial"]
    return Placement(
        extract=_node_list(sweep[0].data.tags, EXTRACT_NODES_TAG) if sweep else [],
        train={r.info.run_name: _node_list(r.data.tags, TRAIN_NODES_TAG) for r in trials},
    )


def _node_list(tags: dict[str, str], key: str) -> list[str]:
    return [n for n in tags.get(key, "").split(",") if n]
