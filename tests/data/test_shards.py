"""Episode and slot shards: round trips, determinism, validation errors, atomic writes, splits."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cjepa.data.episode import EpisodeData
from cjepa.data.shards import (
    EPISODE_SCHEMA_VERSION,
    ShardError,
    iter_episode_shard,
    load_slot_episodes,
    read_episode_shard,
    read_shard_metadata,
    read_slot_shard,
    write_episode_shard,
    write_slot_shard,
)
from cjepa.data.splits import list_shards, split_ids, split_of, split_unit


def make_episodes(seed: int = 0) -> list[EpisodeData]:
    """Four small episodes covering every optional field being present and absent."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (t, h, w) in enumerate([(5, 8, 6), (3, 4, 4), (1, 2, 3), (4, 8, 6)]):
        masks = rng.integers(0, 4, (t, h, w))
        out.append(
            EpisodeData(
                episode_id=f"fake-s{seed}-{i:06d}",
                world="fake",
                frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
                states=rng.standard_normal((t, 3, 5)).astype(np.float32),
                actions=None if i == 1 else rng.standard_normal((t, 2)).astype(np.float32),
                masks=None if i == 2 else masks.astype([np.uint8, np.int32, None, np.uint16][i]),
                questions=None if i == 0 else [{"type": "descriptive", "answer": int(i)}],
                info={"collisions": [[1, 2, 3]], "success": bool(i % 2)},
                meta={"seed": seed, "index": i, "note": "é ✓"},
            )
        )
    return out


def assert_same(a: EpisodeData, b: EpisodeData) -> None:
    for f in dataclasses.fields(EpisodeData):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype, f.name
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


def test_episode_round_trip_every_column(tmp_path):
    eps = make_episodes()
    path = tmp_path / "a.parquet"
    write_episode_shard(path, eps, metadata={"world": "fake", "seed": 0})
    back = read_episode_shard(path)
    assert len(back) == len(eps)
    for a, b in zip(eps, back, strict=True):
        assert_same(a, b)
    assert back[1].actions is None and back[2].masks is None and back[0].questions is None
    assert back[0].frames.flags.writeable  # decoded arrays are owned copies, safe to edit
    assert [e.episode_id for e in iter_episode_shard(path)] == [e.episode_id for e in eps]
    meta = read_shard_metadata(path)
    assert meta == {
        "kind": "episodes",
        "schema_version": EPISODE_SCHEMA_VERSION,
        "num_rows": 4,
        "metadata": {"world": "fake", "seed": 0},
    }


def test_empty_episode_shard(tmp_path):
    write_episode_shard(tmp_path / "e.parquet", [])
    assert read_episode_shard(tmp_path / "e.parquet") == []


def test_writer_rejects_lossy_or_ambiguous_input(tmp_path):
    ep = make_episodes()[0]
    as_f64 = dataclasses.replace(ep, states=ep.states.astype(np.float64))
    with pytest.raises(ValueError, match="states must be float32"):
        write_episode_shard(tmp_path / "x.parquet", [as_f64])
    with pytest.raises(ValueError, match="duplicate episode id"):
        write_episode_shard(tmp_path / "x.parquet", [ep, ep])
    assert not (tmp_path / "x.parquet").exists()


def test_same_input_gives_identical_bytes(tmp_path):
    write_episode_shard(tmp_path / "a.parquet", make_episodes(), metadata={"k": 1})
    write_episode_shard(tmp_path / "b.parquet", make_episodes(), metadata={"k": 1})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    slots = np.random.default_rng(1).standard_normal((6, 3, 4)).astype(np.float32)
    for name in ("s1.parquet", "s2.parquet"):
        write_slot_shard(tmp_path / name, ["a"] * 6, np.arange(6), slots,
                         encoder_hash="h", encoder_config={"n": 3})  # fmt: skip
    assert (tmp_path / "s1.parquet").read_bytes() == (tmp_path / "s2.parquet").read_bytes()


@pytest.fixture
def shard(tmp_path) -> Path:
    path = tmp_path / "good.parquet"
    write_episode_shard(path, make_episodes())
    return path


