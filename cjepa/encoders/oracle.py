"""Oracle encoder: ground-truth object states -> object-aligned slots. A LABELLED CONTROL.

This is not a learned encoder and its results must never be reported as one. It gives the
predictor what the C-JEPA theory assumes: perfect object alignment (slot k is always object k)
and slots that are a fixed, injective-in-practice function of each object's true state. Runs
with it bound what a perfect object-centric encoder could achieve.

Shape legend: T frames, K objects in the world state, F state features, N slots, D slot dim.

Per slot: ``slot = MLP(state features) + attribute code``, where the 2-layer MLP (tanh) and the
attribute projection have fixed random weights drawn from ``torch.Generator().manual_seed(seed)``.
State features per entity, all roughly in [-1, 1]: x, y (2u - 1), vx, vy (scaled), sin and
cos of the angle (0, 0 for entities without one), present. Absent objects (slot index >= K,
or present = 0 at that frame) get a fixed "empty" vector; the last slot is a fixed
"background" vector, mirroring a learned encoder's background slot.

Worlds: each registered world's ``WorldSpec.oracle`` (``cjepa.worlds.registry``) names its
featuriser, slot count, attribute-code size and accepted episode worlds; the built-in ones:
- ``collide``: N = 7, slots 0..5 = objects 0..5 of ``states`` (T, K <= 6, 6), slot 6 =
  background. The attribute code is a one-hot of shape (3) + colour (8) + material (2) from
  ``info["objects"]`` (zeros when absent). CLEVRER-layout episodes are refused (other units).
- ``clevrer`` (imported published data, ``cjepa.worlds.clevrer``): as collide, from CLEVRER's
  scene-unit states and its own attribute names.
- ``pusht`` (also ``dinowm_pusht`` episodes): N = 4 from the 7 state columns: agent (x, y, vx,
  vy), T-block (x, y, angle), goal (``info["goal_pose"]``, else gym-pusht's fixed
  (256, 256, pi/4)), background. The attribute code is a one-hot of the entity type.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from cjepa.data.episode import EpisodeData
from cjepa.encoders.base import json_sha256
from cjepa.worlds.registry import WORLDS, OracleSpec, world_names

VERSION = "oracle-v2"  # the default; VERSIONS lists every version that can be rebuilt
#: Per version: ``gain`` multiplies the first layer's input weights (higher = the slot bends more
#: with the state), ``attr_scale`` the attribute code's weights (the identity part of a slot).
#: oracle-v1: the identity code carries about 70% of a slot's variance, so motion moves a slot by
#: well under 1% of its variance per step. oracle-v2: state-dominant (identity about 10%, still
#: enough to tell objects apart), with a sharper embedding of position and velocity.
VERSIONS = {
    "oracle-v1": {"gain": 1.0, "attr_scale": 0.5, "feature_scale": (1, 1, 1, 1, 1, 1, 1)},
    "oracle-v2": {
        "gain": 1.0,
        "attr_scale": 0.15,
        "feature_scale": (2, 2, 0.3, 0.3, 0.15, 0.15, 1),
    },
}
COLLIDE_SHAPES = ("circle", "square", "triangle")
COLLIDE_COLOURS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
COLLIDE_MATERIALS = ("rubber", "metal")
COLLIDE_FPS = 25.0  # velocities are arena widths per frame; x FPS -> per second, O(1)
PUSHT_SIZE = 512.0  # workspace pixels
PUSHT_SPEED = 100.0  # agent velocity scale (px per second): brings typical speeds to O(1)
PUSHT_GOAL = (256.0, 256.0, math.pi / 4)  # gym-pusht's fixed goal pose
N_FEATURES = 7


def oracle_worlds() -> list[str]:
    """Registered worlds with an oracle featuriser (``WorldSpec.oracle``)."""
    return [name for name in world_names() if WORLDS[name].oracle is not None]


def _oracle_spec(world: str) -> OracleSpec:
    spec = WORLDS.get(world)
    if spec is None or spec.oracle is None:
        raise ValueError(f"oracle world must be one of {oracle_worlds()}, got {world!r}")
    return spec.oracle


def _unit(u: np.ndarray) -> np.ndarray:
    return 2.0 * u - 1.0


# ---------------------------------------------------------------------- per-world featurisers


def collide_features(ep: EpisodeData) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, K, 7) and attribute codes (K, 13) of a collide episode (module doc)."""
    states = ep.states.astype(np.float64)  # (T, K, 6): x, y, vx, vy, angle, present
    _, k, f = states.shape
    if f != 6 or k > 6:
        raise ValueError(f"episode {ep.episode_id!r}: collide oracle needs states (T, K<=6, 6),"
                         f" got {ep.states.shape}")  # fmt: skip
    feats = np.stack([
        _unit(states[..., 0]), _unit(states[..., 1]), states[..., 2] * COLLIDE_FPS,
        states[..., 3] * COLLIDE_FPS, np.sin(states[..., 4]), np.cos(states[..., 4]),
        states[..., 5],
    ], axis=-1)  # fmt: skip
    attrs = np.zeros((k, len(COLLIDE_SHAPES) + len(COLLIDE_COLOURS) + len(COLLIDE_MATERIALS)))
    objects = ep.info.get("objects") or []
    for i, obj in enumerate(objects[:k]):
        fields = ((0, COLLIDE_SHAPES, "shape"), (3, COLLIDE_COLOURS, "colour"),
                  (11, COLLIDE_MATERIALS, "material"))  # fmt: skip
        for offset, options, key in fields:
            if obj.get(key) in options:
                attrs[i, offset + options.index(obj[key])] = 1.0
    return feats, attrs


