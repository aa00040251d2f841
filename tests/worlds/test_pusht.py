"""Push-T world: episode record, determinism, exact replay from stored states, split, policies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cjepa.worlds import pusht

STEPS = 40


@pytest.fixture(scope="module")
def env():
    e = pusht.make_env(96)
    yield e
    e.close()


@pytest.fixture(scope="module")
def episodes(env):
    return {
        policy: pusht.make_episode(3, seed=7, policy=policy, steps=STEPS, env=env)
        for policy in pusht.POLICIES
    }


def _replay(env, ep, *, relative: bool) -> tuple[np.ndarray, np.ndarray]:
    """Reset to the stored first state, apply the stored actions; (T, 7) states, (T, H, W, 3)."""
    obs = pusht.reset_to_state(env, ep.states[0, 0])
    states, frames = [pusht.read_state(env)], [obs["pixels"]]
    absolute = np.asarray(ep.info["abs_actions"])
    for t in range(ep.n_frames - 1):
        if relative:
            obs, *_ = pusht.step_relative(env, ep.actions[t])
        else:
            obs, *_ = env.step(absolute[t])
        states.append(pusht.read_state(env))
        frames.append(obs["pixels"])
    return np.asarray(states, dtype=np.float32), np.asarray(frames)


@pytest.mark.parametrize("policy", pusht.POLICIES)
def test_episode_record(episodes, policy):
    ep = episodes[policy]
    assert ep.episode_id == "pusht-s7-000003"
    assert ep.world == "pusht"
    assert ep.frames.shape == (STEPS, 96, 96, 3) and ep.frames.dtype == np.uint8
    assert ep.states.shape == (STEPS, 1, len(pusht.STATE_COLUMNS)) == (STEPS, 1, 7)
    assert ep.states.dtype == np.float32
    assert ep.actions.shape == (STEPS, 2) and ep.actions.dtype == np.float32
    for key in ("coverage", "is_success", "n_contacts", "block_velocity", "abs_actions"):
        assert len(ep.info[key]) == STEPS, key
    assert ep.info["goal_pose"] == pytest.approx([256.0, 256.0, np.pi / 4])
    assert ep.meta["action_space"] == "relative"
    assert ep.meta["policy"] == policy and ep.meta["seed"] == 7
    assert ep.meta["state_columns"] == list(pusht.STATE_COLUMNS)
    json.dumps(ep.info), json.dumps(ep.meta)  # shards store these as JSON
    angles = ep.states[:, 0, 4]
    assert np.all((angles >= 0) & (angles < 2 * np.pi))
    assert np.all(ep.states[0, 0, 5:] == 0)  # episodes start at rest
    # The frames are not blank and change as the agent moves.
    assert ep.frames[0].std() > 10 and np.any(ep.frames[0] != ep.frames[-1])


@pytest.mark.parametrize("policy", pusht.POLICIES)
def test_relative_actions_are_target_minus_agent(episodes, policy):
    ep = episodes[policy]
    absolute = np.asarray(ep.info["abs_actions"])
    expected = absolute - ep.states[:, 0, :2].astype(np.float64)
    np.testing.assert_allclose(ep.actions, expected, atol=1e-3)
    assert np.abs(ep.actions).max() <= pusht.MAX_REACH + 0.1


def test_same_inputs_same_arrays_and_streams_differ(env, episodes):
    again = pusht.make_episode(3, seed=7, policy="random", steps=STEPS)  # fresh env
    first = episodes["random"]
    np.testing.assert_array_equal(again.frames, first.frames)
    np.testing.assert_array_equal(again.states, first.states)
    np.testing.assert_array_equal(again.actions, first.actions)
    assert again.info == first.info
    other = pusht.make_episode(4, seed=7, policy="random", steps=STEPS, env=env)
    assert not np.array_equal(other.states[0], first.states[0])
    other_seed = pusht.make_episode(3, seed=8, policy="random", steps=STEPS, env=env)
    assert not np.array_equal(other_seed.states[0], first.states[0])


@pytest.mark.parametrize("policy", pusht.POLICIES)
def test_replay_from_stored_state_is_exact(env, episodes, policy):
    # Starts are float32-representable and targets float32-rounded, so the replay is bitwise.
    ep = episodes[policy]
    states, frames = _replay(env, ep, relative=False)
    np.testing.assert_array_equal(states, ep.states[:, 0])
    np.testing.assert_array_equal(frames, ep.frames)


@pytest.mark.parametrize("policy", pusht.POLICIES)
def test_replay_with_relative_actions_is_close(env, episodes, policy):
    # Relative actions lose float32 rounding (~1e-5 px) when turned back into targets.
    ep = episodes[policy]
    states, _ = _replay(env, ep, relative=True)
    np.testing.assert_allclose(states[:, :5], ep.states[:, 0, :5], atol=0.05)


def test_reset_to_state_sets_exact_values_and_renders_them(env):
    a = np.array([100.0, 120.0, 300.0, 280.0, 1.25, 3.0, -2.0])
    obs_a = pusht.reset_to_state(env, a)
    np.testing.assert_array_equal(pusht.read_state(env), a)
    b = a.copy()
    b[2:5] = [200.0, 330.0, 4.0]
    obs_b = pusht.reset_to_state(env, b[:5])  # 5 values: agent velocity reset to 0
    np.testing.assert_array_equal(pusht.read_state(env), [*b[:5], 0.0, 0.0])
    assert np.any(obs_a["pixels"] != obs_b["pixels"])  # the block was redrawn where it was put
    obs_a2 = pusht.reset_to_state(env, a)
    np.testing.assert_array_equal(obs_a2["pixels"], obs_a["pixels"])
    with pytest.raises(ValueError, match="5 or 7"):
        pusht.reset_to_state(env, a[:4])


def test_reset_to_state_fixes_the_env_option_offset(env):
    # gym-pusht's own reset option moves the block origin (angle applied after position).
    state = np.array([100.0, 100.0, 300.0, 300.0, 2.0])
    env.reset(options={"reset_to_state": state})
    assert np.linalg.norm(np.asarray(env.unwrapped.block.position) - state[2:4]) > 1.0
    pusht.reset_to_state(env, state)
    np.testing.assert_array_equal(np.asarray(env.unwrapped.block.position), state[2:4])


def test_split_of_is_stable_and_close_to_fraction():
    from cjepa.data import splits

    assert pusht.split_of is splits.split_of  # every world splits by the same rule
    ids = [f"pusht-s0-{i:06d}" for i in range(4000)]
    splits = [pusht.split_of(i) for i in ids]
    assert splits == [pusht.split_of(i) for i in ids]
    assert set(splits) == {"train", "val"}
    assert 0.08 < splits.count("val") / len(ids) < 0.12
    assert {pusht.split_of(i, val_fraction=0.0) for i in ids[:200]} == {"train"}
    assert {pusht.split_of(i, val_fraction=1.0) for i in ids[:200]} == {"val"}
    with pytest.raises(ValueError, match="val_fraction"):
        pusht.split_of("x", val_fraction=1.5)


def test_bad_arguments_raise(env):
    with pytest.raises(ValueError, match="policy"):
        pusht.make_episode(0, seed=0, policy="expert", steps=5, env=env)
    with pytest.raises(ValueError, match="steps"):
        pusht.make_episode(0, seed=0, steps=1, env=env)
    with pytest.raises(ValueError, match="size"):
        pusht.make_episode(0, seed=0, steps=3, size=224, env=env)  # env renders 96


def test_size_224():
    ep = pusht.make_episode(0, seed=0, steps=3, size=224)
    assert ep.frames.shape == (3, 224, 224, 3)


def test_random_policy_touches_the_block(env):
    moved = []
    for i in range(4):
        ep = pusht.make_episode(i, seed=1, policy="random", steps=100, env=env)
        s = ep.states[:, 0]
        moved.append(float(np.linalg.norm(s[-1, 2:4] - s[0, 2:4])) > 5.0)
    assert sum(moved) >= 3


def test_scripted_policy_brings_the_block_toward_the_goal(env):
    goal = np.array([0.0, 0.0, 256.0, 256.0, np.pi / 4])
    g = pusht.block_center(goal)
    before, after, coverage = [], [], []
    for i in range(4):
        ep = pusht.make_episode(i, seed=2, policy="scripted", steps=150, env=env)
        s = ep.states[:, 0].astype(np.float64)
        before.append(np.linalg.norm(pusht.block_center(s[0]) - g))
        after.append(np.linalg.norm(pusht.block_center(s[-1]) - g))
        coverage.append(ep.info["max_coverage"])
    assert np.mean(after) < 0.5 * np.mean(before)
    assert np.mean(coverage) > 0.5


def test_clone_physics_steps_exactly_like_the_env_mid_episode(env, episodes):
    # Mid-episode, with the pusher in contact: reset_to_state drops pymunk's cached contacts,
    # a physics clone keeps them, so its future equals the env's bit for bit.
    ep = episodes["scripted"]
    pusht.reset_to_state(env, ep.states[0, 0])
    absolute = np.asarray(ep.info["abs_actions"])
    for t in range(20):
        env.step(absolute[t])
    clone = pusht.clone_physics(env)
    twin = clone.copy()
    np.testing.assert_array_equal(clone.state(), pusht.read_state(env))
    for t in range(20, STEPS - 1):
        env.step(absolute[t])
        clone.step(absolute[t])
        np.testing.assert_array_equal(clone.state(), pusht.read_state(env))
    assert not np.array_equal(twin.state(), clone.state())  # copies are independent
    twin = pusht.clone_physics(env)
    pusht.step_relative(env, np.array([5.0, -3.0]))  # relative: target = agent + action
    twin.step_relative(np.array([5.0, -3.0]))
    np.testing.assert_array_equal(twin.state(), pusht.read_state(env))


def test_mixed_policy_replaces_whole_blocks_by_random_actions():
    """On a fixed state the expert's target moves only by its noise (<= 3 px sd); a random
    block's targets are N(0, 20^2) around the agent, capped at MAX_REACH. Blocks are 5 steps and
    random with probability 0.3."""
    state = np.array([100.0, 100.0, 256.0, 300.0, 0.5, 0.0, 0.0])
    goal = np.array([256.0, 256.0, np.pi / 4])
    expert = pusht.ScriptedPolicy(np.random.default_rng(0))
    ref = np.mean([expert(state, goal) for _ in range(50)], axis=0)
    mixed = pusht.MixedPolicy(np.random.default_rng(1))
    targets = np.array([mixed(state, goal) for _ in range(5 * 400)]).reshape(400, 5, 2)
    off = np.linalg.norm(targets - ref, axis=-1) > 12.0  # (blocks, steps)
    random_blocks = off.mean(1) > 0.5
    # whole blocks: a block is (almost) all random steps or all expert steps
    assert np.mean((off.mean(1) > 0.0) & (off.mean(1) < 0.6)) < 0.05
    assert 0.22 < random_blocks.mean() < 0.38  # binomial(400, 0.3): sd 0.023
    reach = np.linalg.norm(targets - state[:2], axis=-1)
    assert reach.max() <= pusht.MAX_REACH + 1e-9
    again = pusht.MixedPolicy(np.random.default_rng(1))
    np.testing.assert_array_equal(again(state, goal), targets[0, 0])
