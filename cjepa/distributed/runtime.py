"""Starting or joining a Ray cluster with the noise turned down.

``init_ray()`` follows ``ray.init(address=os.environ.get("RAY_ADDRESS"))``: with no address and
no ``RAY_ADDRESS`` it starts a local Ray; under ``ray job submit`` (which sets ``RAY_ADDRESS``)
or with an explicit address it joins that cluster. Costs measured here: ``ray.init()`` 2-5 s,
~1 GB idle, ``ray.shutdown()`` ~1.3 s, so entry scripts call it once.

A local Ray listens on loopback only. Ray 2.60 binds its servers (GCS, raylet, workers, agents)
to every interface unless the node's IP is ``127.0.0.1``, and ``ray.init`` turns a
``_node_ip_address`` of ``127.0.0.1`` into the machine's address; only with clusters disabled
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's own switch, the default on macOS and Windows)
does it keep loopback. ``init_ray`` sets that switch for a local start and clears it again before
joining a cluster (measured on this machine: of the 12 sockets a local Ray listened on, 9 were on
every interface and 2 on the machine's address; with the switch, 11, all on 127.0.0.1;
``tests/distributed/test_runtime.py``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import ray
import ray.data
from ray._private import ray_constants

# Ray's switch for "no multi-node cluster": with it off, the node IP stays 127.0.0.1 and every
# Ray server binds loopback. Read by Ray once at import, and by its services at call time.
_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# getattr: a Ray that renames the constant must not break import (tests/distributed/test_runtime.py
# then reports the bindings).
_CLUSTER_DEFAULT = (
    os.environ.get(_CLUSTER_SWITCH),
    getattr(ray_constants, "ENABLE_RAY_CLUSTER", True),
)

# Ray Data announces every execution ("execution finished in ...") at INFO and warns once that
# progress bars are off; both are noise next to our own tqdm bar. Warnings from the executor
# itself (e.g. an actor pool that cannot be scheduled) stay visible.
_NOISY_LOGGERS = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}


def init_ray(
    address: str | None = None, *, quiet: bool = True, loopback: bool = True, **kwargs: Any
) -> None:
    """Start or join Ray once per process (a no-op when already initialised).

    Args:
        address: cluster address; None -> ``RAY_ADDRESS`` if set, else a new local Ray.
        quiet: Ray's own logging at WARNING, no local dashboard, Ray Data bars only on a
            terminal (worker stdout/stderr still reach the driver, so actor errors show).
        loopback: a local Ray listens on 127.0.0.1 only (no other machine can join it);
            ignored when joining a cluster.
        **kwargs: passed to ``ray.init`` (e.g. ``num_cpus`` for a local Ray, ``runtime_env``).
    """
    if ray.is_initialized():
        return
    if quiet:
        kwargs.setdefault("logging_level", logging.WARNING)
        # A local one-shot run needs no dashboard (~1 s, ~0.5 GB); joining ignores this.
        kwargs.setdefault("include_dashboard", False)
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        # A local Ray has no spot instances to be preempted: Train's preemption watcher is one
        # more polling actor per trial (~6% of a core each on 2 cores) that buys nothing here.
        # Set before ray.init so the local raylet and its workers inherit it.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    _set_cluster_mode(enabled=(address not in (None, "", "local")) or not loopback)
    ray.init(address=address, **kwargs)
    if quiet:
        quiet_ray_data()


def _set_cluster_mode(*, enabled: bool) -> None:
    """Ray's multi-node switch, in this process and in the Ray processes it starts.

    ``enabled=False``: node IP 127.0.0.1, every server on loopback. ``enabled=True``: Ray's own
    default as this process found it (so a join after a local run in one process still works).
    """
    env, constant = _CLUSTER_DEFAULT
    if enabled:
        if env is None:
            os.environ.pop(_CLUSTER_SWITCH, None)
        else:
            os.environ[_CLUSTER_SWITCH] = env
        ray_constants.ENABLE_RAY_CLUSTER = constant
        return
    os.environ[_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def quiet_ray_data(progress_bars: bool | None = None) -> None:
    """Turn Ray Data's progress bars and per-execution INFO lines down in this process.

    Args:
        progress_bars: Ray Data's own bars; None -> only when stderr is a terminal.
    """
    for name, level in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty() if progress_bars is None else progress_bars
    ctx.print_on_execution_start = False


def cluster_resources() -> dict[str, float]:
    """The cluster's total resources (``CPU``, ``GPU``, ...) as floats."""
    return {k: float(v) for k, v in ray.cluster_resources().items()}
