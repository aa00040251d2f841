import subprocess
import sys

import numpy as np
import pytest
import torch

from cjepa.config import load_config
from cjepa.data.sources import load_windows
from cjepa.evaluation.probes import hidden_object_errors
from cjepa.train import (
    TrainLoop,
    build_optimizer,
    build_predictor,
    eval_step,
    fit,
    forward_loss,
    load_checkpoint,
    lr_at,
    train_step,
)

SMOKE = "experiments/configs/smoke.yaml"
QUIET = {"progress": False, "log": lambda *_: None}


def smoke(*overrides):
    return load_config(SMOKE, list(overrides))


@pytest.fixture(scope="module")
def learned():
    """A short CPU run of C-JEPA with object masking on interacting discs."""
    cfg = smoke(
        "train.steps=600",
        "train.log_every=600",
        "train.eval_every=600",
        "train.eval_batches=8",
        "train.batch_size=64",
        "data.synthetic.n_episodes=200",
        "predictor.width=64",
        "predictor.mlp_dim=128",
        "predictor.heads=4",
        "predictor.head_dim=16",
    )
    train, val = load_windows(cfg.data)
    return cfg, val, fit(cfg, train, val, out_dir=None, resume=False, **QUIET)


def test_future_prediction_beats_copy_last(learned, tmp_path):
    _, _, result = learned
    last = result.history[-1]
    assert last["val/future_visible"] < 0.85 * last["val/copy_last"], last
    first = result.history[0]
    assert last["train/loss"] <= first["train/loss"]


def test_hidden_object_recovered_from_other_objects(learned):
    _, val, result = learned
    batch = val.sample(512, torch.Generator().manual_seed(5))
    errors = hidden_object_errors(result.model, batch, generator=torch.Generator().manual_seed(0))
    assert errors["with_context"] < 0.9 * errors["own_anchor"], errors
    assert errors["with_context"] < 0.6 * errors["copy_anchor"], errors


