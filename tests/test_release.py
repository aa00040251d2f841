"""The official-release importer: predictor weights and slot pickles (cjepa.release,
cjepa.data.release_slots, experiments/import_release.py).

Fixtures are written here in the official formats: state dicts under the official names
(a plain one and a Lightning-style ``{"state_dict": {"model.predictor.*", ...}}``) and the
``{split: {video: (T, N, D)}}`` slot pickle. ``Official`` below is a small reference model
built from ``nn.MultiheadAttention`` with the official parameter names, so loading an exported
state dict into it strictly checks the names and shapes, and its outputs check the mapping.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import runpy
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cjepa import release
from cjepa.config import ExperimentConfig, from_dict
from cjepa.data import release_slots
from cjepa.data.shards import load_slot_episodes
from cjepa.data.splits import list_shards
from cjepa.encoders.base import file_sha256
from cjepa.evaluation.stage import load_state, model_from_state
from cjepa.steps import build_predictor

REPO = Path(__file__).resolve().parents[1]
N, D, TH, TP, A, P, C = 4, 8, 3, 2, 4, 4, 4  # Push-T: A = 2 x frameskip 2, P = 4


def _experiment(aux: str = "none", **data) -> dict:
    """A small official-variant config dict (what a user's preset + --set would give)."""
    d = {"source": "slots", "world": "collide", "slot_dir": "unused", "n_slots": N}
    d |= {"history": TH, "n_future": TP}
    if aux != "none":
        d |= {"world": "pusht", "episode_dir": "unused", "frameskip": 2}
    p = {"heads": 2, "dropout": 0.0}
    if aux == "concat":
        p |= {"aux_encoding": "concat", "concat_dim": C}
    return {"variant": "official", "data": d | data, "predictor": p}


def _source_model(aux: str = "none", seed: int = 0) -> tuple[ExperimentConfig, nn.Module]:
    """A cjepa official-variant predictor with random weights (its time embedding std 1)."""
    data = _experiment(aux)
    data["data"]["slot_dim"] = D
    data["predictor"] |= {"width": D, "depth": 2, "mlp_dim": 16}
    data["train"] = {"seed": seed}
    cfg = from_dict(ExperimentConfig, data)
    return cfg, build_predictor(cfg).eval()


class Official(nn.Module):
    """The official predictor's parameter layout and full-history inference (SPEC section 4:
    post-norm-free blocks of ``nn.MultiheadAttention`` + LayerNorm-MLP, final LayerNorm)."""

    def __init__(self, width: int, frames: int, depth: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.time_pos_embed = nn.Parameter(torch.zeros(1, frames, 1, width))
        self.id_projector = nn.Linear(width, width)
        self.transformer = nn.Module()
        self.transformer.norm = nn.LayerNorm(width)
        self.transformer.layers = nn.ModuleList(
            nn.ModuleList([
                nn.MultiheadAttention(width, heads, batch_first=True),
                nn.Sequential(
                    nn.LayerNorm(width), nn.Linear(width, mlp), nn.GELU(), nn.Dropout(0.0),
                    nn.Linear(mlp, width), nn.Dropout(0.0),
                ),
            ])
            for _ in range(depth)
        )  # fmt: skip
        self.to_out = nn.Linear(width, width)

    def inference(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T_h, S, W) all visible -> (B, T_p, S, W) future predictions."""
        b, th, s, w = x.shape
        pos = self.time_pos_embed[0, :, 0]  # (T, W)
        future = self.mask_token + pos[th:, None] + self.id_projector(x[:, :1])  # (B, T_p, S, W)
        h = torch.cat([x + pos[:th, None], future], 1).flatten(1, 2)  # (B, T*S, W)
        for attn, ff in self.transformer.layers:
            h = h + attn(h, h, h, need_weights=False)[0]
            h = h + ff(h)
        out = self.to_out(self.transformer.norm(h)).view(b, -1, s, w)
        return out[:, th:]


def _official(parts: release.ReleaseParts) -> tuple[Official, dict[str, nn.Module]]:
    p = parts.predictor
    w, frames = p["to_out.weight"].shape[0], p["time_pos_embed"].shape[1]
    ref = Official(w, frames, depth=2, heads=2, mlp=16).double()
    ref.load_state_dict(p)  # strict: the exported names and shapes are the official ones
    encoders = {}
    for name in ("action", "proprio"):
        key = f"{name}_encoder.patch_embed.weight"
        if key in parts.aux:
            conv = nn.Conv1d(parts.aux[key].shape[1], parts.aux[key].shape[0], 1).double()
            conv.load_state_dict({k.split(".")[-1]: parts.aux[k] for k in parts.aux if name in k})
            encoders[name] = conv
    return ref.eval(), encoders


def _inputs(g: torch.Generator, b: int = 3) -> dict[str, torch.Tensor]:
    return {
        "slots": torch.randn(b, TH, N, D, generator=g, dtype=torch.float64),
        "actions": torch.randn(b, TH + TP, A, generator=g, dtype=torch.float64),
        "proprio": torch.randn(b, TH, P, generator=g, dtype=torch.float64),
    }


def _cjepa_future(model, x: dict, aux: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    mask = torch.zeros(x["slots"].shape[:3], dtype=torch.bool)
    kw = {} if aux == "none" else {"actions": x["actions"], "proprio": x["proprio"]}
    out = model(x["slots"], mask, **kw)
    return out.slots[:, TH:], None if out.proprio is None else out.proprio[:, TH:]


def _reference_future(ref, enc, x: dict, aux: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The official model's inputs: [slots, proprio, action] entities, or the embeddings
    appended to every slot along the features (concat)."""
    z = x["slots"]
    if aux == "none":
        return ref.inference(z), None
    emb = {n: enc[n](x[k][:, :TH].transpose(1, 2)).transpose(1, 2) for n, k in
           (("proprio", "proprio"), ("action", "actions"))}  # fmt: skip
    if aux == "entity":
        out = ref.inference(
            torch.cat([z, emb["proprio"][:, :, None], emb["action"][:, :, None]], 2)
        )
        return out[:, :, :N], out[:, :, N]
    tiled = [emb[n][:, :, None].expand(-1, -1, N, -1) for n in ("proprio", "action")]
    out = ref.inference(torch.cat([z, *tiled], -1))
    return out[..., :D], out[..., D : D + C]


@pytest.mark.parametrize("aux", ["none", "entity", "concat"])
def test_imported_weights_predict_as_the_official_model_does(tmp_path, aux):
    source = _source_model(aux)[1]
    parts = release.to_official(source)
    path = tmp_path / "official.ckpt"
    torch.save({**parts.predictor, **parts.aux}, path)
    got_cfg, state, record = release.import_predictor(path, _experiment(aux))
    model = build_predictor(got_cfg)
    model.load_state_dict(state)
    model = model.double().eval()
    ref, enc = _official(parts)
    x = _inputs(torch.Generator().manual_seed(1))
    with torch.no_grad():
        slots, prop = _cjepa_future(model, x, aux)
        want_slots, want_prop = _reference_future(ref, enc, x, aux)
    torch.testing.assert_close(slots, want_slots, rtol=1e-9, atol=1e-9)
    if aux != "none":
        torch.testing.assert_close(prop, want_prop, rtol=1e-9, atol=1e-9)
    assert record["sha256"] == file_sha256(path) and record["heads"] == 2
    assert (got_cfg.data.slot_dim, got_cfg.predictor.depth, got_cfg.predictor.mlp_dim) == (D, 2, 16)


def _lightning(parts: release.ReleaseParts) -> dict:
    sd = {f"model.predictor.{k}": v for k, v in parts.predictor.items()}
    sd |= {f"model.{k}": v for k, v in parts.aux.items()}
    sd["model.encoder.backbone.weight"] = torch.ones(2, 2)  # the frozen encoder: ignored
    return {"state_dict": sd, "epoch": 3, "global_step": 120}


def test_a_lightning_checkpoint_round_trips_to_identical_outputs(tmp_path):
    source = _source_model("entity", seed=3)[1]
    path = tmp_path / "world_model.ckpt"
    torch.save(_lightning(release.to_official(source)), path)
    got_cfg, state, record = release.import_predictor(path, _experiment("entity"))
    release.save_release_checkpoint(tmp_path / "predictor.pt", got_cfg, state, record)
    cfg2, st = load_state(tmp_path / "predictor.pt")  # what experiments/evaluate.py reads
    model = model_from_state(cfg2, st)
    assert record["prefix"] == "model.predictor." and record["ignored_keys"] == 1
    assert cfg2.variant == "official" and cfg2.predictor.aux_encoding == "entity"
    x = {k: v.float() for k, v in _inputs(torch.Generator().manual_seed(2)).items()}
    with torch.no_grad():
        a, b = _cjepa_future(model, x, "entity"), _cjepa_future(source, x, "entity")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _broken(parts: release.ReleaseParts, how: str) -> dict:
    sd = dict(parts.predictor)
    if how == "shape":
        sd["transformer.layers.1.1.1.weight"] = torch.zeros(17, D)
    elif how == "missing":
        del sd["transformer.layers.0.0.out_proj.bias"]
    else:
        sd["transformer.layers.0.0.bias_k"] = torch.zeros(1, 1, D)
    return sd


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("shape", r"'transformer.layers.1.1.1.weight' has shape \(17, 8\), cjepa's "
                  r"'blocks.1.mlp.0.weight' needs \(16, 8\)"),
        ("missing", r"missing key 'transformer.layers.0.0.out_proj.bias'"),
        ("unexpected", r"unexpected key 'transformer.layers.0.0.bias_k' \(1, 1, 8\)"),
    ],
)  # fmt: skip
def test_a_bad_key_fails_naming_it_and_both_shapes(tmp_path, how, says):
    path = tmp_path / "bad.ckpt"
    torch.save(_broken(release.to_official(_source_model()[1]), how), path)
    with pytest.raises(ValueError, match=says):
        release.import_predictor(path, _experiment())


