"""CLEVRER as a data-only world: no simulator; its episodes come from a local copy of the
published release (``experiments/make_data.py --from clevrer PATH``, ``cjepa.data.importer``).

This module holds what the platform needs beyond the loader (``cjepa.data.clevrer``): the
oracle encoder's featuriser. Shape legend: T frames, K <= 6 objects.

States are (T, K, 6) in ``CLEVRER_STATE_COLUMNS`` order (x, y, vx, vy, angle, present), the
same columns as collide's, but in CLEVRER's scene units rather than collide's unit arena, so
the collide oracle refuses CLEVRER episodes and this featuriser scales them itself. The scales
are assumptions, not checked against the release: scene coordinates are taken to lie in about
[-EXTENT, EXTENT] and speeds to be of order SPEED; the oracle only needs inputs of order one.
"""

from __future__ import annotations

import numpy as np

from cjepa.data.episode import EpisodeData

CLEVRER_SHAPES = ("cube", "sphere", "cylinder")
CLEVRER_COLOURS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
CLEVRER_MATERIALS = ("rubber", "metal")
MAX_OBJECTS = 6  # CLEVRER scenes hold at most six objects
EXTENT = 4.0  # assumed half-width of the floor in scene units (positions / EXTENT ~ [-1, 1])
SPEED = 2.0  # assumed typical speed in scene units per second
N_ATTR = len(CLEVRER_SHAPES) + len(CLEVRER_COLOURS) + len(CLEVRER_MATERIALS)


def clevrer_features(ep: EpisodeData) -> tuple[np.ndarray, np.ndarray]:
    """Oracle features (T, K, 7) and attribute codes (K, 13) of a CLEVRER episode.

    Features per object: x / EXTENT, y / EXTENT, vx / SPEED, vy / SPEED, sin and cos of the
    angle, present. Attribute code: one-hot shape (3) + colour (8) + material (2) from
    ``info["objects"]`` (``color``/``shape``/``material`` as CLEVRER spells them; zeros for an
    unknown value or a padded object).
    """
    states = ep.states.astype(np.float64)
    _, k, f = states.shape
    if f != 6 or k > MAX_OBJECTS:
        raise ValueError(
            f"episode {ep.episode_id!r}: clevrer oracle needs states (T, K<={MAX_OBJECTS}, 6), "
            f"got {ep.states.shape}"
        )
    feats = np.stack(
        [
            states[..., 0] / EXTENT,
            states[..., 1] / EXTENT,
            states[..., 2] / SPEED,
            states[..., 3] / SPEED,
            np.sin(states[..., 4]),
            np.cos(states[..., 4]),
            states[..., 5],
        ],
        axis=-1,
    )
    attrs = np.zeros((k, N_ATTR))
    fields = (
        (0, CLEVRER_SHAPES, "shape"),
        (len(CLEVRER_SHAPES), CLEVRER_COLOURS, "color"),
        (len(CLEVRER_SHAPES) + len(CLEVRER_COLOURS), CLEVRER_MATERIALS, "material"),
    )
    for i, obj in enumerate((ep.info.get("objects") or [])[:k]):
        for offset, options, key in fields:
            if obj.get(key) in options:
                attrs[i, offset + options.index(obj[key])] = 1.0
    return feats, attrs