def run_in_two_halves(cfg, tmp_path, steps):
    train, val = load_windows(cfg.data)
    full = fit(cfg, train, val, out_dir=tmp_path / "full", resume=False, **QUIET)
    half = fit(cfg, train, val, out_dir=tmp_path / "half", stop_after=steps // 2, **QUIET)
    assert not half.resumed_from
    resumed = fit(cfg, train, val, out_dir=tmp_path / "half", **QUIET)
    assert resumed.resumed_from == steps // 2
    return full, resumed


@pytest.mark.parametrize(
    "extra",
    [
        ["optim.schedule=cosine", "optim.warmup_steps=3", "optim.optimizer=adamw"],
        [
            "predictor.dropout=0.2",
            "masking.unit=tube",
            "data.synthetic.with_agent=true",
            "predictor.aux_encoding=entity",
        ],
        [
            "variant=official",
            "predictor.head_dim=null",  # smoke sets 8 and uniform masks explicitly
            "masking.sampling=fixed_official",
            "predictor.dropout=0.2",
            "data.synthetic.with_agent=true",
            "predictor.aux_encoding=entity",
        ],
    ],
    ids=["cosine-adamw", "dropout-tube-entity", "official-entity"],
)
def test_resume_is_exact(tmp_path, extra):
    steps = 12
    cfg = smoke(f"train.steps={steps}", "train.log_every=4", "train.eval_every=4", *extra)
    full, resumed = run_in_two_halves(cfg, tmp_path, steps)
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [r["train/loss"] for r in full.history] == [r["train/loss"] for r in resumed.history]


def test_checkpoint_loads_weights_only_and_is_atomic(tmp_path):
    cfg = smoke("train.steps=4", "train.log_every=2", "train.eval_every=2")
    train, val = load_windows(cfg.data)
    fit(cfg, train, val, out_dir=tmp_path, **QUIET)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint\.pt"):
        load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("aux", ["entity", "concat", "none"])
def test_train_and_eval_step_with_every_aux_encoding(aux):
    cfg = smoke(
        "data.synthetic.with_agent=true", f"predictor.aux_encoding={aux}", "data.frameskip=2"
    )
    model = build_predictor(cfg)
    assert model.action_dim == 4  # 2-D actions x frameskip 2
    train, _ = load_windows(cfg.data)
    batch = train.sample(8, torch.Generator().manual_seed(0))
    mask = torch.zeros(8, cfg.data.history, cfg.data.n_slots, dtype=torch.bool)
    mask[:, 1:, 0] = True
    batch["mask"] = mask
    opt = build_optimizer(model, cfg.optim)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_step(model, batch, opt, loss=cfg.loss, grad_clip=1.0)
    assert set(metrics) >= {"loss", "history", "future", "proprio", "grad_norm"}
    assert (metrics["proprio"] > 0) == (aux == "entity")
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    ev = eval_step(model, batch, loss=cfg.loss)
    assert ev["copy_last"] > 0 and ev["future_visible"] > 0


@pytest.mark.parametrize("aux", ["entity", "concat"])
def test_official_variant_trains_with_embedding_proprio_and_numpy_masks(aux):
    cfg = smoke(
        "variant=official",
        "predictor.head_dim=null",
        "masking.sampling=fixed_official",
        "train.seed=3",
        "data.synthetic.with_agent=true",
        f"predictor.aux_encoding={aux}",
    )
    model = build_predictor(cfg)
    w = 32 + (2 * 10 if aux == "concat" else 0)  # concat_join=append widens the tokens
    assert model.width == w and model.blocks[0].attn.head_dim == w // 4
    assert model.blocks[0].attn.qkv.in_features == w and model.embeds_proprio
    train, _ = load_windows(cfg.data)
    loop = TrainLoop(cfg, train, device=torch.device("cpu"))
    mask = loop.masks(8, cfg.data.history, cfg.data.n_slots)
    picked = np.random.RandomState(3).choice(cfg.data.n_slots, 2, replace=False)
    want = torch.zeros_like(mask)
    want[:, 1:, torch.from_numpy(picked)] = True
    assert torch.equal(mask, want)
    batch = train.sample(8, torch.Generator().manual_seed(0))
    batch["mask"] = mask
    th = cfg.data.history
    with torch.no_grad():  # the proprio term: predicted vs target embedding of the future step
        out = model(
            batch["slots"][:, :th], mask, actions=batch["actions"], proprio=batch["proprio"]
        )
        target = model.proprio_space(batch["proprio"][:, th:])  # (B, T_p, W) or (B, T_p, 1, C)
        ref = ((out.proprio[:, th:] - target) ** 2).mean().item()
        assert forward_loss(model, batch, cfg.loss)["proprio"].item() == pytest.approx(ref)
    assert target.shape[-1] == (10 if aux == "concat" else w) and ref > 0
    metrics = train_step(model, batch, build_optimizer(model, cfg.optim), loss=cfg.loss)
    assert metrics["proprio"] == pytest.approx(ref)  # smoke has no dropout


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_foreach_optimizer_matches_the_per_parameter_loop(optimizer):
    # build_optimizer uses foreach for speed; it must not change the weights (the reference
    # table is reproduced bit for bit), so compare with torch's per-parameter loop.
    cfg = smoke(f"optim.optimizer={optimizer}", "optim.weight_decay=0.01")
    train, _ = load_windows(cfg.data)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(5):
        batch = train.sample(8, gen)
        mask = torch.rand(8, cfg.data.history, cfg.data.n_slots, generator=gen) < 0.3
        mask[:, 0] = False  # frame 0 is the identity anchor
        batch["mask"] = mask
        batches.append(batch)
    weights = []
    for make in (build_optimizer, None):
        torch.manual_seed(0)
        model = build_predictor(cfg)
        if make is None:
            cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
            opt = cls(model.parameters(), lr=cfg.optim.lr, weight_decay=0.01, foreach=False)
        else:
            opt = make(model, cfg.optim)
            assert opt.defaults["foreach"] is True
        for batch in batches:
            train_step(model, batch, opt, loss=cfg.loss, grad_clip=1.0)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(
        weights[0], torch.cat([p.flatten() for p in build_predictor(cfg).parameters()])
    )
    assert torch.equal(weights[0], weights[1])


def test_lr_schedule():
    cfg = smoke(
        "optim.schedule=cosine", "optim.warmup_steps=10", "optim.lr=1.0", "optim.min_lr_ratio=0.1"
    ).optim
    assert lr_at(0, 110, cfg) == pytest.approx(0.1)
    assert lr_at(9, 110, cfg) == pytest.approx(1.0)
    assert lr_at(60, 110, cfg) == pytest.approx(0.55)
    assert lr_at(110, 110, cfg) == pytest.approx(0.1)


def test_library_imports_without_platform_stack():
    code = (
        "import sys, cjepa, cjepa.masking, cjepa.predictor, cjepa.losses, cjepa.train, "
        "cjepa.config, cjepa.data.sources, cjepa.evaluation.probes; "
        "bad = [m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_script_trains_and_prints(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "experiments/train_world_model.py",
            "--config",
            SMOKE,
            f"train.out_dir={tmp_path}",
            "train.steps=20",
            "train.log_every=10",
            "train.eval_every=10",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "loss curve" in out and "summary:" in out
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
