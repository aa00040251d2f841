"""Oracle encoder: object-aligned, deterministic, empty slots for absent objects; a labelled
control with a config hash."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cjepa.data.episode import EpisodeData
from cjepa.encoders import OracleEncoder, SlotEncoder, load_encoder
from cjepa.worlds.collide import make_episode


@pytest.fixture(scope="module")
def episodes() -> list[EpisodeData]:
    return [make_episode(i, seed=0, frames=20, size=16, questions=False) for i in range(4)]


def test_shapes_interface_and_determinism(episodes):
    enc = load_encoder("oracle")
    assert isinstance(enc, SlotEncoder)
    assert (enc.n_slots, enc.slot_dim) == (7, 128)
    assert enc.config["kind"] == "oracle" and "control" in enc.config["note"]
    a = enc.encode_episodes(episodes)
    b = load_encoder("oracle:collide").encode_episodes(episodes[::-1])[::-1]
    for x, y, ep in zip(a, b, episodes, strict=True):
        assert x.shape == (ep.n_frames, 7, 128) and x.dtype == np.float32
        np.testing.assert_array_equal(x, y)
    assert enc.hash == load_encoder("oracle:collide").hash
    assert enc.hash != OracleEncoder("collide", seed=1).hash


def test_slot_k_follows_object_k(episodes):
    enc = OracleEncoder("collide")
    ep = episodes[0]
    slots = enc.encode_episodes([ep])[0]
    k = ep.states.shape[1]
    # Reordering the objects reorders the slots the same way (and nothing else changes).
    perm = np.roll(np.arange(k), 1)
    objects = [ep.info["objects"][i] for i in perm]
    info = {**ep.info, "objects": objects}
    swapped = dataclasses.replace(ep, states=ep.states[:, perm], info=info)
    moved = enc.encode_episodes([swapped])[0]
    np.testing.assert_array_equal(moved[:, :k], slots[:, perm])
    np.testing.assert_array_equal(moved[:, k:], slots[:, k:])
    # A change in object j's state changes slot j only.
    j = int(np.argmax(ep.states[:, :, 5].sum(axis=0)))
    present = ep.states[:, j, 5] > 0.5
    assert present.any()
    states = ep.states.copy()
    states[:, j, 0] = np.clip(states[:, j, 0] + 0.05, 0, 1)
    changed = enc.encode_episodes([dataclasses.replace(ep, states=states)])[0]
    assert not np.allclose(changed[present, j], slots[present, j])
    others = [i for i in range(7) if i != j]
    np.testing.assert_array_equal(changed[:, others], slots[:, others])


def test_identical_objects_give_identical_slots(episodes):
    ep = episodes[0]
    states = ep.states.copy()
    states[:, 1] = states[:, 0]
    objects = [dict(o) for o in ep.info["objects"]]
    objects[1] = dict(objects[0])
    twin = dataclasses.replace(ep, states=states, info={**ep.info, "objects": objects})
    slots = OracleEncoder("collide").encode_episodes([twin])[0]
    np.testing.assert_array_equal(slots[:, 0], slots[:, 1])


def test_absent_objects_get_the_empty_embedding(episodes):
    enc = OracleEncoder("collide")
    for ep, slots in zip(episodes, enc.encode_episodes(episodes), strict=True):
        k = ep.states.shape[1]
        absent = np.zeros((ep.n_frames, 6), bool)
        absent[:, :k] = ep.states[:, :, 5] < 0.5
        absent[:, k:] = True
        assert absent[:, k:].any() or k == 6
        empty, background = enc.empty.astype(np.float32), enc.background.astype(np.float32)
        assert (slots[:, :6][absent] == empty).all()
        assert not (slots[:, :6][~absent] == empty).all(axis=-1).any()
        assert (slots[:, 6] == background).all()


def test_pusht_layout():
    t = 5
    states = np.zeros((t, 1, 7), np.float32)
    states[:, 0] = [100, 200, 300, 250, 1.0, 10.0, -5.0]
    ep = EpisodeData("pusht-x", "pusht", np.zeros((t, 8, 8, 3), np.uint8), states)
    enc = load_encoder("oracle:pusht")
    slots = enc.encode_episodes([ep])[0]
    assert slots.shape == (t, 4, 128) and enc.n_slots == 4
    assert len({slots[0, i].tobytes() for i in range(4)}) == 4  # agent, block, goal, bg differ
    moved = states.copy()
    moved[:, 0, 2] += 20  # block x
    again = enc.encode_episodes([dataclasses.replace(ep, states=moved)])[0]
    assert not np.allclose(again[:, 1], slots[:, 1])
    np.testing.assert_array_equal(again[:, [0, 2, 3]], slots[:, [0, 2, 3]])


def test_wrong_world_is_refused(episodes):
    with pytest.raises(ValueError, match="oracle:<world>"):
        load_encoder("oracle:pusht").encode_episodes(episodes[:1])
    with pytest.raises(ValueError, match="oracle world"):
        load_encoder("oracle:atari")


def test_versions_rebuild_old_slots_and_default_is_state_dominant(episodes):
    from cjepa.encoders import load_encoder
    from cjepa.encoders.oracle import VERSION

    v1 = load_encoder("oracle:collide:v1")
    # oracle-v1's config (and so the hash that names its slot directories) is unchanged
    assert v1.hash[:12] == "304f34dcad91" and v1.config["version"] == "oracle-v1"
    v2 = load_encoder("oracle:collide")
    assert v2.config["version"] == VERSION == "oracle-v2" and v2.hash != v1.hash
    with pytest.raises(ValueError, match="oracle version"):
        load_encoder("oracle:collide:v9")
    # the identity code's share of a slot: large in v1, small in v2
    shares = []
    for enc in (v1, v2):
        feats, attrs = enc.features(episodes[0])
        state = np.tanh(feats @ enc.w1 + enc.b1) @ enc.w2
        ident = np.broadcast_to(attrs @ enc.w_attr, state.shape)
        present = feats[..., 6] > 0.5
        shares.append(ident[present].var(0).sum() / (state + ident)[present].var(0).sum())
    assert shares[0] > 0.5 > 0.4 > shares[1]
