import numpy as np
import pytest
import torch

from cjepa.config import DataConfig
from cjepa.data.episode import EpisodeData
from cjepa.data.shards import write_episode_shard, write_slot_shard
from cjepa.data.sources import load_windows
from cjepa.data.splits import split_of

N, D, T = 3, 4, 20


def write_slots(directory, ids, seed=0):
    rng = np.random.default_rng(seed)
    rows_ep = [i for i in ids for _ in range(T)]
    frames = [f for _ in ids for f in range(T)]
    slots = rng.standard_normal((len(rows_ep), N, D)).astype(np.float32)
    write_slot_shard(
        directory / "slots-000.parquet",
        rows_ep,
        frames,
        slots,
        encoder_hash="abc",
        encoder_config={"kind": "test"},
    )
    return slots.reshape(len(ids), T, N, D)


def config(tmp_path, **kw):
    base = dict(
        source="slots",
        world="collide",
        slot_dir=str(tmp_path / "slots"),
        n_slots=N,
        slot_dim=D,
        history=3,
        n_future=2,
        val_fraction=0.3,
    )
    return DataConfig(**(base | kw))


def test_slot_source_splits_by_episode_id(tmp_path):
    (tmp_path / "slots").mkdir()
    ids = [f"collide-s0-{i:06d}" for i in range(12)]
    slots = write_slots(tmp_path / "slots", ids)
    train, val = load_windows(config(tmp_path))
    n_val = sum(split_of(i, 0.3) == "val" for i in ids)
    assert len(val) == n_val * (T - 4) and len(train) == (12 - n_val) * (T - 4)
    first_train = ids.index(next(i for i in ids if split_of(i, 0.3) == "train"))
    batch = train.get(torch.tensor([0]))
    torch.testing.assert_close(batch["slots"][0], torch.from_numpy(slots[first_train, :5]))


def test_slot_source_shape_mismatch_names_fields(tmp_path):
    (tmp_path / "slots").mkdir()
    write_slots(tmp_path / "slots", [f"c-{i}" for i in range(10)])
    with pytest.raises(ValueError, match=r"data\.n_slots=5"):
        load_windows(config(tmp_path, n_slots=5))


def test_empty_slot_dir(tmp_path):
    (tmp_path / "slots").mkdir()
    with pytest.raises(FileNotFoundError, match="no slot shards"):
        load_windows(config(tmp_path))


def test_pusht_actions_and_proprio_from_episode_shards(tmp_path):
    (tmp_path / "slots").mkdir()
    (tmp_path / "eps").mkdir()
    ids = [f"pusht-s0-{i:06d}" for i in range(10)]
    write_slots(tmp_path / "slots", ids)
    rng = np.random.default_rng(1)
    eps = [
        EpisodeData(
            i,
            "pusht",
            np.zeros((T, 8, 8, 3), np.uint8),
            rng.standard_normal((T, 1, 7)).astype(np.float32),
            actions=rng.standard_normal((T, 2)).astype(np.float32),
        )
        for i in ids
    ]
    write_episode_shard(tmp_path / "eps" / "eps-000.parquet", eps)
    cfg = config(tmp_path, world="pusht", episode_dir=str(tmp_path / "eps"), frameskip=2)
    assert (cfg.action_dim, cfg.proprio_dim) == (2, 4)
    train, _ = load_windows(cfg)
    batch = train.get(torch.arange(len(train)))
    assert batch["actions"].shape[-1] == 4 and batch["proprio"].shape[-1] == 4
    # z-scored with training statistics
    flat = torch.cat(train.proprio.split(1))
    assert flat.mean(0).abs().max() < 1e-4
    with pytest.raises(ValueError, match="episode_dir"):
        load_windows(config(tmp_path, world="pusht", episode_dir=str(tmp_path / "slots")))


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"slot_dir": None}, "data.slot_dir"),
        ({"n_slots": None}, "data.n_slots"),
        ({"world": "clevr"}, "data.world"),
    ],
)
def test_slot_source_config_errors(tmp_path, kw, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        config(tmp_path, **kw)
