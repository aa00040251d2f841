"""Slot extraction: Ray Data output equals the single-process reference, resume, sizing, errors.

The encoder here is a fake with the ``SlotEncoder`` interface (``cjepa.encoders`` is not needed):
slots are quadrant colour means propagated through time, so splitting an episode across
encoder calls would change the result.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray.cloudpickle

from cjepa.data.shards import (
    ShardError,
    load_slot_episodes,
    read_episode_shard,
    read_slot_shard,
    write_episode_shard,
)
from cjepa.data.splits import list_shards
from cjepa.distributed.extract import (
    EncoderInfo,
    ExtractionFailed,
    encoder_factory,
    extract_local,
    extract_ray,
    plan_actors,
)

# Ray workers cannot import this test module (pytest put its directory on sys.path, the
# workers' path differs): ship the fake encoders by value instead.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Ray Data's own DataContext sets deprecated fields when it is first created.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

TIMEOUT_S = 90  # one extraction takes a few seconds; a deadlocked pool never ends


class FakeEncoder:
    """(T, H, W, 3) frames -> (T, 4, 3) slots: quadrant means, slots_t += gain * slots_{t-1}."""

    n_slots = 4
    slot_dim = 3

    def __init__(self, device: str = "cpu", *, gain: float = 0.5, fail_on: tuple = ()) -> None:
        self.device = device
        self.gain = gain
        self.fail_on = set(fail_on)  # injected failures are not part of the encoder's identity
        self.config = {"name": "fake", "gain": gain, "n_slots": 4, "slot_dim": 3}
        self.hash = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()

    def encode_episodes(self, episodes):
        out = []
        for ep in episodes:
            if ep.episode_id in self.fail_on:
                raise RuntimeError(f"injected failure on {ep.episode_id}")
            x = ep.frames.astype(np.float32) / 255.0  # (T, H, W, 3)
            t, h, w, _ = x.shape
            quads = x.reshape(t, 2, h // 2, 2, w // 2, 3).mean(axis=(2, 4)).reshape(t, 4, 3)
            slots = np.empty_like(quads)  # (T, N, D)
            prev = np.zeros_like(quads[0])
            for i in range(t):
                prev = slots[i] = quads[i] + self.gain * prev
            out.append(slots)
        return out


def direct_slots(episode_dir: Path) -> dict[str, np.ndarray]:
    """The obvious reference: every episode encoded alone."""
    enc = FakeEncoder()
    return {
        ep.episode_id: enc.encode_episodes([ep])[0]
        for path in list_shards(episode_dir)
        for ep in read_episode_shard(path)
    }


def assert_same_shards(a: Path, b: Path) -> None:
    """Same shard files, same rows in the same order, allclose slots."""
    names = [p.name for p in list_shards(a)]
    assert names == [p.name for p in list_shards(b)]
    for name in names:
        sa, sb = read_slot_shard(a / name), read_slot_shard(b / name)
        assert sa.episode_ids == sb.episode_ids
        np.testing.assert_array_equal(sa.frames, sb.frames)
        np.testing.assert_allclose(sa.slots, sb.slots, rtol=1e-6, atol=1e-6)
        assert (sa.encoder_hash, sa.encoder_config) == (sb.encoder_hash, sb.encoder_config)


def with_timeout(fn, timeout: float = TIMEOUT_S):
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # re-raised in the test thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"extraction did not finish in {timeout} s (deadlock?)"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture(scope="module")
def local_ref(episode_dir, tmp_path_factory):
    """Single-process extraction of the session's episodes (batch_size 1)."""
    return extract_local(episode_dir, FakeEncoder, tmp_path_factory.mktemp("ref"), batch_size=1)


# --------------------------------------------------------------------------- no Ray


def test_local_matches_direct_encoding_and_layout(episode_dir, local_ref, tmp_path):
    info = EncoderInfo.of(FakeEncoder())
    assert local_ref.out.name == info.hash[:12]
    assert local_ref.written == [p.name for p in list_shards(episode_dir)]  # same stems
    got = load_slot_episodes(list_shards(local_ref.out), encoder_hash=info.hash)
    want = direct_slots(episode_dir)
    assert sorted(got) == sorted(want)
    for eid, slots in want.items():
        np.testing.assert_allclose(got[eid], slots, rtol=1e-6)
    manifest = json.loads((local_ref.out / "manifest.json").read_text())
    assert manifest["encoder_hash"] == info.hash
    assert (manifest["n_slots"], manifest["slot_dim"]) == (4, 3)
    assert manifest["total_episodes"] == len(want) == local_ref.episodes
    assert manifest["total_frames"] == sum(len(s) for s in want.values()) == local_ref.frames
    # Whole episodes per encoder call, whatever the batch size.
    other = extract_local(episode_dir, FakeEncoder, tmp_path, batch_size=3)
    assert_same_shards(local_ref.out, other.out)