def test_config_values_the_weights_contradict_are_refused(tmp_path):
    path = tmp_path / "official.ckpt"
    parts = release.to_official(_source_model()[1])
    torch.save(parts.predictor, path)
    data = _experiment()
    data["predictor"]["depth"] = 3
    with pytest.raises(ValueError, match=r"predictor.depth=3 in the config, but the checkpoint"):
        release.import_predictor(path, data)
    data = _experiment(history=2)  # 2 + n_future 2 != the 5 time-embedding rows
    with pytest.raises(ValueError, match=r"data.history=2 \+ data.n_future=2: time_pos_embed"):
        release.import_predictor(path, data)


def _slot_pickle(path: Path, seed: int = 0, protocol: int = 4) -> dict:
    g = np.random.default_rng(seed)
    slots = {
        split: {f"video_{i:05d}.mp4": g.normal(size=(t, N, D)).astype(np.float32)
                for i, t in enumerate(lengths)}
        for split, lengths in (("train", [9, 12, 10]), ("val", [11, 9]))
    }  # fmt: skip
    path.write_bytes(pickle.dumps(slots, protocol=protocol))
    return slots


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_slot_pickles_of_every_protocol_read_back(tmp_path, protocol):
    want = _slot_pickle(tmp_path / "s.pkl", protocol=protocol)
    got = release_slots.read_slot_pickle(tmp_path / "s.pkl", trust_pickle=True)
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[s][v], want[s][v]) for s in want for v in want[s])


