"""A local ``init_ray()`` listens on loopback only; ``loopback=False`` restores Ray's default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Run in a fresh interpreter: the session's shared Ray (conftest) must not be the one inspected.
_PROBE = r"""
import json, os, sys
from pathlib import Path
from cjepa.distributed.runtime import init_ray
import ray

init_ray(num_cpus=1, loopback=sys.argv[1] == "1", log_to_driver=False)
ray.get(ray.remote(lambda: 1).remote())  # a worker process too, not only GCS and raylet


def descendants(root):
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == pid and p not in found]
        found.update(kids)
        todo.extend(kids)
    return found


def socket_inodes(pid):
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening(path):
    rows = {}
    for line in Path(path).read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A":  # TCP_LISTEN
            rows[cols[9]] = cols[1]
    return rows


def host(hex_addr):
    addr = hex_addr.split(":")[0]
    if len(addr) == 8:
        return ".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0))
    words = [addr[i : i + 8] for i in range(0, 32, 8)]
    if words[:2] == ["00000000"] * 2 and words[2] == "FFFF0000":  # IPv4-mapped
        return host(words[3] + ":0")
    if words == ["00000000"] * 4:
        return "::"
    return "::1" if words == ["00000000"] * 3 + ["01000000"] else ":".join(words)


sockets = {**listening("/proc/net/tcp"), **listening("/proc/net/tcp6")}
inodes = set().union(*(socket_inodes(p) for p in descendants(os.getpid()) | {os.getpid()}))
print(json.dumps(sorted(host(sockets[i]) for i in inodes if i in sockets)))
ray.shutdown()
"""


def _listening_hosts(loopback: bool) -> list[str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, "1" if loopback else "0"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_local_ray_listens_on_loopback_only():
    hosts = _listening_hosts(loopback=True)
    assert len(hosts) >= 3, hosts  # GCS, raylet, a worker at least: the probe sees sockets
    assert set(hosts) <= {"127.0.0.1", "::1"}, hosts


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_loopback_false_keeps_rays_default_bindings():
    # The control: the probe can see a non-loopback binding when Ray makes one.
    hosts = _listening_hosts(loopback=False)
    assert set(hosts) - {"127.0.0.1", "::1"}, hosts