def pusht_features(ep: EpisodeData) -> tuple[np.ndarray, np.ndarray]:
    """Features (T, 3, 7) of agent, T-block and goal, and their type codes (3, 3) (module doc)."""
    if ep.states.shape[1:] != (1, 7):
        raise ValueError(f"episode {ep.episode_id!r}: pusht oracle needs states (T, 1, 7), "
                         f"got {ep.states.shape}")  # fmt: skip
    s = ep.states[:, 0].astype(np.float64)  # agent x, y, block x, y, angle, agent vx, vy
    t = s.shape[0]
    gx, gy, ga = (float(v) for v in (ep.info.get("goal_pose") or PUSHT_GOAL)[:3])
    zeros, ones = np.zeros(t), np.ones(t)
    pos = lambda v: _unit(v / PUSHT_SIZE)  # noqa: E731
    agent = [pos(s[:, 0]), pos(s[:, 1]), s[:, 5] / PUSHT_SPEED, s[:, 6] / PUSHT_SPEED,
             zeros, zeros, ones]  # fmt: skip
    block = [pos(s[:, 2]), pos(s[:, 3]), zeros, zeros, np.sin(s[:, 4]), np.cos(s[:, 4]), ones]
    goal = [pos(gx + zeros), pos(gy + zeros), zeros, zeros, math.sin(ga) + zeros,
            math.cos(ga) + zeros, ones]  # fmt: skip
    feats = np.stack([np.stack(e, axis=-1) for e in (agent, block, goal)], axis=1)
    return feats, np.eye(3)


class OracleEncoder:
    """Object-aligned slots from ground-truth states (see module doc). Implements SlotEncoder."""

    def __init__(self, world: str = "collide", slot_dim: int = 128, seed: int = 0,
                 hidden: int = 256, version: str = VERSION) -> None:  # fmt: skip
        oracle = _oracle_spec(world)
        if version not in VERSIONS:
            raise ValueError(f"oracle version must be one of {sorted(VERSIONS)}, got {version!r}")
        self.world, self.seed, self.version = world, seed, version
        self.n_slots, self.slot_dim = oracle.n_slots, slot_dim
        self._accepts, self._n_attr = oracle.accepts, oracle.n_attr
        self._featurise = oracle.featuriser()
        self.config: dict[str, Any] = {
            "kind": "oracle", "version": version, "world": world, "n_slots": self.n_slots,
            "slot_dim": slot_dim, "seed": seed, "hidden": hidden,
            "note": "labelled control: ground-truth states, perfect object alignment",
        }  # fmt: skip
        if version != "oracle-v1":  # v1's config (and so its hash) predates the knobs
            self.config.update({k: v for k, v in VERSIONS[version].items()})
            self.config["feature_scale"] = list(VERSIONS[version]["feature_scale"])
        self.hash = json_sha256(self.config)
        g = torch.Generator().manual_seed(seed)
        n_attr = oracle.n_attr

        def draw(*shape: int, fan_in: int) -> np.ndarray:
            x = torch.randn(*shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
            return x.numpy()

        # float64 weights: the embedding is then exact enough that equal inputs give equal
        # bits however the computation is batched.
        knobs = VERSIONS[version]
        scale = np.asarray(knobs["feature_scale"], np.float64)[:, None]
        self.w1 = draw(N_FEATURES, hidden, fan_in=N_FEATURES) * knobs["gain"] * scale
        self.b1 = draw(hidden, fan_in=N_FEATURES)
        self.w2 = draw(hidden, slot_dim, fan_in=hidden)
        self.w_attr = draw(n_attr, slot_dim, fan_in=1) * knobs["attr_scale"]
        self.empty = draw(slot_dim, fan_in=1)
        self.background = draw(slot_dim, fan_in=1)

    # ------------------------------------------------------------------ interface

    def features(self, ep: EpisodeData) -> tuple[np.ndarray, np.ndarray]:
        """The world's featuriser on ``ep``: features (T, K, 7) and attribute codes (K, A)."""
        feats, attrs = self._featurise(ep)
        _, k, f = feats.shape
        if f != N_FEATURES or k > self.n_slots - 1 or attrs.shape != (k, self._n_attr):
            raise ValueError(
                f"episode {ep.episode_id!r}: the {self.world!r} featuriser returned features "
                f"{feats.shape} and attributes {attrs.shape}; the oracle needs (T, K <= "
                f"{self.n_slots - 1}, {N_FEATURES}) and (K, {self._n_attr})"
            )
        return feats, attrs

    def embed(self, feats: np.ndarray, attrs: np.ndarray) -> np.ndarray:
        """Slots (T, N, D) float32 from features (T, K, 7) and attribute codes (K, A)."""
        t, k, _ = feats.shape
        h = np.tanh(feats @ self.w1 + self.b1)
        obj = h @ self.w2 + attrs @ self.w_attr  # (T, K, D)
        present = feats[..., 6:7] > 0.5
        obj = np.where(present, obj, self.empty)
        out = np.empty((t, self.n_slots, self.slot_dim))
        out[:, :k] = obj
        out[:, k : self.n_slots - 1] = self.empty
        out[:, -1] = self.background
        return out.astype(np.float32)

    def encode_episodes(self, episodes: list[EpisodeData]) -> list[np.ndarray]:
        """One (T, N, D) float32 array per episode; slot k follows object k."""
        out = []
        for ep in episodes:
            if ep.world not in self._accepts:
                raise ValueError(
                    f"episode {ep.episode_id!r} is from world {ep.world!r}; this oracle encodes "
                    f"{self.world!r} (use load_encoder('oracle:<world>'))"
                )
            out.append(self.embed(*self.features(ep)))
        return out