def test_truncated_and_non_parquet_files_name_the_file(shard, tmp_path):
    truncated = tmp_path / "trunc.parquet"
    truncated.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet at all\n")
    for path in (truncated, junk):
        with pytest.raises(ShardError, match=str(path)):
            read_episode_shard(path)
        with pytest.raises(ShardError, match=str(path)):
            read_shard_metadata(path)


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a shard through ``edit(table) -> table``, keeping its key-value metadata."""
    table = pq.read_table(src)
    meta = table.schema.metadata
    pq.write_table(edit(table).replace_schema_metadata(meta), dst)
    return dst


def _set(name: str, fn):
    def edit(table: pa.Table) -> pa.Table:
        i = table.column_names.index(name)
        col = table.column(name)
        return table.set_column(
            i, table.schema.field(name), pa.array(fn(col.to_pylist()), col.type)
        )

    return edit


def _retype(table: pa.Table) -> pa.Table:
    i = table.column_names.index("frame_height")
    return table.set_column(i, "frame_height", table.column(i).cast(pa.int64()))


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set("n_frames", lambda v: [v[0] + 1, *v[1:]]), "'frames'"),
        (_set("frame_width", lambda v: [v[0] - 1, *v[1:]]), "'frames'"),
        (_set("state_f", lambda v: [v[0] + 1, *v[1:]]), "'states'"),
        (_set("action_dim", lambda v: [v[0] + 1, *v[1:]]), "'actions'"),
        (_set("action_dim", lambda v: [None, *v[1:]]), "'action_dim'"),
        (_set("masks_dtype", lambda v: ["<i8", *v[1:]]), "'masks'"),
        (_set("masks_dtype", lambda v: ["<f4", *v[1:]]), "'masks_dtype'"),
        (_set("info", lambda v: ["{oops", *v[1:]]), "'info'"),
        (_retype, "'frame_height'"),
        (lambda t: t.drop_columns(["questions"]), "columns"),
    ],
)
def test_bad_columns_name_file_and_field(shard, tmp_path, edit, field):
    bad = _rewrite(shard, tmp_path / "bad.parquet", edit)
    with pytest.raises(ShardError, match=str(bad)) as err:
        read_episode_shard(bad)
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"), [(b"cjepa.schema_version", b"2"), (b"cjepa.kind", b"slots")]
)
def test_schema_kind_or_version_mismatch(shard, tmp_path, key, value):
    table = pq.read_table(shard)
    meta = {**table.schema.metadata, key: value}
    bad = tmp_path / "v.parquet"
    pq.write_table(table.replace_schema_metadata(meta), bad)
    with pytest.raises(ShardError, match=str(bad)) as err:
        read_episode_shard(bad)
    assert key.decode() in str(err.value)


def test_failed_write_leaves_nothing_and_keeps_old_file(shard, monkeypatch):
    old = shard.read_bytes()

    def half_write(where, schema, **kwargs):  # the temp file exists and is half written
        where.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "ParquetWriter", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_episode_shard(shard, make_episodes(seed=1))
    with pytest.raises(OSError, match="disk full"):
        write_episode_shard(shard.with_name("new.parquet"), make_episodes(seed=1))
    assert shard.read_bytes() == old
    assert sorted(p.name for p in shard.parent.iterdir()) == ["good.parquet"]


def test_killed_writer_leaves_only_an_ignored_temp_file(shard):
    # A real hard kill (os._exit mid-write): no cleanup code runs, so a temp file remains.
    script = textwrap.dedent(
        f"""
        import os, pyarrow.parquet as pq
        from cjepa.data.shards import write_episode_shard
        from tests.data.test_shards import make_episodes
        def die(where, schema, **kw):
            where.write(b"PAR1 partial"); where.flush(); os._exit(3)
        pq.ParquetWriter = die
        write_episode_shard({str(shard.with_name("killed.parquet"))!r}, make_episodes())
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env)
    assert proc.returncode == 3
    names = sorted(p.name for p in shard.parent.iterdir())
    assert "killed.parquet" not in names
    assert any(n.startswith(".killed.parquet.") and n.endswith(".tmp") for n in names)
    assert list_shards(shard.parent) == [shard]
    assert list_shards(shard.parent, "episodes") == [shard]