def test_a_slot_pickle_becomes_shards_that_load_back_identically(tmp_path):
    want = _slot_pickle(tmp_path / "slots.pkl")
    got = release_slots.read_slot_pickle(tmp_path / "slots.pkl", trust_pickle=True)
    lines = []
    report = release_slots.import_slot_pickle(
        got, tmp_path / "out", source="slots.pkl", sha256="abc", shard_size=2, progress=lines.append
    )
    for split, videos in want.items():
        back = load_slot_episodes(list_shards(tmp_path / "out" / split, "slots"))
        assert sorted(back) == sorted(videos)
        for name, arr in videos.items():
            assert np.array_equal(back[name], arr)
        manifest = json.loads((tmp_path / "out" / split / "manifest.json").read_text())
        assert manifest["total_episodes"] == len(videos) and manifest["encoder_hash"] == "abc"
    assert report.written == {"train": ["slots-00000.parquet", "slots-00001.parquet"],
                              "val": ["slots-00000.parquet"]}  # fmt: skip
    assert len(lines) == 3 and lines[0].startswith("[train] wrote slots-00000.parquet")
    again = release_slots.import_slot_pickle(
        got, tmp_path / "out", source="slots.pkl", sha256="abc", shard_size=2
    )
    assert again.kept == report.written and not any(again.written.values())


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


