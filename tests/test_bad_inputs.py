# ruff: noqa: E501  (the case tables read best one case per line)
"""Bad input, one parametrized test per class (issue I): every case must be refused with a
message that names the culprit (field, file, shape, episode and frame, or URI), and must leave
every file under the test's directory as it was (``snapshot`` before == after; the tests run
with that directory as the working directory, so a stray relative write is caught too).

docs/reliability.md lists every case with what the user sees.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cjepa.config import load_config
from cjepa.data.episode import EpisodeData
from cjepa.data.generate import generate_shards
from cjepa.data.shards import (
    ShardError,
    load_slot_episodes,
    read_episode_shard,
    read_slot_shard,
    write_episode_shard,
    write_slot_shard,
)
from cjepa.data.sources import load_windows
from cjepa.data.splits import split_of
from cjepa.sweeps import grid_trials, load_sweep
from cjepa.train import CHECKPOINT_NAME, build_predictor, fit, load_checkpoint, save_checkpoint
from cjepa.worlds import WORLDS, WorldSpec

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` -> its bytes (an empty output folder may appear: no file)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def refused(root: Path, call: Callable[[], object], error, pattern: str) -> str:
    """``call()`` raises ``error`` matching ``pattern`` and changes nothing under ``root``."""
    before = snapshot(root)
    with pytest.raises(error, match=pattern) as err:
        call()
    assert snapshot(root) == before, "a refused input changed files on disk"
    return str(err.value)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative outputs (runs/..., mlruns.db) would land here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def smoke_dir(tmp_path: Path) -> Path:
    """A copy of the smoke preset (synthetic data, N = 4 slots) in ``tmp_path/configs``."""
    d = tmp_path / "configs"
    d.mkdir()
    (d / "smoke.yaml").write_text((CONFIGS / "smoke.yaml").read_text())
    (d / "sweep.yaml").write_text((CONFIGS / "sweeps" / "tiny.yaml").read_text())
    (d / "ablate.yaml").write_text(f"base: {CONFIGS / 'ablate' / 'tiny.yaml'}\nname: mine\n")
    return d


# --------------------------------------------------------------------------- config values


CONFIG_CASES = {
    # ExperimentConfig: wrong type, out of range, unknown key, unknown enum value
    "experiment-wrong-type-int": ("experiment", ["train.steps=ten"], r"train\.steps must be an integer, got 'ten'"),
    "experiment-wrong-type-bool": ("experiment", ["data.synthetic.with_agent=maybe"], r"data\.synthetic\.with_agent must be true or false"),
    "experiment-wrong-type-section": ("experiment", ["predictor=4"], r"predictor must be a mapping, got 4"),
    "experiment-budget-above-n": ("experiment", ["masking.budget=9"], r"masking\.budget must be <= the number of slots 4, got 9"),
    "experiment-dropout-range": ("experiment", ["predictor.dropout=1.5"], r"predictor\.dropout must be in \[0, 1\), got 1\.5"),
    "experiment-lr-zero": ("experiment", ["optim.lr=0"], r"optim\.lr must be > 0, got 0\.0"),
    "experiment-unknown-key": ("experiment", ["train.stepz=10"], r"unknown field\(s\) \['stepz'\] in train"),
    "experiment-unknown-enum": ("experiment", ["masking.unit=blob"], r"masking\.unit must be one of .*got 'blob'"),
    "experiment-unknown-variant": ("experiment", ["variant=offical"], r"variant must be one of \['paper', 'official'\], got 'offical'"),
    # SweepSpec
    "sweep-unknown-enum": ("sweep", ["trainer=fast"], r"sweep\.yaml: sweep\.trainer must be one of .*got 'fast'"),
    "sweep-out-of-range": ("sweep", ["num_samples=0"], r"sweep\.yaml: sweep\.num_samples must be >= 1, got 0"),
    "sweep-wrong-type": ("sweep", ["seeds=zero"], r"sweep\.yaml: sweep\.seeds must be a list, got 'zero'"),
    # AblationConfig
    "ablation-out-of-range": ("ablation", ["extract_batch_size=0"], r"ablate\.yaml: extract_batch_size must be >= 1, got 0"),
    "ablation-unknown-world": ("ablation", ["world_data.mars={episodes: 4}"], r"ablate\.yaml: world must be one of \['clevrer', 'collide', 'pusht'\], got 'mars'"),
    "ablation-unknown-key": ("ablation", ["encodr=oracle"], r"ablate\.yaml: unknown field\(s\) \['encodr'\]"),
    "ablation-wrong-type": ("ablation", ["controls=sometimes"], r"ablate\.yaml: controls must be true or false"),
}  # fmt: skip


@pytest.mark.parametrize(("kind", "overrides", "pattern"), CONFIG_CASES.values(), ids=CONFIG_CASES)
def test_bad_config_value_names_the_field(tmp_path, kind, overrides, pattern):
    from cjepa.distributed.pipeline import load_ablation

    d = smoke_dir(tmp_path)
    load = {
        "experiment": lambda: load_config(d / "smoke.yaml", overrides),
        "sweep": lambda: load_sweep(d / "sweep.yaml", overrides),
        "ablation": lambda: load_ablation(d / "ablate.yaml", overrides),
    }[kind]
    message = refused(tmp_path, load, ValueError, pattern)
    assert "\n" not in message


# --------------------------------------------------------------------------- YAML syntax


def _broken_yaml(d: Path, target: str) -> Callable[[], object]:
    from cjepa.distributed.pipeline import load_ablation

    unclosed = "train: {steps: 10\nmasking: [\n"
    if target == "experiment":
        (d / "bad.yaml").write_text(unclosed)
        return lambda: load_config(d / "bad.yaml")
    if target == "experiment-tab":
        (d / "bad.yaml").write_text("train:\n\tsteps: 10\n")
        return lambda: load_config(d / "bad.yaml")
    if target == "base-file":
        (d / "bad.yaml").write_text(unclosed)
        (d / "child.yaml").write_text("base: bad.yaml\nname: child\n")
        return lambda: load_config(d / "child.yaml")
    if target == "sweep":
        (d / "bad.yaml").write_text("mode: grid\ngrid: {masking.budget: [0, 1\n")
        return lambda: load_sweep(d / "bad.yaml")
    if target == "ablation":
        (d / "bad.yaml").write_text("name: x\nworld_data: {collide: {episodes: 4}\n")
        return lambda: load_ablation(d / "bad.yaml")
    if target == "override":
        return lambda: load_config(d / "smoke.yaml", ["masking.budget=[0,"])
    if target == "sweep-override":
        return lambda: load_sweep(d / "sweep.yaml", ["grid.masking.budget=[0,"])
    raise AssertionError(target)


YAML_CASES = {
    "experiment": r"bad\.yaml: YAML syntax error at line 2, column 8: expected ',' or '\}', but got ':'",
    "experiment-tab": r"bad\.yaml: YAML syntax error at line 2, column 1: found character '\\t'",
    "base-file": r"bad\.yaml: YAML syntax error at line 2, column 8: expected ',' or '\}', but got ':'",
    "sweep": r"bad\.yaml: YAML syntax error at line 3, column 1",
    "ablation": r"bad\.yaml: YAML syntax error at line 3, column 1",
    "override": r"override 'masking\.budget=\[0,': YAML syntax error at line 1",
    "sweep-override": r"sweep override 'grid\.masking\.budget=\[0,': YAML syntax error at line 1",
}


@pytest.mark.parametrize(("target", "pattern"), YAML_CASES.items(), ids=YAML_CASES)
def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path, target, pattern):
    load = _broken_yaml(smoke_dir(tmp_path), target)
    message = refused(tmp_path, load, ValueError, pattern)
    assert "\n" not in message and "<unicode string>" not in message


# --------------------------------------------------------------------------- sweep specs


SWEEP_CASES = {
    "unknown-key": ("gird={masking.budget: [0]}", r"sweep\.yaml: unknown field\(s\) \['gird'\] in sweep"),
    "empty-grid-list": ("grid.masking.budget=[]", r"sweep\.yaml: sweep\.grid\.masking\.budget must be a non-empty list of values, got \[\]"),
    "budget-above-n": ("grid.masking.budget=[0, 9]", r"masking\.budget must be <= the number of slots 4, got 9"),
    "grid-key-not-a-field": ("grid.masking.bogus=[1]", r"unknown field\(s\) \['bogus'\] in masking"),
    "grid-value-bad-enum": ("grid.masking.unit=[object, blob]", r"masking\.unit must be one of .*got 'blob'"),
    "optuna-without-space": ("mode=optuna", r"sweep\.yaml: sweep\.space must be non-empty in optuna mode"),
    "space-unknown-distribution": ("space.optim.lr={type: normal, low: 0, high: 1}", r"sweep\.yaml: sweep\.space\.optim\.lr\.type must be one of"),
    "space-missing-bound": ("space.optim.lr={type: loguniform, low: 0.001}", r"sweep\.yaml: sweep\.space\.optim\.lr must be \{type: loguniform, high, low\}"),
    "block-unknown-key": ("blocks=[{grid: {masking.budget: [1]}, seed: [1]}]", r"sweep\.yaml: sweep\.blocks\[0\] must be"),
    "in-trial-with-workers": ("trainer=in_trial", r"sweep\.yaml: sweep\.workers_per_trial must be 1 with sweep\.trainer=in_trial"),
}  # fmt: skip


@pytest.mark.parametrize(("override", "pattern"), SWEEP_CASES.values(), ids=SWEEP_CASES)
def test_bad_sweep_spec_is_refused_before_any_trial(tmp_path, override, pattern):
    d = smoke_dir(tmp_path)
    base = load_config(d / "smoke.yaml")
    extra = ["workers_per_trial=2"] if override == "trainer=in_trial" else []

    def expand():
        spec = load_sweep(d / "sweep.yaml", [override, *extra])
        return grid_trials(spec, base)  # what run_sweep / check_ablation call before Ray

    refused(tmp_path, expand, ValueError, pattern)


# --------------------------------------------------------------------------- episode shards


def episode(eid: str, t: int = 4, seed: int = 0) -> EpisodeData:
    rng = np.random.default_rng(seed)
    return EpisodeData(
        episode_id=eid,
        world="toy",
        frames=rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8),
        states=rng.standard_normal((t, 2, 3)).astype(np.float32),
    )


def episode_dir(root: Path, shards: int = 2, per_shard: int = 2) -> Path:
    d = root / "episodes"
    d.mkdir()
    for s in range(shards):
        ids = [f"toy-{s * per_shard + i:04d}" for i in range(per_shard)]
        write_episode_shard(d / f"toy-{s}.parquet", [episode(e, seed=i) for i, e in enumerate(ids)])
    return d


class TinyEncoder:
    """(T, 8, 8, 3) frames -> (T, 2, 3) slots; ``nan_in`` names an episode it emits NaN for."""

    n_slots, slot_dim = 2, 3
    hash = "tiny-encoder-hash"

    def __init__(self, device: str = "cpu", nan_in: str | None = None) -> None:
        self.config = {"name": "tiny"}
        self.nan_in = nan_in

    def encode_episodes(self, episodes):
        out = []
        for ep in episodes:
            s = ep.frames.reshape(len(ep.frames), -1)[:, :6].reshape(-1, 2, 3) / 255.0
            s = s.astype(np.float32)  # (T, N, D)
            if ep.episode_id == self.nan_in:
                s[1, 0, 2] = np.nan
            out.append(s)
        return out


def _rewrite_meta(src: Path, dst: Path, **meta: bytes) -> None:
    table = pq.read_table(src)
    new = {**table.schema.metadata, **{k.encode(): v for k, v in meta.items()}}
    pq.write_table(table.replace_schema_metadata(new), dst)


def _break_episode_shard(path: Path, defect: str) -> None:
    data = path.read_bytes()
    if defect == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif defect == "not-parquet":
        path.write_text("episode_id,frames\ntoy-0000,...\n")
    elif defect == "empty-file":
        path.write_bytes(b"")
    elif defect == "flipped-byte":  # silent corruption inside the frames page: CRC mismatch
        chunk = pq.ParquetFile(path).metadata.row_group(0).column(5)  # the frames column
        assert chunk.path_in_schema == "frames"
        # the page header (with min/max statistics of the column) comes first: flip data bytes
        i = chunk.data_page_offset + chunk.total_compressed_size * 3 // 4
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif defect == "schema-version-2":
        _rewrite_meta(path, path, **{"cjepa.schema_version": b"2"})
    elif defect == "wrong-kind":
        write_slot_shard(path, ["toy-0000"], [0], np.zeros((1, 2, 3), np.float32),
                         encoder_hash="h", encoder_config={})  # fmt: skip
    elif defect == "column-missing":
        table = pq.read_table(path)
        meta = table.schema.metadata
        pq.write_table(table.drop_columns(["states"]).replace_schema_metadata(meta), path)
    else:
        raise AssertionError(defect)


EPISODE_SHARD_CASES = {
    "truncated": "not a readable Parquet shard",
    "not-parquet": "not a readable Parquet shard",
    "empty-file": "not a readable Parquet shard",
    "flipped-byte": r"row group 0 is unreadable .*CRC",
    "schema-version-2": r"metadata cjepa\.schema_version is '2', this reader understands 1",
    "wrong-kind": r"metadata cjepa\.kind is 'slots', want episodes",
    "column-missing": r"columns differ from the schema \(missing \['states'\]",
}


@pytest.mark.parametrize(
    ("defect", "pattern"), EPISODE_SHARD_CASES.items(), ids=EPISODE_SHARD_CASES
)
def test_bad_episode_shard_names_the_file(tmp_path, defect, pattern):
    from cjepa.distributed.extract import extract_local

    data = episode_dir(tmp_path, shards=1)
    bad = data / "toy-0.parquet"
    _break_episode_shard(bad, defect)
    named = rf"{bad}.*{pattern}"
    refused(tmp_path, lambda: read_episode_shard(bad), ShardError, named)
    # the consumer (slot extraction) refuses it too and writes no slot shard; a slot shard is not
    # an episode shard, so that folder holds none
    consumer = rf"{data}' holds no episode shards" if defect == "wrong-kind" else named
    extract = lambda: extract_local(data, TinyEncoder, tmp_path / "out")  # noqa: E731
    refused(tmp_path, extract, ValueError, consumer)


# --------------------------------------------------------------------------- slot shards


EIDS = [f"collide-s0-{i:06d}" for i in range(10)]


def slot_rows(eids, t: int = 6, n: int = 3, d: int = 4, seed: int = 0):
    """(episode_ids, frames, slots (R, N, D)) of whole episodes."""
    rng = np.random.default_rng(seed)
    ids = [e for e in eids for _ in range(t)]
    frames = [f for _ in eids for f in range(t)]
    return ids, frames, rng.standard_normal((len(ids), n, d)).astype(np.float32)


def write_slots(path: Path, eids, *, n: int = 3, d: int = 4, enc: str = "h", check=True) -> Path:
    import cjepa.data.shards as shards

    ids, frames, s = slot_rows(eids, n=n, d=d)
    if not check:  # a writer without the finiteness check (an old version, another tool)
        orig, shards._check_finite = shards._check_finite, lambda *a: None
    try:
        if not check:
            s[7, 1, 2] = np.nan  # episode eids[1], frame 1
        write_slot_shard(path, ids, frames, s, encoder_hash=enc, encoder_config={})
    finally:
        if not check:
            shards._check_finite = orig
    return path


def slot_config(slot_dir: Path, *extra: str):
    return load_config(
        None,
        [
            "data.source=slots",
            "data.world=collide",
            f"data.slot_dir={slot_dir}",
            "data.n_slots=3",
            "data.slot_dim=4",
            "data.history=2",
            "data.n_future=1",
            "data.val_fraction=0.3",
            "masking.budget=1",
            *extra,
        ],
    ).data


def _break_slot_shard(path: Path, defect: str) -> None:
    if defect == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif defect == "schema-version-2":
        _rewrite_meta(path, path, **{"cjepa.schema_version": b"2"})
    elif defect == "kind-mislabelled":
        write_episode_shard(path, [episode(EIDS[0])])
        _rewrite_meta(path, path, **{"cjepa.kind": b"slots"})  # claims slots, holds episodes
    elif defect == "n-slots-disagrees":
        _rewrite_meta(path, path, **{"cjepa.n_slots": b"5"})  # list size 12 != 5 * 4
    elif defect == "n-slots-not-a-number":
        _rewrite_meta(path, path, **{"cjepa.n_slots": b"three"})
    elif defect == "no-encoder-hash":
        _rewrite_meta(path, path, **{"cjepa.encoder_hash": b""})
    else:
        raise AssertionError(defect)


SLOT_SHARD_CASES = {
    "truncated": "not a readable Parquet shard",
    "schema-version-2": r"metadata cjepa\.schema_version is '2', this reader understands 1",
    "kind-mislabelled": r"metadata cjepa\.n_slots is '', want a positive integer",
    "n-slots-disagrees": r"column 'slots' has type fixed_size_list<element: float>\[12\], want .*\[20\]",
    "n-slots-not-a-number": r"metadata cjepa\.n_slots is 'three', want a positive integer",
    "no-encoder-hash": r"metadata cjepa\.encoder_hash is missing or empty",
}


@pytest.mark.parametrize(("defect", "pattern"), SLOT_SHARD_CASES.items(), ids=SLOT_SHARD_CASES)
def test_bad_slot_shard_names_the_file(tmp_path, defect, pattern):
    d = tmp_path / "slots"
    d.mkdir()
    write_slots(d / "a.parquet", EIDS[:5])
    bad = write_slots(d / "b.parquet", EIDS[5:])
    _break_slot_shard(bad, defect)
    refused(tmp_path, lambda: read_slot_shard(bad), ShardError, rf"{bad}.*{pattern}")
    refused(tmp_path, lambda: load_windows(slot_config(d)), ShardError, rf"{bad}.*{pattern}")


# --------------------------------------------------------------------------- NaN / inf


VAL_EID = next(e for e in EIDS if split_of(e, 0.3) == "val")


def _non_finite(tmp_path: Path, case: str) -> Callable[[], object]:
    d = tmp_path / "slots"
    d.mkdir()
    if case in ("write-nan", "write-inf", "write-neg-inf"):
        value = {"write-nan": np.nan, "write-inf": np.inf, "write-neg-inf": -np.inf}[case]
        ids, frames, s = slot_rows(EIDS[:2])
        s[9, 2, 0] = value  # episode EIDS[1], frame 3
        return lambda: write_slot_shard(
            d / "s.parquet", ids, frames, s, encoder_hash="h", encoder_config={}
        )
    if case == "read-nan":
        write_slots(d / "s.parquet", EIDS[:2], check=False)
        return lambda: read_slot_shard(d / "s.parquet")
    if case == "val-episode-only":  # a NaN that training alone would never read
        write_slots(d / "a.parquet", [e for e in EIDS if e != VAL_EID])
        write_slots(d / "v.parquet", [EIDS[0], VAL_EID], check=False)
        return lambda: load_windows(slot_config(d))
    if case == "encoder-output":
        from cjepa.distributed.extract import extract_local

        data = episode_dir(tmp_path, shards=1)
        return lambda: extract_local(data, lambda dev: TinyEncoder(dev, nan_in="toy-0001"), d)
    raise AssertionError(case)


NON_FINITE_CASES = {
    "write-nan": r"s\.parquet: non-finite slot values in 1 row\(s\), first at episode 'collide-s0-000001' frame 3",
    "write-inf": r"s\.parquet: non-finite slot values in 1 row\(s\), first at episode 'collide-s0-000001' frame 3",
    "write-neg-inf": r"s\.parquet: non-finite slot values in 1 row\(s\), first at episode 'collide-s0-000001' frame 3",
    "read-nan": r"s\.parquet: non-finite slot values in 1 row\(s\), first at episode 'collide-s0-000001' frame 1",
    "val-episode-only": rf"v\.parquet: non-finite slot values in 1 row\(s\), first at episode '{VAL_EID}' frame 1",
    "encoder-output": r"toy-0\.parquet: non-finite slot values in 1 row\(s\), first at episode 'toy-0001' frame 1",
}  # fmt: skip


@pytest.mark.parametrize(("case", "pattern"), NON_FINITE_CASES.items(), ids=NON_FINITE_CASES)
def test_non_finite_slots_name_file_episode_and_frame(tmp_path, case, pattern):
    call = _non_finite(tmp_path, case)
    refused(tmp_path, call, ValueError, pattern)


# --------------------------------------------------------------------------- wrong N or D


def _shapes(d: Path, case: str) -> Callable[[], object]:
    if case in ("mixed-n", "mixed-d", "mixed-encoder"):
        write_slots(d / "a.parquet", EIDS[:5])
        n, dim, enc = {
            "mixed-n": (4, 4, "h"),
            "mixed-d": (3, 5, "h"),
            "mixed-encoder": (3, 4, "g"),
        }[case]
        write_slots(d / "b.parquet", EIDS[5:], n=n, d=dim, enc=enc)
        return lambda: load_windows(slot_config(d))
    write_slots(d / "a.parquet", EIDS)
    if case == "config-n":
        return lambda: load_windows(slot_config(d, "data.n_slots=5", "masking.budget=1"))
    if case == "config-d":
        return lambda: load_windows(slot_config(d, "data.slot_dim=8"))
    ids, frames, s = slot_rows(EIDS[:1])
    if case == "write-2d":
        return lambda: write_slot_shard(d / "w.parquet", ids, frames, s[:, 0], encoder_hash="h",
                                        encoder_config={})  # fmt: skip
    if case == "write-float64":
        return lambda: write_slot_shard(d / "w.parquet", ids, frames, s.astype(np.float64),
                                        encoder_hash="h", encoder_config={})  # fmt: skip
    if case == "write-row-count":
        return lambda: write_slot_shard(d / "w.parquet", ids[:-1], frames, s, encoder_hash="h",
                                        encoder_config={})  # fmt: skip
    raise AssertionError(case)


SHAPE_CASES = {
    "mixed-n": r"b\.parquet: \(encoder_hash, N, D\) = \('h', 4, 4\) differs from .*a\.parquet: \('h', 3, 4\)",
    "mixed-d": r"b\.parquet: \(encoder_hash, N, D\) = \('h', 3, 5\) differs from .*a\.parquet: \('h', 3, 4\)",
    "mixed-encoder": r"b\.parquet: \(encoder_hash, N, D\) = \('g', 3, 4\) differs from .*a\.parquet",
    "config-n": r"hold \(N, D\) = \(3, 4\), but the config says data\.n_slots=5, data\.slot_dim=4",
    "config-d": r"hold \(N, D\) = \(3, 4\), but the config says data\.n_slots=3, data\.slot_dim=8",
    "write-2d": r"w\.parquet: slots must be \(R, N, D\) float32, got \(6, 4\) float32",
    "write-float64": r"w\.parquet: slots must be \(R, N, D\) float32, got \(6, 3, 4\) float64",
    "write-row-count": r"w\.parquet: 5 episode_ids and frames \(6,\) for 6 slot rows",
}  # fmt: skip


@pytest.mark.parametrize(("case", "pattern"), SHAPE_CASES.items(), ids=SHAPE_CASES)
def test_wrong_slot_shape_names_the_shapes(tmp_path, case, pattern):
    d = tmp_path / "slots"
    d.mkdir()
    refused(tmp_path, _shapes(d, case), ValueError, pattern)


# --------------------------------------------------------------------------- mixed datasets


def toy_world(episode_index: int, *, seed: int, frames: int = 3) -> EpisodeData:
    ep = episode(f"toy-s{seed}-{episode_index:06d}", t=frames, seed=seed * 1000 + episode_index)
    return dataclasses.replace(ep, world="toy")


def _mixed(tmp_path: Path, case: str, monkeypatch) -> Callable[[], object]:
    from cjepa.distributed.extract import extract_local

    monkeypatch.setitem(WORLDS, "toy", WorldSpec("toy", toy_world))
    monkeypatch.setitem(WORLDS, "toy2", WorldSpec("toy2", toy_world))
    out = tmp_path / "data"

    def make(episodes=8, shard_size=4, world="toy", seed=0, **kw):
        return lambda: generate_shards(
            world, episodes, seed, out, shard_size=shard_size, workers=1, progress=False, **kw
        )

    if case.startswith("make-data"):
        make()()
        return {
            "make-data-fewer-episodes": make(episodes=4),
            "make-data-other-shard-size": make(shard_size=3),
            "make-data-other-world": make(world="toy2"),
            "make-data-other-seed": make(seed=1),
            "make-data-other-options": make(world_kwargs={"frames": 2}),
        }[case]
    data = episode_dir(tmp_path, shards=2)
    first = extract_local(data, TinyEncoder, tmp_path / "slots", progress=False)
    if case == "extract-stray-slot-shard":
        (data / "toy-1.parquet").unlink()  # the dataset shrank after extraction
        return lambda: extract_local(data, TinyEncoder, tmp_path / "slots", progress=False)
    if case == "slots-of-two-datasets":  # the same episodes twice in one slot folder
        (first.out / "copy.parquet").write_bytes((first.out / "toy-0.parquet").read_bytes())
        return lambda: load_slot_episodes(sorted(first.out.glob("*.parquet")))
    raise AssertionError(case)


MIXED_CASES = {
    "make-data-fewer-episodes": r"data holds shards of another plan \(toy-s0-000004-000007\.parquet: other --episodes or --shard-size than 4 x 4\)",
    "make-data-other-shard-size": r"data holds shards of another plan \(toy-s0-000000-000003\.parquet, toy-s0-000004-000007\.parquet",
    "make-data-other-world": r"data already holds 'toy' seed 0; use another --out for 'toy2' seed 0",
    "make-data-other-seed": r"data already holds 'toy' seed 0; use another --out for 'toy' seed 1",
    "make-data-other-options": r"data was made with world options \{\}, this run asks for \{'frames': 2\}",
    "extract-stray-slot-shard": r"holds slot shards with no episode shard in .*episodes \(toy-1\.parquet\)",
    "slots-of-two-datasets": r"episode 'toy-0000': duplicate slot frames \[0, 1, 2, 3\] in .*copy\.parquet",
}  # fmt: skip


@pytest.mark.parametrize(("case", "pattern"), MIXED_CASES.items(), ids=MIXED_CASES)
def test_mixed_datasets_are_refused(tmp_path, monkeypatch, case, pattern):
    call = _mixed(tmp_path, case, monkeypatch)
    refused(tmp_path, call, ValueError, pattern)


# --------------------------------------------------------------------------- checkpoints


SMOKE = ["train.steps=4", "train.log_every=2", "train.eval_every=2", "train.eval_batches=1"]


def smoke_cfg(*extra: str):
    return load_config(CONFIGS / "smoke.yaml", [*SMOKE, *extra])


def tiny_encoder_experiment(*extra: str):
    from cjepa.encoders.config import load_encoder_experiment

    return load_encoder_experiment(
        None,
        ["encoder.image_size=32", "encoder.n_slots=3", "encoder.slot_dim=8",
         "encoder.cnn_channels=4", "encoder.decoder_channels=4", "train.steps=2",
         "train.batch_size=1", "train.clip_len=2", "train.val_fraction=0.5", *extra],
    )  # fmt: skip


def collide_episodes():
    from cjepa.worlds.collide import make_episode

    return [make_episode(i, seed=0, frames=4, size=32, questions=False) for i in range(4)]


def _bad_checkpoint(tmp_path: Path, case: str) -> tuple[Callable[[], object], str]:
    """(call, pattern) for one bad checkpoint."""
    from cjepa.encoders import load_encoder
    from cjepa.encoders.base import save_encoder
    from cjepa.encoders.train import build_video_model, fit_encoder
    from cjepa.evaluation.stage import load_state, model_from_state

    d = tmp_path / "ckpt"
    d.mkdir()
    path = d / "predictor.pt"
    cfg = smoke_cfg()
    good = {"model": build_predictor(cfg).state_dict(), "config": cfg.to_dict(), "step": 4}
    save_checkpoint(path, good)
    data = path.read_bytes()
    p = str(path)
    if case == "corrupt-bytes":
        path.write_bytes(b"not a checkpoint")
        return lambda: load_state(path), rf"cannot read checkpoint {p}: corrupt, truncated"
    if case == "truncated":
        path.write_bytes(data[: len(data) // 2])
        return lambda: load_state(path), rf"cannot read checkpoint {p}: corrupt, truncated"
    if case == "empty-file":
        path.write_bytes(b"")
        return lambda: load_state(path), rf"cannot read checkpoint {p}: .*EOFError"
    if case == "not-a-predictor":
        save_checkpoint(path, {"model": good["model"]})
        return lambda: load_state(path), rf"{p}: not a predictor checkpoint \(no 'config' entry\)"
    if case == "other-width-in-file":  # the stored config says 64, the weights are 32 wide
        save_checkpoint(path, {**good, "config": smoke_cfg("predictor.width=64").to_dict()})
        return (
            lambda: model_from_state(*load_state(path)),
            r"do not fit the predictor its config describes \(predictor width 64, depth 2, "
            r"slot_dim 32\): (Missing key|size mismatch)",
        )
    if case == "resume-other-width":  # train_world_model.py rerun into another run's out_dir
        run = tmp_path / "run"
        save_checkpoint(run / CHECKPOINT_NAME, good)
        wide = smoke_cfg("predictor.width=64")
        train, val = load_windows(wide.data)
        return (
            lambda: fit(wide, train, val, out_dir=run, progress=False, log=lambda *_: None),
            rf"{run / CHECKPOINT_NAME} was trained with another config \(predictor\.width: 32 -> 64",
        )
    exp = tiny_encoder_experiment()
    enc = d / "encoder.pt"
    model = build_video_model(exp.encoder, seed=0)
    if case == "encoder-other-width":  # weights of slot_dim 8, config of slot_dim 16
        save_encoder(enc, model, dataclasses.replace(exp.encoder, slot_dim=16))
        return (
            lambda: load_encoder(str(enc)),
            rf"{enc}: weights do not fit the stored encoder config \(n_slots 3, slot_dim 16, backbone cnn\): size mismatch for",
        )
    if case == "predictor-as-encoder":
        return lambda: load_encoder(p), rf"{p}: not a cjepa encoder checkpoint \(format None"
    if case == "encoder-resume-other-config":
        run = tmp_path / "enc-run"
        save_checkpoint(run / CHECKPOINT_NAME, {"encoder_config": exp.encoder.to_dict()})
        other = tiny_encoder_experiment("encoder.slot_dim=16")
        eps = collide_episodes()
        return (
            lambda: fit_encoder(other, eps, run, progress=False, log=lambda *_: None),
            rf"{run / CHECKPOINT_NAME} was trained with another encoder config "
            r"\(encoder\.slot_dim: 8 -> 16\)",
        )
    if case == "dinov2-truncated":
        from cjepa.encoders.dinov2 import load_dinov2_weights

        path.write_bytes(data[:100])
        return lambda: load_dinov2_weights(None, path), rf"cannot read checkpoint {p}"
    raise AssertionError(case)


CHECKPOINT_CASES = [
    "corrupt-bytes",
    "truncated",
    "empty-file",
    "not-a-predictor",
    "other-width-in-file",
    "resume-other-width",
    "encoder-other-width",
    "predictor-as-encoder",
    "encoder-resume-other-config",
    "dinov2-truncated",
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_names_file_or_field(tmp_path, case):
    call, pattern = _bad_checkpoint(tmp_path, case)
    message = refused(tmp_path, call, ValueError, pattern)
    assert "weights_only=False" not in message and "\n" not in message


class WritesAFile:
    """A pickle whose ``__reduce__`` makes unpickling create ``target`` (``open(target, "w")``):
    what a malicious checkpoint would do with any other callable."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


