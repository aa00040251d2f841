"""One local Ray for the whole session (ray.init costs 2-5 s and ~1 GB) and small episode data."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cjepa.data.episode import EpisodeData
from cjepa.data.shards import write_episode_shard

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# 3 shards of ragged episodes (T differs per episode), tiny frames: the fake encoders are cheap.
SHARD_SIZES = (3, 2, 3)


@pytest.fixture(scope="session")
def ray_session():
    """A 2-CPU local Ray, as on the smallest machine the pipeline must not deadlock on."""
    import ray

    from cjepa.distributed.runtime import quiet_ray_data

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,
        log_to_driver=False,
        logging_level="warning",
    )
    quiet_ray_data(progress_bars=False)
    yield ray
    ray.shutdown()


def make_episode(index: int, rng: np.random.Generator) -> EpisodeData:
    t = int(rng.integers(5, 12))
    return EpisodeData(
        episode_id=f"toy-{index:04d}",
        world="toy",
        frames=rng.integers(0, 256, size=(t, 16, 16, 3), dtype=np.uint8),
        states=rng.standard_normal((t, 2, 4)).astype(np.float32),
    )


@pytest.fixture(scope="session")
def episode_dir(tmp_path_factory):
    """A directory of episode shards ``toy-<first>-<last>.parquet`` (read-only for tests)."""
    root = tmp_path_factory.mktemp("episodes")
    rng = np.random.default_rng(0)
    first = 0
    for size in SHARD_SIZES:
        eps = [make_episode(i, rng) for i in range(first, first + size)]
        write_episode_shard(root / f"toy-{first:04d}-{first + size - 1:04d}.parquet", eps)
        first += size
    return root
