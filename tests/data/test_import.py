"""make_data.py --from: published CLEVRER / DINO-WM Push-T copies (tiny fixtures written here,
nothing downloaded) -> episode shards that extraction, training and evaluation take unchanged."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cjepa import cli
from cjepa.data.generate import MANIFEST, generate_shards
from cjepa.data.importer import import_published
from cjepa.data.shards import read_episode_shard
from cjepa.data.splits import list_shards
from cjepa.encoders import load_encoder
from cjepa.worlds import get_world
from tests.data.published_fixtures import clevrer_annotation, write_clevrer, write_dinowm

ROOT = Path(__file__).resolve().parents[2]
SCENES = tuple((s, 2 + s % 3) for s in range(5))  # 5 scenes of 2..4 objects


def make_data():
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "experiments/make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(argv: list[str]) -> None:
    """make_data.py as a user runs it: one ``error:`` line and exit 2 for a bad input."""
    md = make_data()
    cli.run(lambda: md.main(argv), argv)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime): the same pair means the file was not rewritten."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def episodes_of(directory: Path) -> list:
    return [ep for p in list_shards(directory, "episodes") for ep in read_episode_shard(p)]


@pytest.fixture
def clevrer_root(tmp_path):
    return write_clevrer(tmp_path / "clevrer", scenes=SCENES)


def test_clevrer_import_writes_shards_and_a_manifest(clevrer_root, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--from", "clevrer", str(clevrer_root), "--out", str(out), "--shard-size", "2"]
    run_cli([*argv, "--size", "16"])
    assert "3 written, 0 rewritten, 0 kept" in capsys.readouterr().out
    names = sorted(p.name for p in list_shards(out))
    assert names == [f"clevrer-train-{a:06d}-{b:06d}.parquet" for a, b in ((0, 1), (2, 3), (4, 4))]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["world"] == "clevrer" and manifest["total_episodes"] == 5
    assert manifest["source"] == {
        "layout": "clevrer",
        "path": str(clevrer_root.resolve()),
        "splits": ["train"],
        "options": {"size": 16, "n_objects": 6},
    }
    eps = episodes_of(out)
    assert [e.episode_id for e in eps] == [f"clevrer-train-{s:05d}" for s, _ in SCENES]
    ep = eps[1]  # 3 objects, padded to 6
    assert ep.world == "clevrer" and ep.frames.shape == (6, 16, 16, 3)
    assert ep.states.shape == (6, 6, 6) and np.all(ep.states[:, 3:] == 0)
    assert ep.questions is None and eps[0].questions[0]["type"] == "descriptive"
    # collisions in the platform's [frame, i, j] state columns; the release's records kept
    assert ep.info["collisions"] == [[4, 0, 1]]
    assert ep.info["clevrer_collisions"] == [{"frame_id": 4, "object_ids": [0, 1]}]
    assert ep.meta["source"] == "clevrer" and ep.meta["video_path"].endswith("video_00001.mp4")


def test_clevrer_import_resumes(clevrer_root, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--from", "clevrer", str(clevrer_root), "--out", str(out), "--shard-size", "2"]
    run_cli([*argv, "--size", "8"])
    capsys.readouterr()
    before = snapshot(out)
    run_cli([*argv, "--size", "8"])
    assert "0 written, 0 rewritten, 3 kept" in capsys.readouterr().out
    assert snapshot(out) == before  # nothing rewritten, manifest included
    corrupt, missing = out / "clevrer-train-000000-000001.parquet", list_shards(out)[2]
    corrupt.write_bytes(corrupt.read_bytes()[:-100])
    missing.unlink()
    run_cli([*argv, "--size", "8"])
    assert "1 written, 1 rewritten, 1 kept" in capsys.readouterr().out
    assert snapshot(out)[list_shards(out)[1].name] == before[list_shards(out)[1].name]
    assert len(episodes_of(out)) == 5
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files


def test_a_directory_holds_one_import(clevrer_root, tmp_path):
    out = tmp_path / "out"
    import_published("clevrer", clevrer_root, out, options={"size": 8}, progress=False)
    with pytest.raises(ValueError, match=r"already holds world 'clevrer'.*use another --out"):
        import_published("clevrer", clevrer_root, out, options={"size": 16}, progress=False)
    (out / MANIFEST).unlink()
    with pytest.raises(ValueError, match=r"holds shards this import does not make"):
        import_published("clevrer", clevrer_root, out, options={"size": 8}, limit=3)
    with pytest.raises(ValueError, match=r"was made with .*'size': 8.*asks for .*'size': 16"):
        import_published("clevrer", clevrer_root, out, options={"size": 16}, progress=False)
    collide = tmp_path / "collide"
    generate_shards("collide", 2, 0, collide, shard_size=2, workers=1, progress=False,
                    world_kwargs={"frames": 4, "size": 8})  # fmt: skip
    with pytest.raises(ValueError, match=r"already holds world 'collide'"):
        import_published("clevrer", clevrer_root, collide, progress=False)


def test_dinowm_import_is_pusht_data(tmp_path, capsys):
    root = tmp_path / "pusht_noise"
    made = {"train": write_dinowm(root / "train"), "val": write_dinowm(root / "val", lengths=(8,))}
    out = tmp_path / "out"
    run_cli(["--from", "dinowm_pusht", str(root), "--split", "train", "val", "--out", str(out)])
    assert "2 written" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["world"] == "pusht" and manifest["source"]["splits"] == ["train", "val"]
    assert [s["split"] for s in manifest["shards"]] == ["train", "val"]
    eps = episodes_of(out)
    assert [e.episode_id for e in eps] == [
        "dinowm-pusht-train-000000",
        "dinowm-pusht-train-000001",
        "dinowm-pusht-train-000002",
        "dinowm-pusht-val-000000",
    ]
    for ep, ref in zip(eps, made["train"] + made["val"], strict=True):
        assert ep.world == "pusht" and ep.meta["source"] == "dinowm_pusht"
        np.testing.assert_array_equal(ep.states, ref.states)
        np.testing.assert_array_equal(ep.actions, ref.actions)
    # the Push-T oracle and proprio columns read them as Push-T episodes
    slots = load_encoder("oracle:pusht").encode_episodes(eps[:1])[0]
    assert slots.shape == (eps[0].n_frames, 4, 128)
    assert eps[0].states[:, 0, list(get_world("pusht").proprio_columns)].shape == (9, 4)


def test_loaders_start_part_way_without_reading_what_they_skip(clevrer_root, tmp_path):
    from cjepa.data.published import count_dinowm_pusht, load_clevrer, load_dinowm_pusht

    next(clevrer_root.rglob("video_00000.mp4")).write_bytes(b"not a video")  # never decoded
    eps = list(load_clevrer(clevrer_root, start=1, limit=2, size=8))
    assert [e.episode_id for e in eps] == ["clevrer-train-00001", "clevrer-train-00002"]
    write_dinowm(tmp_path / "pusht" / "train")
    os.remove(tmp_path / "pusht" / "train" / "obses" / "episode_000.pth")
    eps = list(load_dinowm_pusht(tmp_path / "pusht", split="train", start=1))
    assert [e.episode_id[-6:] for e in eps] == ["000001", "000002"]
    with pytest.raises(ValueError, match=r"episode_000\.pth \(or \.mp4\): file not found"):
        count_dinowm_pusht(tmp_path / "pusht", split="train")


def bad_clevrer(root: Path) -> str:
    os.remove(next(root.rglob("annotation_00003.json")))
    return r"annotation_00003\.json not found"


def bad_dinowm_array(root: Path) -> str:
    torch.save(torch.zeros(3, 9, 3), root / "train" / "rel_actions.pth")
    return r"rel_actions\.pth: field rel_actions has shape"


def bad_dinowm_obses(root: Path) -> str:
    os.remove(root / "train" / "obses" / "episode_002.pth")
    return r"episode_002\.pth \(or \.mp4\): file not found \(field obses\)"


def dinowm_split_folder(root: Path) -> str:
    return "is a DINO-WM split folder; give the folder above it"


@pytest.mark.parametrize(
    ("layout", "breaks", "subdir"),
    [
        ("clevrer", bad_clevrer, ""),
        ("dinowm_pusht", bad_dinowm_array, ""),
        ("dinowm_pusht", bad_dinowm_obses, ""),
        ("dinowm_pusht", dinowm_split_folder, "train"),
    ],
    ids=["clevrer-missing-annotation", "dinowm-shape", "dinowm-obses", "dinowm-split-folder"],
)
def test_a_bad_layout_fails_in_one_line_and_writes_nothing(
    tmp_path, capsys, layout, breaks, subdir
):
    root = tmp_path / "src"
    if layout == "clevrer":
        write_clevrer(root, scenes=SCENES)
    else:
        write_dinowm(root / "train")
    pattern = breaks(root)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--from", layout, str(root / subdir), "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and re.search(pattern, err), err
    assert not out.exists()


def test_a_malformed_file_mid_import_leaves_whole_shards_and_resumes(clevrer_root, tmp_path):
    path = next(clevrer_root.rglob("annotation_00003.json"))
    good = path.read_text()
    bad = clevrer_annotation(3, 2)
    del bad["motion_trajectory"][1]["objects"][0]["location"]
    path.write_text(json.dumps(bad))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"annotation_00003\.json.*location"):
        import_published("clevrer", clevrer_root, out, shard_size=2, options={"size": 8})
    assert sorted(p.name for p in out.iterdir()) == ["clevrer-train-000000-000001.parquet"]
    path.write_text(good)
    report = import_published("clevrer", clevrer_root, out, shard_size=2, options={"size": 8})
    assert (report.kept, len(report.written)) == (["clevrer-train-000000-000001.parquet"], 2)
    assert (out / MANIFEST).is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "clevrer", "x", "--episodes", "3"], "--episodes: only with --world"),
        (["--from", "clevrer", "x", "--no-questions"], "--no-questions: only with --world"),
        (["--world", "collide", "--seed", "0"], "--world needs --episodes and --seed"),
        (["--world", "collide", "--episodes", "1", "--seed", "0", "--limit", "2"], "only with"),
        (["--world", "collide", "--from", "clevrer", "x"], "not allowed with"),
    ],
)
def test_make_data_flags_belong_to_world_or_from(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        make_data().parse_args([*argv, "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_unknown_layout_and_option_name_the_known(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(["--from", "kitti", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "unknown published layout 'kitti'; known: ['clevrer', 'dinowm_pusht']" in err
    with pytest.raises(ValueError, match=r"'dinowm_pusht' takes no option\(s\) \['size'\]"):
        import_published("dinowm_pusht", tmp_path, tmp_path / "o", options={"size": 8})


def test_clevrer_is_a_data_only_world(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"'clevrer' has no simulator.*--from clevrer PATH"):
        generate_shards("clevrer", 2, 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        run_cli(["--world", "clevrer", "--episodes", "2", "--seed", "0", "--out", str(tmp_path)])
    assert "has no simulator" in capsys.readouterr().err


def test_clevrer_oracle_slot_k_follows_object_k(clevrer_root, tmp_path):
    import_published("clevrer", clevrer_root, tmp_path / "out", options={"size": 8})
    ep = episodes_of(tmp_path / "out")[2]  # 4 objects
    enc = load_encoder("oracle:clevrer")
    assert enc.n_slots == 7
    feats, attrs = enc.features(ep)
    assert feats.shape == (6, 6, 7) and np.abs(feats).max() <= 1.0
    shape, colour, material = attrs[0, :3], attrs[0, 3:11], attrs[0, 11:]  # a red metal cube
    assert (shape.tolist(), colour.argmax(), colour.sum(), material.tolist()) == (
        [1, 0, 0],
        1,
        1,
        [0, 1],
    )
    slots = enc.encode_episodes([ep])[0]
    moved = ep.states.copy()
    moved[:, 2, 0] += 0.5
    diff = np.abs(enc.encode_episodes([dataclasses.replace(ep, states=moved)])[0] - slots)
    assert diff.sum(axis=(0, 2)).nonzero()[0].tolist() == [2]
    with pytest.raises(ValueError, match="this oracle encodes 'collide'"):
        load_encoder("oracle:collide").encode_episodes([ep])


# -------------------------------------------------------------------------------- end to end
# (about 15 s each: a tiny import, oracle extraction in this process, 4 training steps)


def train_config(world: str, slot_dir: Path, episode_dir: Path | None, n_slots: int):
    from cjepa.config import load_config

    overrides = [
        "data.source=slots",
        f"data.world={world}",
        f"data.slot_dir={slot_dir}",
        f"data.n_slots={n_slots}",
        "data.slot_dim=128",
        "data.history=3",
        "data.n_future=1",
        "data.frameskip=1",
        "data.val_fraction=0.3",
        "masking.budget=1",
        "train.steps=4",
        "train.log_every=4",
        "train.eval_every=4",
        "train.batch_size=8",
    ]
    if episode_dir is not None:
        overrides.append(f"data.episode_dir={episode_dir}")
    return load_config(ROOT / "experiments/configs/smoke.yaml", overrides)


def import_extract_train_evaluate(tmp_path, layout, src, world, encoder, aux: bool):
    """make_data --from -> extract_local -> fit -> final_validation, as the platform runs them."""
    from cjepa.data.sources import load_windows
    from cjepa.distributed.extract import extract_local
    from cjepa.evaluation import stage as st
    from cjepa.train import fit

    data = tmp_path / "data"
    size = ["--size", "16"] if layout == "clevrer" else []
    run_cli(["--from", layout, str(src), "--out", str(data), *size])
    report = extract_local(data, encoder, tmp_path / "slots", progress=False)
    cfg = train_config(world, report.out, data if aux else None, load_encoder(encoder).n_slots)
    assert (cfg.data.action_dim, cfg.data.proprio_dim) == ((2, 4) if aux else (0, 0))
    train, val = load_windows(cfg.data)
    result = fit(cfg, train, val, out_dir=tmp_path / "run", resume=False, progress=False,
                 log=lambda *_: None)  # fmt: skip
    assert math.isfinite(result.history[-1]["train/loss"])
    state = {"model": result.model.state_dict(), "history": result.history, "step": 4}
    ctx = st.StageContext(tmp_path / "eval", encoder=encoder, episode_dir=str(data))
    return cfg, state, ctx, st.run_stages(cfg, state, {"final_validation": {}}, ctx)


def test_clevrer_import_extracts_trains_and_evaluates(tmp_path):
    scenes = tuple((s, 2 + s % 4) for s in range(10))
    src = write_clevrer(tmp_path / "clevrer", scenes=scenes, n_frames=12)
    cfg, state, ctx, metrics = import_extract_train_evaluate(
        tmp_path, "clevrer", src, "clevrer", "oracle:clevrer", aux=False
    )
    # the dynamics metrics ran on the imported val episodes (labels from present + collisions)
    for name in ("final/future_present", "final/copy_last_present", "final/future_all"):
        assert math.isfinite(metrics[name]), name
    assert metrics["final/windows"] > 0
    from cjepa.evaluation import stage as st

    for name in ("vqa", "counterfactual", "causal"):  # they need the collide simulator
        with pytest.raises(ValueError, match=rf"stages\.{name} needs a predictor trained on "
                                             "collide slots.*'clevrer'"):  # fmt: skip
            st.run_stages(cfg, state, {name: {}}, ctx)


def test_dinowm_import_extracts_trains_and_evaluates_as_pusht(tmp_path):
    src = tmp_path / "pusht_noise"
    write_dinowm(src / "train", lengths=(9, 8, 7, 9, 8, 6, 9, 7))
    _, _, _, metrics = import_extract_train_evaluate(
        tmp_path, "dinowm_pusht", src, "pusht", "oracle:pusht", aux=True
    )
    assert math.isfinite(metrics["final/future_visible"])


def test_the_ablation_takes_an_import_as_its_world_data(clevrer_root, tmp_path):
    from cjepa.distributed.pipeline import AblationConfig, WorldData, make_world_data

    data = tmp_path / "data"
    import_published("clevrer", clevrer_root, data, options={"size": 8})
    cfg = AblationConfig(world_data={"clevrer": WorldData(episode_dir=str(data))})
    assert make_world_data(cfg, "clevrer", tmp_path / "root") == data.resolve()
    assert not (tmp_path / "root").exists()  # nothing simulated
    with pytest.raises(ValueError, match=r"world_data\.clevrer\.episode_dir: .* no simulator"):
        make_world_data(AblationConfig(world_data={"clevrer": WorldData()}), "clevrer", tmp_path)
    wrong = AblationConfig(world_data={"collide": WorldData(episode_dir=str(data))})
    with pytest.raises(ValueError, match=r"holds world 'clevrer' episodes"):
        make_world_data(wrong, "collide", tmp_path)
    empty = AblationConfig(world_data={"clevrer": WorldData(episode_dir=str(tmp_path / "no"))})
    with pytest.raises(FileNotFoundError, match="holds no episode shards"):
        make_world_data(empty, "clevrer", tmp_path)


def write_source(layout: str, root: Path) -> Path:
    """A fixture of ``layout`` big enough for the tiny preset's windows and val split."""
    if layout == "clevrer":
        return write_clevrer(root, scenes=tuple((s, 2 + s % 4) for s in range(10)), n_frames=12)
    write_dinowm(root / "train", lengths=(30,) * 8)  # Push-T windows: frameskip 5
    return root


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("layout", "world"), [("clevrer", "clevrer"), ("dinowm_pusht", "pusht")])
def test_ablate_masking_runs_on_an_import(tmp_path, layout, world):
    """The tiny ablation (Ray Data extraction, Ray Tune trials, final_validation, controls) on
    imported data, as a user would run it."""
    import subprocess
    import sys

    src = write_source(layout, tmp_path / "src")
    data = tmp_path / "data"
    run_cli(["--from", layout, str(src), "--out", str(data)])
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(ROOT / "experiments/ablate_masking.py"), "--preset", "tiny",
           "--world", world, "--root", str(tmp_path / "runs"), "--sweep-set",
           "max_concurrent=1", f"world_data.{world}={{episode_dir: {data}}}"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "(existing episode shards, not simulated)" in done.stdout
    assert "| final/future_visible (lower is better) |" in done.stdout
    assert not (tmp_path / "runs" / "data").exists()