def test_slot_round_trip_and_metadata(tmp_path):
    rng = np.random.default_rng(2)
    slots = rng.standard_normal((5, 3, 4)).astype(np.float32)  # (R, N, D)
    ids, frames = ["b", "a", "a", "b", "a"], [1, 0, 2, 0, 1]
    path = tmp_path / "slots.parquet"
    write_slot_shard(path, ids, frames, slots, encoder_hash="abc", encoder_config={"slots": 3},
                     metadata={"part": 0})  # fmt: skip
    s = read_slot_shard(path)
    assert s.episode_ids == ids and s.frames.dtype == np.int32
    np.testing.assert_array_equal(s.frames, frames)
    np.testing.assert_array_equal(s.slots, slots)
    assert (s.encoder_hash, s.encoder_config, s.metadata) == ("abc", {"slots": 3}, {"part": 0})
    meta = read_shard_metadata(path)
    assert (meta["kind"], meta["n_slots"], meta["slot_dim"], meta["num_rows"]) == ("slots", 3, 4, 5)
    eps = load_slot_episodes([path], encoder_hash="abc")
    assert list(eps) == ["a", "b"]
    np.testing.assert_array_equal(eps["a"], slots[[1, 4, 2]])  # rows of frames 0, 1, 2
    np.testing.assert_array_equal(eps["b"], slots[[3, 0]])
    with pytest.raises(ShardError, match="encoder_hash"):
        load_slot_episodes([path], encoder_hash="other")
    with pytest.raises(ShardError, match=r"cjepa\.kind"):
        read_episode_shard(path)
    assert list_shards(tmp_path, "slots") == [path] and list_shards(tmp_path, "episodes") == []


def test_slot_shard_validation(tmp_path):
    path = tmp_path / "s.parquet"
    write_slot_shard(path, ["a"], [0], np.zeros((1, 2, 3), np.float32), encoder_hash="h",
                     encoder_config={})  # fmt: skip
    table = pq.read_table(path)
    meta = {**table.schema.metadata, b"cjepa.slot_dim": b"4"}  # list size 6 != 2 * 4
    pq.write_table(table.replace_schema_metadata(meta), bad := tmp_path / "bad.parquet")
    with pytest.raises(ShardError, match=rf"{bad}.*'slots'"):
        read_slot_shard(bad)
    with pytest.raises(ValueError, match="float32"):
        write_slot_shard(path, ["a"], [0], np.zeros((1, 2, 3)), encoder_hash="h", encoder_config={})


def test_load_slot_episodes_across_shards_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    s = rng.standard_normal((4, 2, 2)).astype(np.float32)

    def write(name, ids, frames, rows, enc="h"):
        write_slot_shard(tmp_path / name, ids, frames, s[rows], encoder_hash=enc, encoder_config={})
        return tmp_path / name

    p1 = write("p1.parquet", ["e", "e"], [2, 0], [2, 0])
    p2 = write("p2.parquet", ["e", "e"], [1, 3], [1, 3])
    np.testing.assert_array_equal(load_slot_episodes([p1, p2])["e"], s)
    gap = write("gap.parquet", ["e"], [5], [3])
    with pytest.raises(ShardError, match=r"episode 'e'.*missing \[4\]"):
        load_slot_episodes([p1, p2, gap])
    dup = write("dup.parquet", ["e"], [1], [1])
    with pytest.raises(ShardError, match=r"episode 'e'.*duplicate.*\[1\]"):
        load_slot_episodes([p1, p2, dup])
    with pytest.raises(ShardError, match="differs"):
        load_slot_episodes([p1, write("other.parquet", ["f"], [0], [0], enc="g")])


def test_split_is_stable_and_roughly_proportional():
    # Pinned: a change here silently moves episodes between train and val.
    assert split_unit("collide-s0-000000") == pytest.approx(0.07628296005326388)
    assert [split_of(f"collide-s0-{i:06d}") for i in (0, 1, 21)] == ["val", "train", "val"]
    parts = split_ids([f"x-{i}" for i in range(4000)], val_fraction=0.25)
    assert abs(len(parts["val"]) / 4000 - 0.25) < 0.03
    assert split_of("anything", 0.0) == "train" and split_of("anything", 1.0) == "val"
    with pytest.raises(ValueError, match="val_fraction"):
        split_of("x", 1.5)
