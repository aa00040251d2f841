"""Push-T planning evaluation: start restore, goal offset, success definitions, planners end to
end (random and a tiny untrained world model), protocol record, stage, aux statistics."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cjepa.config import ExperimentConfig, from_dict
from cjepa.data.generate import generate_shards
from cjepa.data.shards import read_episode_shard, write_slot_shard
from cjepa.data.sources import aux_statistics, load_episodes
from cjepa.data.splits import list_shards
from cjepa.encoders import OracleEncoder
from cjepa.evaluation.stage import StageContext
from cjepa.planning import pusht_eval as pe
from cjepa.planning.cem import CEMConfig
from cjepa.planning.pusht_planners import (
    PLANNERS,
    RandomPlanner,
    build_planner,
    oracle_cost,
    world_model_planner,
)
from cjepa.planning.render import write_outputs
from cjepa.planning.stage import planning_controls, planning_stage
from cjepa.train import build_predictor, save_checkpoint
from cjepa.worlds import pusht

VAL = 0.5  # half the tiny dataset is held out, so a few val episodes exist
FRAMES, OFFSET, MIN_START = 40, 8, 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht")
    kwargs = {"steps": FRAMES, "size": 32, "policy": "scripted"}
    generate_shards("pusht", 12, 0, out, shard_size=12, workers=1, world_kwargs=kwargs)
    return out


@pytest.fixture(scope="module")
def data(data_dir):
    return pe.load_data(data_dir, VAL)


def protocol(**kw) -> pe.PlanProtocol:
    base = dict(episodes=2, seeds=[0], offset=OFFSET, budget=8, val_fraction=VAL,
                min_start=MIN_START, nontrivial=False,
                cem=CEMConfig(samples=8, elites=2, iterations=2, horizon=2))  # fmt: skip
    return pe.PlanProtocol(**(base | kw))


def test_rollout_restores_stored_start_and_goal_is_offset_later(data):
    prot = protocol(episodes=3)
    chosen = pe.select_episodes(data, prot, seed=0)
    roll = pe.Rollout(chosen, prot)
    try:
        # the restored env re-renders the stored start frame (rare anti-aliasing differences)
        assert np.mean(np.array(roll.pixel_diff) == 0) >= 0.5
        for b, (ep, s) in enumerate(chosen):
            stored = ep.states[:, 0].astype(np.float64)
            np.testing.assert_allclose(pusht.read_state(roll.envs[b])[:5], stored[s, :5], atol=1e-5)
            np.testing.assert_array_equal(roll.states[b, roll.now], stored[s])
            np.testing.assert_array_equal(
                roll.states[b, : roll.now + 1], stored[s - MIN_START : s + 1]
            )
            np.testing.assert_array_equal(roll.goals[b], stored[s + OFFSET])
            np.testing.assert_array_equal(roll.goal_frames[b], ep.frames[s + OFFSET])
            assert MIN_START <= s <= ep.n_frames - 1 - OFFSET
    finally:
        roll.close()


def test_rollout_refuses_a_start_it_cannot_restore(data, monkeypatch):
    real = pusht.reset_to_state

    def shifted(env, row, **kw):  # restores the block 1 px off
        row = np.array(row, dtype=np.float64)
        row[2] += 1.0
        return real(env, row, **kw)

    monkeypatch.setattr(pusht, "reset_to_state", shifted)
    with pytest.raises(ValueError, match="restored state is off"):
        pe.Rollout(pe.select_episodes(data, protocol(), 0), protocol())


def test_select_episodes_is_seeded_and_skips_trivial_starts(data):
    prot = protocol(episodes=3, nontrivial=True)
    a, b = pe.select_episodes(data, prot, 0), pe.select_episodes(data, prot, 0)
    assert [(e.episode_id, s) for e, s in a] == [(e.episode_id, s) for e, s in b]
    assert len({e.episode_id for e, _ in a}) == 3  # distinct episodes
    for ep, s in a:
        st = ep.states[:, 0]
        assert not pe.success(st[s], st[s + OFFSET], "block")
    draws = {
        tuple((e.episode_id, s) for e, s in pe.select_episodes(data, prot, k)) for k in range(4)
    }
    assert len(draws) > 1  # other seeds, other starts
    with pytest.raises(ValueError, match=r"protocol\.episodes=99"):
        pe.select_episodes(data, protocol(episodes=99), 0)


GOAL = np.array([100.0, 100.0, 200.0, 200.0, 0.05, 0.0, 0.0])


def state(agent=(0, 0), block=(0, 0), angle=0.05):
    s = GOAL.copy()
    s[:2] += agent
    s[2:4] += block
    s[4] = angle
    return s


@pytest.mark.parametrize(
    ("s", "block", "public"),
    [
        (state(), True, True),
        (state(agent=(50, 0)), True, False),  # public also scores the agent
        (state(block=(15, 0)), True, True),
        (state(agent=(0, 15), block=(15, 0)), True, False),  # 15 and 15 -> 21.2 over 4 dims
        (state(block=(20, 0)), False, False),  # strict threshold
        (state(angle=2 * math.pi - 0.05), True, True),  # wraps: 0.1 rad apart
        (state(angle=0.05 + math.pi / 9 + 0.01), False, False),
        # public's min(d, 2 pi - d) assumes angles in [0, 2 pi): d = 3 pi gives -pi, a "match"
        (state(angle=0.05 + 3 * math.pi), False, True),
    ],
)
def test_success_definitions(s, block, public):
    assert bool(pe.success(s, GOAL, "block")) is block
    assert bool(pe.success(s, GOAL, "public")) is public
    assert pe.success(np.stack([s, GOAL]), np.stack([GOAL, GOAL]), "block").shape == (2,)


def test_protocol_validates_and_records_every_setting():
    with pytest.raises(ValueError, match=r"protocol\.success"):
        protocol(success="coverage")
    with pytest.raises(ValueError, match=r"protocol\.when"):
        protocol(when="sometimes")
    with pytest.raises(ValueError, match=r"protocol\.seeds"):
        protocol(seeds=[1, 1])
    d = protocol().to_dict()
    assert {f.name for f in dataclasses.fields(pe.PlanProtocol)} <= set(d)
    assert d["cem"] == CEMConfig(samples=8, elites=2, iterations=2, horizon=2).to_dict()
    json.dumps(d)


def check_result(result, prot, n_rows):
    assert 0.0 <= result["success_rate"] <= 1.0 and result["wall_s"] > 0
    assert set(result["success_rates"]) == {f"{d}/{w}" for d in pe.SUCCESS for w in pe.WHEN}
    assert len(result["episodes"]) == n_rows
    p = result["protocol"]
    for key in (
        "episodes",
        "seeds",
        "offset",
        "budget",
        "success",
        "when",
        "cem",
        "min_start",
        "val_fraction",
        "nontrivial",
        "clip_actions",
        "headline",
        "planner",
        "history",
    ):
        assert key in p, key  # fmt: skip
    assert p["budget"] == prot.budget and p["headline"] == f"{prot.success}/{prot.when}"
    assert set(p["episode_ids"]) == {str(s) for s in prot.seeds}
    for row in result["episodes"]:
        assert row["goal"] - row["start"] == prot.offset
        json.dumps(row)
    json.dumps(result)


def test_random_planner_end_to_end(data, tmp_path):
    prot = protocol(seeds=[0, 1], success="public", when="any_step")
    result = pe.evaluate(RandomPlanner(data.action_stats()), data, prot)
    check_result(result, prot, n_rows=4)
    assert result["success_rate"] == result["success_rates"]["public/any_step"]
    lo, hi = data.train_actions.min(0), data.train_actions.max(0)
    assert result["protocol"]["planner"]["low"] == pytest.approx(lo.tolist())
    assert result["protocol"]["planner"]["high"] == pytest.approx(hi.tolist())
    paths = write_outputs(result, tmp_path, strips=2)
    assert [p.name for p in paths] == ["plan.json", "episodes.csv", "strips.png"]
    assert json.loads(paths[0].read_text())["success_rate"] == result["success_rate"]
    assert len(paths[1].read_text().splitlines()) == 5


class StillPlanner:
    """A toy planner for the registry test: zero relative actions, two env steps per call."""

    name = "still"

    def settings(self):
        return {"planner": "still"}

    def begin(self, rollout, seed):
        self.acts = 0

    def act(self, rollout):
        self.acts += 1
        return np.zeros((rollout.batch, 2, 2))

    def calls(self):
        return {"acts": self.acts}


def test_a_planner_registered_by_name_runs_end_to_end(data, monkeypatch):
    monkeypatch.setitem(PLANNERS, "still", lambda data, protocol, device: StillPlanner())
    prot = protocol(budget=6)
    result = pe.evaluate(build_planner("still", data, prot), data, prot)
    check_result(result, prot, n_rows=2)
    # budget 6 env steps, 2 per act: 3 calls per seed
    assert result["planner"] == "still" and result["per_seed"]["0"]["acts"] == 3
    with pytest.raises(FileNotFoundError, match="'still'"):
        build_planner("missing", data, prot)


def test_replaying_the_stored_actions_reaches_every_goal(data):
    """The protocol check: restore + goal offset are consistent with the stored trajectory."""
    prot = protocol(episodes=3, budget=OFFSET + 4, seeds=[0, 1])
    result = pe.evaluate(build_planner("replay", data, prot), data, prot)
    check_result(result, prot, n_rows=6)
    assert result["success_rates"] == {k: 1.0 for k in result["success_rates"]}
    # mid-episode restores drop pymunk's cached contacts, so a pushed block may drift a little
    errors = [r["block_pos_err"] for r in result["episodes"]]
    assert max(errors) < 5.0 and min(errors) < 0.01
    assert result["protocol"]["cem"] is None


@pytest.fixture(scope="module")
def model_ckpt(data_dir, tmp_path_factory):
    """Oracle slots (D=16) of the tiny dataset and an untrained tiny predictor checkpoint."""
    root = tmp_path_factory.mktemp("wm")
    enc = OracleEncoder("pusht", slot_dim=16)
    eps = [e for p in list_shards(data_dir, "episodes") for e in read_episode_shard(p)]
    slots = enc.encode_episodes(eps)
    write_slot_shard(root / "slots.parquet", [e.episode_id for e in eps for _ in range(FRAMES)],
                     np.tile(np.arange(FRAMES), len(eps)), np.concatenate(slots),
                     encoder_hash=enc.hash, encoder_config=enc.config)  # fmt: skip
    cfg = from_dict(ExperimentConfig, {
        "data": {"source": "slots", "world": "pusht", "slot_dir": str(root), "n_slots": 4,
                 "episode_dir": str(data_dir), "slot_dim": 16, "history": 3, "n_future": 1,
                 "frameskip": 2, "val_fraction": VAL},
        "predictor": {"width": 16, "depth": 1, "heads": 2, "head_dim": 8, "mlp_dim": 32,
                      "dropout": 0.0}})  # fmt: skip
    torch.manual_seed(0)
    model = build_predictor(cfg)
    save_checkpoint(root / "model.pt", {"model": model.state_dict(), "config": cfg.to_dict()})
    return cfg, model, root / "model.pt"


@pytest.fixture(scope="module")
def short_model_ckpt(model_ckpt, tmp_path_factory):
    """The tiny predictor with right-aligned short histories (the official protocol's need)."""
    cfg, _, _ = model_ckpt
    pred = dataclasses.replace(cfg.predictor, short_history="right_align")
    cfg = dataclasses.replace(cfg, predictor=pred)
    torch.manual_seed(0)
    model = build_predictor(cfg)
    path = tmp_path_factory.mktemp("wm_short") / "model.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})
    return cfg, model, path


def test_official_protocol_plans_from_one_frame(data_dir, short_model_ckpt):
    _, _, path = short_model_ckpt
    cem = CEMConfig(samples=8, elites=2, iterations=2, horizon=2)
    prot = pe.PlanProtocol.preset("official", episodes=2, seeds=[0], offset=OFFSET, budget=8,
                                  frameskip=2, val_fraction=VAL, cem=cem)  # fmt: skip
    data = pe.load_data(data_dir, VAL, "train")
    planner = build_planner(str(path), data, prot)
    result = pe.evaluate(planner, data, prot)
    check_result(result, prot, n_rows=2)
    assert result["protocol"]["planner"]["history"] == 1
    assert result["protocol"]["planner"]["model_history"] == 3
    assert result["success_rate"] == result["success_rates"]["public/any_step"]
    # each plan's cost saw exactly one history frame: T = 1 slots, no executed blocks
    roll = pe.Rollout(pe.select_episodes(data, prot, 0), prot)
    try:
        planner.begin(roll, 0)
        cost = planner.cost_fn(roll)
        assert cost.history_slots.shape[1] == 1 and cost.history_actions.shape[1] == 0
    finally:
        roll.close()


def test_world_model_plans_from_fewer_kept_frames_than_its_history_spans(data, model_ckpt):
    # min_start 1 < (T_h - 1) x f = 4: the cost's history reaches before the kept frames, so its
    # first action blocks are partly unknown (zero, the dataset mean), not a crash
    _, _, path = model_ckpt
    prot = protocol(min_start=1)
    planner = build_planner(str(path), data, prot)
    roll = pe.Rollout(pe.select_episodes(data, prot, 0), prot)
    try:
        planner.begin(roll, 0)
        past = planner.cost_fn(roll).history_actions  # (B, T_h - 1, f * 2)
        assert past.shape == (roll.batch, planner.th - 1, 2 * planner.f)
        assert torch.isfinite(past).all()
        # the one kept action (start - 1 -> start) is the last step of the last block
        want = planner.normalise(roll.actions[:, -1:][:, None]).flatten(2)[:, 0]
        torch.testing.assert_close(past[:, -1, -2:].cpu(), want.to(past.dtype))
        assert (past[:, 0] == 0).all()  # before the first kept frame: unknown
    finally:
        roll.close()
    result = pe.evaluate(planner, data, prot)
    check_result(result, prot, n_rows=2)


def test_world_model_planner_end_to_end(data, model_ckpt):
    cfg, _, path = model_ckpt
    prot = protocol()
    planner = build_planner(str(path), data, prot)
    assert planner.match == "hungarian"
    result = pe.evaluate(planner, data, prot)
    check_result(result, prot, n_rows=2)
    # budget 8 env steps = 2 plans of horizon 2 blocks x frameskip 2; each plan = 2 CEM
    # iterations x 2 predictor forwards (T_p = 1): 8 predictor calls per episode.
    assert result["predictor_calls_per_episode"] == 8
    assert result["per_seed"]["0"]["plans"] == 2
    settings = result["protocol"]["planner"]
    assert settings["frameskip"] == 2 and settings["match"] == "hungarian"
    stats = aux_statistics(cfg.data)
    assert settings["action_mean"] == pytest.approx(stats["action_mean"].tolist())


def test_world_model_planner_refuses_mismatches(data, model_ckpt):
    cfg, model, path = model_ckpt
    with pytest.raises(ValueError, match="patch"):
        world_model_planner(cfg, model, protocol(), encoder=None, patch=True)
    with pytest.raises(ValueError, match="val_fraction"):
        build_planner(str(path), data, protocol(val_fraction=0.9))
    with pytest.raises(FileNotFoundError, match="not 'random', 'replay'"):
        build_planner(str(path) + ".missing", data, protocol())


def test_aux_statistics_match_training_normalisation(model_ckpt):
    cfg = model_ckpt[0]
    train, _ = load_episodes(cfg.data)
    stats = aux_statistics(cfg.data)
    flat = torch.cat(train.actions)  # z-scored with the training statistics
    raw = flat * stats["action_std"] + stats["action_mean"]
    assert raw.min(0).values == pytest.approx(stats["action_min"].tolist(), abs=1e-4)
    torch.testing.assert_close(flat.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert stats["proprio_mean"].shape == (4,)


def test_planning_stage_writes_table_and_strips(model_ckpt, tmp_path):
    cfg, model, _ = model_ckpt
    state = {"model": model.state_dict(), "history": [], "step": 0}
    opts = {"episodes": 2, "seeds": [0], "samples": 8, "elites": 2, "iterations": 1,
            "offset": OFFSET, "budget": 10, "strips": 1}  # fmt: skip
    out = planning_stage(cfg, state, StageContext(out_dir=tmp_path, options=opts))
    assert {"plan/success_rate", "plan/wall_s", "plan/predictor_calls_per_episode",
            "plan/success_public_any_step"} <= set(out)  # fmt: skip
    assert (tmp_path / "episodes.csv").exists() and (tmp_path / "strips.png").exists()
    assert not (tmp_path / "videos").exists()  # videos default to 0
    planning_stage(cfg, state, StageContext(out_dir=tmp_path, options={**opts, "videos": 1}))
    (gif,) = (tmp_path / "videos").glob("plan_*.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 1 + opts["budget"]
    with pytest.raises(ValueError, match="unknown option"):
        planning_stage(cfg, state, StageContext(out_dir=tmp_path, options={"sample": 3}))
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, world="collide"))
    with pytest.raises(ValueError, match="Push-T"):
        planning_stage(other, state, StageContext(out_dir=tmp_path))


def test_planning_controls_give_floor_and_ceiling_on_the_trials_episodes(model_ckpt, tmp_path):
    from cjepa.evaluation.controls import run_controls
    from cjepa.metrics import METRICS, resolve

    cfg = model_ckpt[0]
    opts = {"episodes": 2, "seeds": [0], "samples": 8, "elites": 2, "iterations": 1,
            "offset": OFFSET, "budget": 10, "strips": 0,
            "oracle": {"samples": 16, "elites": 4, "iterations": 2}}  # fmt: skip
    ctx = StageContext(out_dir=tmp_path, options=opts)
    out = planning_controls(cfg, ctx)
    for name in ("random", "oracle"):
        assert 0.0 <= out[f"control/{name}/plan/success_rate"] <= 1.0
        got = json.loads((tmp_path / name / "planning" / "plan.json").read_text())
        assert got["planner"] == name and got["protocol"]["offset"] == OFFSET
    # the oracle plans with its own CEM budget, on the same episodes as the random floor
    oracle = json.loads((tmp_path / "oracle" / "planning" / "plan.json").read_text())
    rand = json.loads((tmp_path / "random" / "planning" / "plan.json").read_text())
    assert oracle["protocol"]["cem"]["samples"] == 16
    assert oracle["protocol"]["episode_ids"] == rand["protocol"]["episode_ids"]
    # run_controls picks them up for a planning stage, and the table's references resolve
    both = run_controls(cfg, {"planning": opts}, StageContext(out_dir=tmp_path / "c"))
    assert {k for k in both if k.startswith("control/")} >= set(out)
    refs = {r.kind: resolve(r, both) for r in METRICS["plan/success_rate"].references}
    assert refs == {"floor": both["control/random/plan/success_rate"],
                    "ceiling": both["control/oracle/plan/success_rate"]}  # fmt: skip
    with pytest.raises(ValueError, match="oracle: unknown CEM field"):
        planning_controls(cfg, StageContext(out_dir=tmp_path, options={"oracle": {"sample": 3}}))


OFFICIAL = {
    "split": "train", "nontrivial": False, "offset": 25, "budget": 50, "min_start": 0,
    "history": 1, "frameskip": 5, "match": "hungarian", "execute": None, "success": "public",
    "when": "any_step", "episodes": 50, "seeds": [0, 1, 2], "clip_actions": True,
}  # fmt: skip
CJEPA = {
    "split": "val", "nontrivial": True, "offset": 25, "budget": 50, "min_start": 10,
    "history": None, "frameskip": None, "match": "auto", "execute": None, "success": "public",
    "when": "final", "episodes": 50, "seeds": [0, 1, 2], "clip_actions": True,
}  # fmt: skip
PAPER_CEM = {"samples": 300, "elites": 30, "iterations": 30, "horizon": 5, "init_std": 1.0,
             "min_std": 0.0, "momentum": 0.0, "returns": "mean"}  # fmt: skip


@pytest.mark.parametrize(("name", "pinned"), [("official", OFFICIAL), ("cjepa", CJEPA)])
def test_presets_pin_every_setting(name, pinned):
    prot = pe.PlanProtocol.preset(name)
    assert prot.name == name
    assert {k: getattr(prot, k) for k in pinned} == pinned
    # official: the paper's CEM exactly; cjepa: the same budget, returning the best candidate
    assert prot.cem.to_dict() == PAPER_CEM | ({"returns": "best"} if name == "cjepa" else {})
    d = prot.to_dict()
    assert d["preset"] == name and d["overrides"] == {}
    assert {k: d[k] for k in pinned} == pinned
    json.dumps(d)


def test_preset_overrides_are_applied_and_recorded():
    prot = pe.protocol_from_options("official", {"samples": 64, "elites": 8, "episodes": 20})
    assert prot.cem.samples == 64 and prot.cem.iterations == 30 and prot.episodes == 20
    over = prot.to_dict()["overrides"]
    assert set(over) == {"cem", "episodes"} and over["episodes"] == 20
    assert over["cem"]["samples"] == 64 and over["cem"]["elites"] == 8
    # an override equal to the preset's value is no override
    assert pe.protocol_from_options("official", {"budget": 50}).overrides() == {}
    assert pe.PlanProtocol().overrides() == {}  # the dataclass defaults are the cjepa preset
    assert pe.protocol_from_options("official", {"history": None}).overrides() == {"history": None}
    with pytest.raises(ValueError, match="unknown protocol setting"):
        pe.PlanProtocol.preset("official", sample=3)
    with pytest.raises(ValueError, match="preset must be one of"):
        pe.PlanProtocol.preset("dino")
    with pytest.raises(ValueError, match=r"protocol\.split"):
        pe.PlanProtocol.preset("cjepa", split="test")


def test_official_protocol_draws_training_starts_anywhere(data_dir):
    train = pe.load_data(data_dir, VAL, "train")
    val_ids = {e.episode_id for e in pe.load_data(data_dir, VAL).episodes}
    assert train.split == "train" and not val_ids & {e.episode_id for e in train.episodes}
    prot = pe.PlanProtocol.preset("official", episodes=3, seeds=[0], offset=OFFSET,
                                  val_fraction=VAL)  # fmt: skip
    chosen = pe.select_episodes(train, prot, 0)
    assert all(e.episode_id not in val_ids for e, _ in chosen)
    with pytest.raises(ValueError, match="split"):
        pe.select_episodes(pe.load_data(data_dir, VAL), prot, 0)


def test_cli_records_preset_and_overrides(data_dir, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "experiments/plan_pusht.py"
    spec = importlib.util.spec_from_file_location("plan_pusht", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    main = script.main
    out = tmp_path / "replay.json"
    main(["--data", str(data_dir), "--model", "replay", "--protocol", "official",
          "--episodes", "2", "--seeds", "0", "--offset", str(OFFSET), "--budget", "10",
          "--val-fraction", str(VAL), "--strips", "0", "--json", str(out)])  # fmt: skip
    p = json.loads(out.read_text())["protocol"]
    assert p["preset"] == "official" and p["split"] == "train" and p["history"] == 1
    assert p["overrides"] == {"episodes": 2, "seeds": [0], "offset": OFFSET, "budget": 10,
                              "val_fraction": VAL}  # fmt: skip
    assert p["headline"] == "public/any_step"


def test_official_history_needs_a_short_history_predictor(data_dir, model_ckpt):
    cfg, model, _ = model_ckpt
    prot = pe.PlanProtocol.preset("official", frameskip=2, val_fraction=VAL)
    with pytest.raises(ValueError, match="short_history") as err:
        world_model_planner(cfg, model, prot, encoder=None)
    assert "\n" not in str(err.value) and "protocol.history=1" in str(err.value)
    with pytest.raises(ValueError, match="frameskip"):  # the model's is 2, official's 5
        world_model_planner(
            cfg,
            model,
            pe.PlanProtocol.preset("official", history=None, val_fraction=VAL),
            encoder=None,
        )


@pytest.mark.parametrize("definition", pe.SUCCESS)
def test_oracle_cost_matches_the_success_definition(definition):
    rng = np.random.default_rng(0)
    goals = np.tile(GOAL, (4000, 1))
    states = goals.copy()
    states[:, :4] += rng.normal(0, 12, size=(4000, 4))
    states[:, 4] = (states[:, 4] + rng.normal(0, 0.3, 4000)) % (2 * np.pi)
    cost = oracle_cost(states, goals, definition)
    ok = pe.success(states, goals, definition)
    assert 0.1 < ok.mean() < 0.9  # both outcomes occur
    assert ok[cost < 1].all()  # both terms below their tolerance
    assert (cost[ok] < 2).all()
    # a state with the block on target and the agent 50 px off: success only for "block"
    off = state(agent=(50, 0))
    assert (oracle_cost(off, GOAL, definition) < 1) == (definition == "block")


def test_oracle_planner_scores_by_the_protocol_definition(data):
    prot = protocol(success="public", when="any_step", episodes=2,
                    cem=CEMConfig(samples=4, elites=2, iterations=1, horizon=2))  # fmt: skip
    planner = build_planner("oracle", data, prot)
    assert planner.settings()["cost_definition"] == "public"
    assert "agent_xy" in planner.settings()["cost"]
    roll = pe.Rollout(pe.select_episodes(data, prot, 0), prot)
    try:
        planner.begin(roll, 0)
        cost = planner.cost_fn(roll)
        zero = torch.zeros(roll.batch, 1, 2, 2 * planner.f)  # the mean action for 2 blocks
        got = cost(zero)[:, 0].numpy()
        sims = [pusht.clone_physics(e) for e in roll.envs]
        for sim in sims:
            for a in planner.raw(zero[:1, 0])[0]:
                sim.step_relative(a)
        ends = np.stack([s.state() for s in sims])
        np.testing.assert_allclose(
            got, oracle_cost(ends, roll.goals, "public"), rtol=1e-6
        )  # float32
        assert not np.allclose(got, oracle_cost(ends, roll.goals, "block"))
    finally:
        roll.close()


def test_planning_stage_takes_a_protocol_preset(model_ckpt, tmp_path):
    cfg, model, _ = model_ckpt
    state = {"model": model.state_dict(), "history": [], "step": 0}
    opts = {"protocol": "official", "history": None, "frameskip": None, "episodes": 2,
            "seeds": [0], "samples": 8, "elites": 2, "iterations": 1, "horizon": 2,
            "offset": OFFSET, "budget": 4, "strips": 0}  # fmt: skip
    out = planning_stage(cfg, state, StageContext(out_dir=tmp_path, options=opts))
    assert out["plan/success_rate"] == out["plan/success_public_any_step"]
    p = json.loads((tmp_path / "plan.json").read_text())["protocol"]
    assert p["preset"] == "official" and p["split"] == "train"
    assert p["overrides"]["history"] is None and p["overrides"]["val_fraction"] == VAL
    assert p["planner"]["history"] == cfg.data.history
    with pytest.raises(ValueError, match="short_history"):  # official's 1-frame history
        planning_stage(cfg, state, StageContext(out_dir=tmp_path, options={"protocol": "official",
                                                "frameskip": None}))  # fmt: skip