def test_the_malicious_payload_is_armed(tmp_path):
    # Proof that the loaders below are tested against a live payload: unsafe loading runs it.
    target = tmp_path / "pwned"
    torch.save({"model": WritesAFile(target)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert target.exists()


def _malicious(tmp_path: Path, loader: str, target: Path) -> Callable[[], object]:
    from cjepa.data.published import load_dinowm_pusht
    from cjepa.encoders import load_encoder
    from cjepa.encoders.dinov2 import load_dinov2_weights
    from cjepa.encoders.train import fit_encoder
    from cjepa.evaluation.stage import load_state

    d = tmp_path / "in"
    d.mkdir()
    evil = d / "evil.pt"
    payload = {"model": WritesAFile(target), "config": {}, "step": 1}
    torch.save(payload, evil)
    if loader == "load_checkpoint":
        return lambda: load_checkpoint(evil)
    if loader == "load_checkpoint-legacy-pickle":  # not torch's zip format: a bare pickle
        evil.write_bytes(pickle.dumps(payload, protocol=2))
        return lambda: load_checkpoint(evil)
    if loader == "evaluation.load_state":
        return lambda: load_state(evil)
    if loader == "encoders.load_encoder":
        return lambda: load_encoder(str(evil))
    if loader == "dinov2.load_dinov2_weights":
        return lambda: load_dinov2_weights(None, evil)
    if loader == "train.fit-resume":
        os.replace(evil, d / CHECKPOINT_NAME)
        cfg = smoke_cfg()
        train, val = load_windows(cfg.data)
        return lambda: fit(cfg, train, val, out_dir=d, progress=False, log=lambda *_: None)
    if loader == "encoders.fit_encoder-resume":
        os.replace(evil, d / CHECKPOINT_NAME)
        exp, eps = tiny_encoder_experiment(), collide_episodes()
        return lambda: fit_encoder(exp, eps, d, progress=False, log=lambda *_: None)
    if loader == "published.dinowm-states.pth":
        os.replace(evil, d / "states.pth")
        return lambda: list(load_dinowm_pusht(d))
    if loader == "published.dinowm-seq_lengths.pkl":
        os.remove(evil)
        torch.save(torch.zeros(2, 5, 7), d / "states.pth")
        torch.save(torch.zeros(2, 5, 2), d / "rel_actions.pth")
        (d / "seq_lengths.pkl").write_bytes(pickle.dumps([WritesAFile(target)]))
        return lambda: list(load_dinowm_pusht(d))
    raise AssertionError(loader)


MALICIOUS_CASES = {
    "load_checkpoint": r"refused checkpoint .*evil\.pt: it would import the Python object io\.open",
    "load_checkpoint-legacy-pickle": r"refused checkpoint .*evil\.pt: it would import the Python object io\.open",
    "evaluation.load_state": r"refused checkpoint .*evil\.pt: it would import the Python object io\.open",
    "encoders.load_encoder": r"refused checkpoint .*evil\.pt: it would import the Python object io\.open",
    "dinov2.load_dinov2_weights": r"refused checkpoint .*evil\.pt: it would import the Python object io\.open",
    "train.fit-resume": r"refused checkpoint .*checkpoint\.pt: it would import the Python object io\.open",
    "encoders.fit_encoder-resume": r"refused checkpoint .*checkpoint\.pt: it would import the Python object io\.open",
    "published.dinowm-states.pth": r"field states could not be read as a tensor: refused checkpoint .*states\.pth: it would import the Python object io\.open",
    "published.dinowm-seq_lengths.pkl": r"seq_lengths\.pkl: seq_lengths is not a list of integers \(refusing to load global io\.open\)",
}  # fmt: skip


@pytest.mark.parametrize(("loader", "pattern"), MALICIOUS_CASES.items(), ids=MALICIOUS_CASES)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, loader, pattern):
    target = tmp_path / "pwned"
    call = _malicious(tmp_path, loader, target)
    message = refused(tmp_path, call, ValueError, pattern)
    assert not target.exists(), "the payload ran"
    assert "weights_only=False" not in message and "can still be loaded" not in message
    assert "add_safe_globals" not in message and "\n" not in message


# --------------------------------------------------------------------------- the CLI line


def _cli(tmp_path: Path, case: str) -> tuple[list[str], str]:
    d = smoke_dir(tmp_path)
    if case == "train_world_model-yaml-syntax":
        (d / "bad.yaml").write_text("train: {steps: 10\n")
        script = ["experiments/train_world_model.py", "--config", str(d / "bad.yaml")]
        return script, rf"error: {d / 'bad.yaml'}: YAML syntax error at line 2, column 1: "
    if case == "ablate_masking-budget-above-n":
        script = ["experiments/ablate_masking.py", "--preset", "tiny", "--root", "root",
                  "--sweep-set", "grid.masking.budget=[0, 9]"]  # fmt: skip
        return script, r"error: masking\.budget must be <= the number of slots 7, got 9"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["train_world_model-yaml-syntax", "ablate_masking-budget-above-n"])
