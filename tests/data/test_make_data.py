"""generate_shards / make_data.py on a tiny fake world: layout, idempotence, determinism."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cjepa.data import generate
from cjepa.data.episode import EpisodeData
from cjepa.data.generate import MANIFEST, generate_shards, plan_shards
from cjepa.data.shards import read_episode_shard
from cjepa.worlds import WORLDS, WorldSpec

ROOT = Path(__file__).resolve().parents[2]


def fake_make_episode(episode_index: int, *, seed: int, frames: int = 3, size: int = 4):
    """A deterministic toy world: (T, size, size, 3) frames, (T, 2, 3) states, (T, 2) actions.

    Module-level so spawned worker processes can import it by reference.
    """
    rng = np.random.default_rng([seed, episode_index])  # per-episode stream: order-independent
    return EpisodeData(
        episode_id=f"fake-s{seed}-{episode_index:06d}",
        world="fake",
        frames=rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
        states=rng.standard_normal((frames, 2, 3)).astype(np.float32),
        actions=rng.standard_normal((frames, 2)).astype(np.float32),
        masks=rng.integers(0, 3, (frames, size, size)).astype(np.uint8),
        questions=None if episode_index % 2 else [{"q": "how many?", "a": 2}],
        info={"index": episode_index},
        meta={"seed": seed},
    )


def broken_make_episode(episode_index: int, *, seed: int) -> EpisodeData:
    """Fails on episode 5, as a buggy world would, after the others succeeded."""
    if episode_index == 5:
        raise RuntimeError("world crashed on episode 5")
    ep = fake_make_episode(episode_index, seed=seed)
    return dataclasses.replace(ep, world="broken", episode_id=f"broken-{episode_index}")


@pytest.fixture(autouse=True)
def fake_world(monkeypatch):
    monkeypatch.setitem(WORLDS, "fake", WorldSpec("fake", fake_make_episode))
    monkeypatch.setitem(WORLDS, "broken", WorldSpec("broken", broken_make_episode))


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """name -> (bytes, inode, mtime): same inode and mtime means the file was not rewritten."""
    return {
        p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
    }


def run(
    out: Path, workers: int = 1, episodes: int = 10, shard_size: int = 4, **kw
) -> generate.GenerateReport:
    return generate_shards("fake", episodes, 7, out, shard_size=shard_size, workers=workers, **kw)


def test_plan_covers_every_index_once():
    assert plan_shards(10, 4) == [(0, 3), (4, 7), (8, 9)]
    assert plan_shards(4, 4) == [(0, 3)]
    with pytest.raises(ValueError):
        plan_shards(0, 4)


def test_layout_manifest_and_content(tmp_path):
    report = run(tmp_path, world_kwargs={"frames": 2})
    names = ["fake-s7-000000-000003.parquet", "fake-s7-000004-000007.parquet"]
    names.append("fake-s7-000008-000009.parquet")
    assert report.written == names and not report.kept and not report.rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, MANIFEST])
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert (manifest["world"], manifest["seed"], manifest["schema_version"]) == ("fake", 7, 1)
    assert manifest["args"] == {"episodes": 10, "shard_size": 4, "world_kwargs": {"frames": 2}}
    assert [(s["file"], s["episodes"]) for s in manifest["shards"]] == list(
        zip(names, [4, 4, 2], strict=True)
    )
    episodes = read_episode_shard(tmp_path / names[2])
    want = fake_make_episode(9, seed=7, frames=2)
    assert episodes[1].episode_id == want.episode_id
    np.testing.assert_array_equal(episodes[1].frames, want.frames)


def test_idempotent_rerun_delete_and_corrupt(tmp_path, caplog):
    run(tmp_path)
    before = snapshot(tmp_path)
    report = run(tmp_path)
    assert report.written == report.rewritten == [] and len(report.kept) == 3
    assert snapshot(tmp_path) == before  # not even the manifest is touched

    missing, corrupt = "fake-s7-000004-000007.parquet", "fake-s7-000008-000009.parquet"
    (tmp_path / missing).unlink()
    path = tmp_path / corrupt
    path.write_bytes(path.read_bytes()[:100])  # a truncated shard from some earlier crash
    report = run(tmp_path)
    assert report.written == [missing] and report.rewritten == [corrupt]
    assert corrupt in caplog.text and "corrupt" in caplog.text
    after = snapshot(tmp_path)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    assert after["fake-s7-000000-000003.parquet"] == before["fake-s7-000000-000003.parquet"]


def test_parallel_equals_serial_byte_for_byte(tmp_path):
    run(tmp_path / "one", workers=1)
    report = run(tmp_path / "two", workers=2)
    assert len(report.written) == 3
    one, two = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert {k: v[0] for k, v in one.items()} == {k: v[0] for k, v in two.items()}


def test_worker_error_propagates_and_leaves_no_partial_shard(tmp_path):
    with pytest.raises(RuntimeError, match="episode 5"):
        generate_shards("broken", 10, 0, tmp_path, shard_size=4, workers=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "broken-s0-000004-000007.parquet" not in names and MANIFEST not in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_refuses_mismatched_reruns_and_options(tmp_path):
    run(tmp_path, world_kwargs={"frames": 2})
    with pytest.raises(ValueError, match="made with world options"):
        run(tmp_path, world_kwargs={"frames": 3})
    (tmp_path / MANIFEST).unlink()  # without a manifest each shard's own metadata still guards
    with pytest.raises(ValueError, match="was made with"):
        run(tmp_path, world_kwargs={"frames": 3})
    (tmp_path / MANIFEST).write_text(json.dumps({"world": "other", "seed": 7}))
    with pytest.raises(ValueError, match="already holds"):
        generate_shards("fake", 4, 8, tmp_path, shard_size=4, workers=1)
    with pytest.raises(ValueError, match=r"no option\(s\) \['policy'\]"):
        run(tmp_path / "x", world_kwargs={"policy": "random"})
    with pytest.raises(ValueError, match=r"unknown world 'nope'; known: \[.*'collide'.*'fake'"):
        generate_shards("nope", 4, 0, tmp_path / "y")


def test_another_plan_into_the_same_directory_is_refused(tmp_path):
    run(tmp_path, episodes=10)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # shard 8..9 would no longer be part of the plan, yet readers take every shard
    with pytest.raises(ValueError, match=r"shards of another plan \(fake-s7-000008-000009"):
        run(tmp_path, episodes=8)
    with pytest.raises(ValueError, match="other --episodes or --shard-size"):
        run(tmp_path, episodes=10, shard_size=3)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["total_episodes"] == 10


def load_script():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "experiments/make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_data_script(tmp_path, capsys):
    make_data = load_script()
    argv = ["--world", "fake", "--episodes", "5", "--seed", "1", "--out", str(tmp_path)]
    make_data.main([*argv, "--shard-size", "2", "--workers", "1", "--frames", "2", "--size", "3"])
    assert "3 written, 0 rewritten, 0 kept" in capsys.readouterr().out
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["args"]["world_kwargs"] == {"frames": 2, "size": 3}
    assert read_episode_shard(tmp_path / "fake-s1-000004-000004.parquet")[0].frames.shape == (
        2, 3, 3, 3,
    )  # fmt: skip


@pytest.mark.slow
def test_real_collide_smoke(tmp_path):
    pytest.importorskip("cjepa.worlds.collide")
    report = generate_shards(
        "collide", 2, 0, tmp_path, shard_size=2, workers=1, world_kwargs={"frames": 8}
    )
    (episode, _) = read_episode_shard(tmp_path / report.written[0])
    assert episode.world == "collide" and episode.n_frames == 8