def test_rerun_is_a_noop_and_bad_shards_are_redone(episode_dir, local_ref, tmp_path):
    out = tmp_path / "out"
    first = extract_local(episode_dir, FakeEncoder, out)
    names = first.written
    stamps = {p.name: p.stat().st_mtime_ns for p in first.out.iterdir()}
    again = extract_local(episode_dir, FakeEncoder, out)
    assert (again.kept, again.written, again.rewritten) == (names, [], [])
    assert again.frames_extracted == 0
    assert {p.name: p.stat().st_mtime_ns for p in first.out.iterdir()} == stamps
    # Corrupt, truncated, and made-from-another-shard outputs are all redone.
    (first.out / names[0]).write_bytes(b"not parquet")
    data = (first.out / names[1]).read_bytes()
    (first.out / names[1]).write_bytes(data[: len(data) // 2])
    shutil.copyfile(local_ref.out / names[0], first.out / names[2])  # wrong source
    redo = extract_local(episode_dir, FakeEncoder, out)
    assert redo.rewritten == names and redo.written == [] and redo.kept == []
    assert_same_shards(local_ref.out, redo.out)


def test_changed_source_shard_is_redone(episode_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(episode_dir, data)
    names = extract_local(data, FakeEncoder, tmp_path / "out").written
    # Same episode ids and lengths, made differently (e.g. other world options): stale slots.
    eps = read_episode_shard(data / names[1])
    write_episode_shard(data / names[1], eps, metadata={"world_kwargs": {"size": 99}})
    redo = extract_local(data, FakeEncoder, tmp_path / "out")
    assert redo.rewritten == [names[1]] and redo.kept == [names[0], names[2]]
    assert read_slot_shard(redo.out / names[1]).metadata["source_metadata"]["world_kwargs"] == {
        "size": 99
    }


def test_slots_of_episodes_no_longer_in_the_data_are_refused(episode_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(episode_dir, data)
    first = extract_local(data, FakeEncoder, tmp_path / "out")
    gone = first.written[-1]
    (data / gone).unlink()  # the dataset shrank after extraction
    before = {p.name: p.read_bytes() for p in first.out.iterdir()}
    with pytest.raises(ValueError, match=rf"slot shards with no episode shard.*{gone}"):
        extract_local(data, FakeEncoder, tmp_path / "out")
    assert {p.name: p.read_bytes() for p in first.out.iterdir()} == before


def test_other_encoder_gets_its_own_directory(episode_dir, local_ref, tmp_path):
    other = extract_local(episode_dir, functools.partial(FakeEncoder, gain=0.25), tmp_path)
    assert other.out.name != local_ref.out.name
    with pytest.raises(ShardError, match="encoder_hash"):
        load_slot_episodes([*list_shards(local_ref.out), *list_shards(other.out)])


@pytest.mark.parametrize("extract", [extract_local, extract_ray], ids=["local", "ray"])
def test_bad_inputs_name_what_is_wrong(extract, episode_dir, tmp_path):
    # All of these fail before Ray starts or any encoder runs.
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        extract(missing, FakeEncoder, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty.*no episode shards"):
        extract(empty, FakeEncoder, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown encoder spec 'slotatt'"):
        extract(episode_dir, "slotatt", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"ckpt/enc\.pt"):
        extract(episode_dir, str(tmp_path / "ckpt/enc.pt"), tmp_path / "out")
    with pytest.raises(ValueError, match="batch_size"):
        extract(episode_dir, FakeEncoder, tmp_path / "out", batch_size=0)
    assert not (tmp_path / "out").exists()


def test_script_reports_bad_inputs(episode_dir, tmp_path):
    path = Path(__file__).resolve().parents[2] / "experiments" / "extract_slots.py"
    spec = importlib.util.spec_from_file_location("extract_slots_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing"):
        script.main(["--data", str(tmp_path / "missing"), "--encoder", "oracle", "--out", out])
    with pytest.raises(ValueError, match="unknown encoder spec 'bogus'"):
        script.main(["--data", str(episode_dir), "--encoder", "bogus", "--out", out, "--no-ray"])


def test_encoder_output_is_checked(episode_dir, tmp_path):
    class Wrong(FakeEncoder):
        def encode_episodes(self, episodes):
            return [s[:-1] for s in super().encode_episodes(episodes)]  # drops a frame

    with pytest.raises(ValueError, match=r"toy-0000.*want \(T="):
        extract_local(episode_dir, Wrong, tmp_path)


def test_spec_strings_resolve_lazily(tmp_path):
    ckpt = tmp_path / "enc.pt"
    ckpt.write_bytes(b"")
    assert encoder_factory("oracle").spec == "oracle"
    assert encoder_factory("oracle:collide").spec == "oracle:collide"
    assert encoder_factory(str(ckpt)).spec == str(ckpt.resolve())
    assert encoder_factory(FakeEncoder) is FakeEncoder


def test_plan_actors_sizes_from_the_cluster():
    two = {"CPU": 2.0}
    assert plan_actors(two, 10) == (p := plan_actors(two, 10, actors=1))
    assert (p.actors, p.cpus_per_actor, p.gpus_per_actor) == (1, 1.0, 0.0)
    p = plan_actors(two, 10, actors=2)
    assert (p.actors, p.cpus_per_actor) == (2, 0.75)  # 0.5 CPU left for Ray Data's tasks
    assert plan_actors(two, 1, actors=2).actors == 1  # never more actors than shards
    p = plan_actors({"CPU": 16.0, "GPU": 4.0}, 100)
    assert (p.actors, p.cpus_per_actor, p.gpus_per_actor) == (4, 1.0, 1.0)
    p = plan_actors({"CPU": 16.0, "GPU": 1.0}, 100, gpus_per_actor=0.5)
    assert (p.actors, p.gpus_per_actor) == (2, 0.5)
    assert plan_actors({"CPU": 16.0}, 100).actors == 15
    with pytest.raises(ValueError, match="GPU"):
        plan_actors(two, 10, gpus_per_actor=1)
    with pytest.raises(ValueError, match="GPU"):
        plan_actors({"CPU": 8.0, "GPU": 2.0}, 10, actors=3)
    with pytest.raises(ValueError, match="deadlock"):
        plan_actors(two, 10, actors=2, cpus_per_actor=1)
    with pytest.raises(ValueError, match="actors must be"):
        plan_actors(two, 10, actors=0)


# --------------------------------------------------------------------------- Ray


@pytest.mark.parametrize("actors", [None, 2], ids=["rule", "two-actors"])
def test_ray_equals_local_on_two_cpus(ray_session, episode_dir, local_ref, tmp_path, actors):
    # actors=None: sized by plan_actors on this 2-CPU Ray (1 actor); 2 actors share 1.5 CPUs.
    report = with_timeout(
        lambda: extract_ray(episode_dir, FakeEncoder, tmp_path, batch_size=2, actors=actors)
    )
    assert report.written == local_ref.written and report.kept == []
    assert report.frames_extracted == local_ref.frames
    # Each shard names the node that extracted it: here, the one node of this Ray.
    assert set(report.shard_nodes) == set(report.written)
    assert set(report.shard_nodes.values()) == {ray_session.get_runtime_context().get_node_id()}
    assert ray_session.data.DataContext.get_current().wait_for_min_actors_s == -1  # untouched
    assert_same_shards(local_ref.out, report.out)
    assert (report.out / "manifest.json").read_bytes() == (
        local_ref.out / "manifest.json"
    ).read_bytes()


def test_ray_resumes_after_a_failed_run(ray_session, episode_dir, local_ref, tmp_path):
    names = local_ref.written
    last = read_episode_shard(episode_dir / names[2])[-1].episode_id
    failing = functools.partial(FakeEncoder, fail_on=(last,))
    with pytest.raises(ExtractionFailed, match=f"RuntimeError: injected failure on {last}") as err:
        with_timeout(lambda: extract_ray(episode_dir, failing, tmp_path, actors=1))
    assert re.search(r"after [0-2] of 3 shard\(s\)", str(err.value)) and "\n" not in str(err.value)
    # The error is still referenced (err): the failed pool's actor must not keep its CPU.
    deadline = time.time() + 20
    while ray_session.available_resources().get("CPU") != 2.0 and time.time() < deadline:
        time.sleep(0.2)
    assert ray_session.available_resources().get("CPU") == 2.0
    out = tmp_path / local_ref.out.name
    assert not (out / names[2]).exists()  # atomic: nothing under the final name
    assert not (out / "manifest.json").exists()  # only a complete run writes it
    (out / names[0]).write_bytes(b"garbage")  # and a corrupt shard from "earlier"
    done_before = {p.name for p in list_shards(out)} - {names[0]}
    report = with_timeout(lambda: extract_ray(episode_dir, FakeEncoder, tmp_path))
    assert report.rewritten == [names[0]]
    assert set(report.kept) == done_before
    assert set(report.written) == set(names) - done_before - {names[0]}
    assert_same_shards(local_ref.out, report.out)
    episodes = load_slot_episodes(list_shards(report.out))  # no duplicates, no gaps
    assert sorted(episodes) == sorted(direct_slots(episode_dir))