def test_cli_prints_one_error_line_and_exits_2(tmp_path, case):
    argv, pattern = _cli(tmp_path, case)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns.db"}
    env.pop("CJEPA_DEBUG", None)
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(ROOT / argv[0]), *argv[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert re.match(pattern, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before  # no root/, no mlruns.db, no runs/


# --------------------------------------------------------------------------- security defaults


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_every_torch_load_is_weights_only_and_no_plain_unpickling():
    """docs/reliability.md, "Security defaults": code never unpickles arbitrary objects."""
    loads, unpickles = [], []
    for folder in ("cjepa", "experiments", "analysis"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            where = str(path.relative_to(ROOT))
            for call in _calls(tree):
                f = call.func
                if not isinstance(f, ast.Attribute) or not isinstance(f.value, ast.Name):
                    continue
                if (f.value.id, f.attr) == ("torch", "load"):
                    safe = any(
                        k.arg == "weights_only"
                        and isinstance(k.value, ast.Constant)
                        and k.value.value is True
                        for k in call.keywords
                    )
                    loads.append((where, call.lineno, safe))
                if f.value.id in ("pickle", "cloudpickle") and f.attr in ("load", "loads"):
                    unpickles.append((where, call.lineno))
    assert loads and all(safe for *_, safe in loads), loads
    assert {w for w, *_ in loads} == {"cjepa/train.py"}  # everything goes through load_checkpoint
    assert unpickles == []  # seq_lengths.pkl uses a restricted Unpickler subclass instead


def test_mlflow_ui_binds_localhost():
    recipe = (ROOT / "Makefile").read_text().split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "mlflow ui" in recipe and "--host 127.0.0.1" in recipe
