"""Starting or joining a Ray cluster with the noise turned down.

``init_ray()`` follows ``ray.init(address=os.environ.get("RAY_ADDRESS"))``: with no address and
no ``RAY_ADDRESS`` it starts a local Ray; under ``ray job submit`` (which sets ``RAY_ADDRESS``)
or with an explicit address it joins that cluster. Costs measured here: ``ray.init()`` 2-5 s,
~1 GB idle, ``ray.shutdown()`` ~1.3 s, so entry scripts call it once.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import ray
import ray.data

# Ray Data announces every execution ("execution finished in ...") at INFO and warns once that
# progress bars are off; both are noise next to our own tqdm bar. Warnings from the executor
# itself (e.g. an actor pool that cannot be scheduled) stay visible.
_NOISY_LOGGERS = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}


def init_ray(address: str | None = None, *, quiet: bool = True, **kwargs: Any) -> None:
    """Start or join Ray once per process (a no-op when already initialised).

    Args:
        address: cluster address; None -> ``RAY_ADDRESS`` if set, else a new local Ray.
        quiet: Ray's own logging at WARNING, no local dashboard, Ray Data bars only on a
            terminal (worker stdout/stderr still reach the driver, so actor errors show).
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
    ray.init(address=address, **kwargs)
    if quiet:
        quiet_ray_data()


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