class _Opens:
    """Unpickling it creates ``target`` (a global torch does not block outright)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


def test_a_pickle_is_refused_without_the_flag_and_code_never_runs(tmp_path):
    _slot_pickle(tmp_path / "slots.pkl")
    with pytest.raises(ValueError, match=r"refusing to read .*slots.pkl: it is a pickle"):
        release_slots.read_slot_pickle(tmp_path / "slots.pkl")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"train": {"v": _Boom()}}))
    with pytest.raises(ValueError, match=r"refusing to load global posix.system"):
        release_slots.read_slot_pickle(evil, trust_pickle=True)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def _script(
    *args: str, cwd: Path, script: str = "import_release.py"
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "experiments" / script), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _in_process(monkeypatch, capsys, *args: str) -> str:
    """experiments/import_release.py run in this process (no interpreter start): its stdout."""
    monkeypatch.setattr(sys, "argv", ["import_release.py", *args])
    runpy.run_path(str(REPO / "experiments" / "import_release.py"), run_name="__main__")
    return capsys.readouterr().out


def test_the_script_refuses_a_pickle_in_one_line_without_trust_pickle(
    tmp_path, monkeypatch, capsys
):
    _slot_pickle(tmp_path / "slots.pkl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CJEPA_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        _in_process(monkeypatch, capsys, "--slots", "slots.pkl", "--out", "out")
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: refusing to read slots.pkl: it is a pickle")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def _object_checkpoints(tmp_path: Path, monkeypatch, parts: release.ReleaseParts) -> dict:
    """The release's ``*_object.ckpt`` (``torch.save`` of the whole Lightning module) whose
    classes come from code that is not installed at load time, variants with a payload that
    would run code, and a Lightning weights file with a config object beside its state dict."""
    fake = types.ModuleType("official_cjepa_predictor")
    fake.MaskedSlotPredictor = type(
        "MaskedSlotPredictor", (Official,), {"__module__": fake.__name__}
    )
    ref = _official(parts)[0].float()
    ref.__class__ = fake.MaskedSlotPredictor  # pickled as official_cjepa_predictor.Masked...
    world = nn.Module()
    world.model = nn.Module()
    world.model.predictor, world.model.encoder = ref, nn.Linear(2, 2)
    paths = {k: tmp_path / f"{k}.ckpt" for k in ("object", "system", "opens", "weights")}
    with monkeypatch.context() as m:
        m.setitem(sys.modules, fake.__name__, fake)
        torch.save(world, paths["object"])
        for name, hook in (("system", _Boom()), ("opens", _Opens(tmp_path / "opened"))):
            world.hook = hook
            torch.save(world, paths[name])
        torch.save(
            {**_lightning(parts), "hyper_parameters": fake.MaskedSlotPredictor}, paths["weights"]
        )
    assert fake.__name__ not in sys.modules
    return paths


def test_a_pickled_world_model_imports_only_with_trust_pickle(tmp_path, monkeypatch):
    source = _source_model(seed=5)[1]
    paths = _object_checkpoints(tmp_path, monkeypatch, release.to_official(source))
    with pytest.raises(ValueError, match=r"holds pickled Python objects.*--trust-pickle"):
        release.import_predictor(paths["object"], _experiment())
    cfg, state, record = release.import_predictor(paths["object"], _experiment(), trust_pickle=True)
    assert "official_cjepa_predictor" not in sys.modules  # nothing was imported
    assert record["prefix"] == "model.predictor." and record["ignored_keys"] == 2
    model = build_predictor(cfg)
    model.load_state_dict(state)
    x = {k: v.float() for k, v in _inputs(torch.Generator().manual_seed(4)).items()}
    with torch.no_grad():
        assert torch.equal(_cjepa_future(model, x, "none")[0], _cjepa_future(source, x, "none")[0])
    cfg, state, record = release.import_predictor(
        paths["weights"], _experiment(), trust_pickle=True
    )
    assert record["prefix"] == "model.predictor." and state.keys() == model.state_dict().keys()


def test_code_in_a_pickled_checkpoint_never_runs(tmp_path, monkeypatch):
    paths = _object_checkpoints(tmp_path, monkeypatch, release.to_official(_source_model()[1]))
    with pytest.raises(ValueError, match=r"refused .*system.ckpt: it names posix.system, of a"):
        release.import_predictor(paths["system"], _experiment(), trust_pickle=True)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    pickle.loads(pickle.dumps(_Opens(tmp_path / "armed")))  # the payload is live ...
    assert (tmp_path / "armed").exists()
    release.import_predictor(paths["opens"], _experiment(), trust_pickle=True)
    assert not (tmp_path / "opened").exists()  # ... and inert here: io.open became a stub


def _by_hand(model, videos: dict[str, np.ndarray]) -> tuple[float, float]:
    """Mean future MSE of ``model`` and of copy-last over every window of ``videos``."""
    errs = {"future": [], "copy": []}
    for arr in videos.values():
        z = torch.from_numpy(arr)
        for s in range(arr.shape[0] - TH - TP + 1):
            w = z[s : s + TH + TP]
            target = w[TH:]
            with torch.no_grad():
                pred = model(w[None, :TH], torch.zeros(1, TH, N, dtype=torch.bool)).slots[0, TH:]
            errs["future"].append(((pred - target) ** 2).mean(-1).flatten())
            errs["copy"].append(((w[TH - 1] - target) ** 2).mean(-1).flatten())
    return tuple(float(torch.cat(errs[k]).double().mean()) for k in ("future", "copy"))


def test_an_imported_release_is_scored_by_evaluate_against_copy_last(tmp_path, monkeypatch, capsys):
    source = _source_model(seed=7)[1]
    torch.save(release.to_official(source).predictor, tmp_path / "official.ckpt")
    videos = _slot_pickle(tmp_path / "slots.pkl")["val"]
    monkeypatch.chdir(tmp_path)
    out = _in_process(monkeypatch, capsys, "--slots", "slots.pkl", "--trust-pickle", "--out", "rel")
    assert "rel/val: 2 videos, 1 shards written" in out
    sets = ["data.slot_dir=rel/val", "data.history=3", "predictor.heads=2"]
    args = ["--predictor", "official.ckpt", "--out", "predictor.pt"]
    out = _in_process(monkeypatch, capsys, *args, *[a for s in sets for a in ("--set", s)])
    assert out.startswith("wrote predictor.pt: 2 blocks, width 8, heads 2")
    args = ["--checkpoint", "predictor.pt", "--stage", "final_validation"]
    args += ["--set", "final_validation.windows=slot_dir", "--json", "m.json", "--out", "eval"]
    done = _script(*args, cwd=tmp_path, script="evaluate.py")  # the evaluation entry, unchanged
    assert done.returncode == 0, done.stderr
    got = json.loads((tmp_path / "m.json").read_text())["metrics"]
    future, copy = _by_hand(source, videos)
    assert got["final/future_all"] == pytest.approx(future, rel=1e-5)
    assert got["final/copy_last_all"] == pytest.approx(copy, rel=1e-5)
    assert got["final/windows"] == sum(v.shape[0] - TH - TP + 1 for v in videos.values())
