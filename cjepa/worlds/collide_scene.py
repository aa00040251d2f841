"""Collide scenes without physics: constants, generator regimes, scene sampling, the episode
record. Importing this module imports no physics engine (``cjepa.worlds.collide`` simulates).

Units are those of :mod:`cjepa.worlds.collide`: normalised arena coordinates ([0, 1], origin
top-left), velocities in arena widths per frame, physics in units where the arena is 100 wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = "collide-v2"  # what make_episode writes; see REGIMES for older versions
STATE_COLUMNS = ("x", "y", "vx", "vy", "angle", "present")
FRAMES = 128
SIZE = 64
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "gray": (110, 110, 110),
    "red": (200, 40, 40),
    "blue": (45, 80, 215),
    "green": (40, 150, 40),
    "brown": (130, 80, 30),
    "purple": (130, 50, 190),
    "cyan": (40, 200, 210),
    "yellow": (235, 210, 40),
}
MATERIALS = ("rubber", "metal")
MASS = {"rubber": 1.0, "metal": 3.0}
ELASTICITY = {"rubber": 0.9, "metal": 1.0}
BACKGROUND = (228, 224, 214)

# Chipmunk's slop and bias tolerances are absolute lengths, so physics runs in units where the
# arena is 100 wide rather than 1; states are divided back to [0, 1].
ARENA = 100.0
FPS = 25.0
SUBSTEPS = 4  # collide-v1: 100 Hz physics, fast objects move < 0.6 units per substep
DAMPING = 0.9  # collide-v1: fraction of velocity kept per second, a slow slide
ITERATIONS = 10
MERGE_FRAMES = 2  # contacts of one pair restarting this soon count as the same collision
WALL_R = 5.0
# Equal areas so that shape does not leak mass: circle r, square half-side, triangle circumradius.
CIRCLE_R = 8.0
SQUARE_H = CIRCLE_R * math.sqrt(math.pi) / 2
TRIANGLE_R = CIRCLE_R * math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
OUTER = 2 * TRIANGLE_R + 2  # out-of-view walls: send back entering objects bounced outward
POLYGONS = {  # local vertices ordered by increasing angle (the renderer's half-plane test)
    "square": tuple((SQUARE_H * u, SQUARE_H * v) for u, v in ((-1, -1), (1, -1), (1, 1), (-1, 1))),
    "triangle": tuple(
        (TRIANGLE_R * math.cos(a), TRIANGLE_R * math.sin(a))
        for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
    ),
}
CIRCUMRADIUS = {"circle": CIRCLE_R, "square": SQUARE_H * math.sqrt(2), "triangle": TRIANGLE_R}
UNITS = np.array([ARENA, ARENA, ARENA * FPS, ARENA * FPS, 1.0, 1.0])  # physics -> state units


@dataclass(frozen=True)
class Regime:
    """How scenes are drawn and simulated: one entry per generator version, so data made under
    an old version is re-simulated (counterfactuals, re-derived answers) exactly as it was made.

    Speeds are arena widths per second. ``still`` is the share of objects (present at frame 0)
    that start at rest; of the movers, ``aimed`` head for another object (collisions), the rest
    move in a random direction. ``entering`` caps the objects that enter from an edge later, at a
    frame drawn from ``entry_frames`` (inclusive).
    """

    name: str
    n_objects: tuple[int, int]
    entering: int
    still: float
    aimed: float
    speed: tuple[float, float]
    entry_speed: tuple[float, float]
    entry_frames: tuple[int, int]
    damping: float
    substeps: int


#: collide-v1: the first regime (slow drift: at frameskip 2 an object moves < 1% of its slot's
#: variance per step, so copy-last is hard to beat and few windows hold a collision).
#: collide-v2: the reference regime: four to six objects, nearly all moving 3x faster and aimed
#: at each other, entries early (before frame 24) so most windows see every object; 200 Hz
#: physics so that fast objects still move < 0.8 units per substep.
REGIMES = {
    "collide-v1": Regime(
        "collide-v1", (3, 6), 2, 0.3, 0.6, (0.2, 0.45), (0.3, 0.5), (4, 64), DAMPING, SUBSTEPS
    ),
    "collide-v2": Regime(
        "collide-v2", (4, 6), 1, 0.1, 0.7, (0.7, 1.4), (0.8, 1.2), (4, 24), 0.9, 8
    ),
}


def regime_of(name: str) -> Regime:
    if name not in REGIMES:
        raise ValueError(
            f"collide generator version must be one of {sorted(REGIMES)}, got {name!r}"
        )
    return REGIMES[name]


@dataclass(frozen=True)
class Scene:
    """Per-object attributes and initial conditions (normalised units, see module doc).

    An object with ``entry_frames[k] == t > 0`` is added at frame t at ``positions[k]``, just
    outside an edge, moving inward with ``velocities[k]``; it passes through the arena wall until
    it is wholly inside.
    """

    seed: int
    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    positions: tuple[tuple[float, float], ...]
    velocities: tuple[tuple[float, float], ...]
    angles: tuple[float, ...]
    entry_frames: tuple[int, ...]
    regime: str = "collide-v1"

    def __post_init__(self) -> None:
        regime_of(self.regime)
        n = len(self.shapes)
        for name in ("colours", "materials", "positions", "velocities", "angles", "entry_frames"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Scene.{name} must have {n} entries, got {getattr(self, name)}")
        for name, values, options in (
            ("shapes", self.shapes, SHAPES),
            ("colours", self.colours, COLOURS),
            ("materials", self.materials, MATERIALS),
        ):
            if any(v not in options for v in values):
                raise ValueError(f"Scene.{name} must be drawn from {list(options)}, got {values}")

    @property
    def n_objects(self) -> int:
        return len(self.shapes)


def sample_scene(seed: int, n_objects: int | None = None, regime: str = GENERATOR_VERSION) -> Scene:
    """Draw a scene of ``regime`` from ``np.random.default_rng(seed)``; ``n_objects`` None ->
    the regime's range (3..6 in collide-v1).

    The steps below draw from one generator in a fixed order (count, attributes, which objects
    enter, placement, motion, entries, angles): reordering them changes every dataset.
    """
    rg = regime_of(regime)
    rng = np.random.default_rng(seed)
    lo, hi = rg.n_objects
    n = int(rng.integers(lo, hi + 1)) if n_objects is None else int(n_objects)
    if not 1 <= n <= 8:
        raise ValueError(f"n_objects must be in [1, 8], got {n_objects}")
    shapes, colours, materials = _draw_attributes(rng, n)
    n_enter = int(rng.integers(0, min(rg.entering, n - 2) + 1)) if n >= 3 else 0
    entering = set(rng.choice(n, n_enter, replace=False).tolist())
    inside = [k for k in range(n) if k not in entering]
    positions: list[tuple[float, float]] = [(0.0, 0.0)] * n
    velocities: list[tuple[float, float]] = [(0.0, 0.0)] * n
    entry = [0] * n
    _place(rng, shapes, inside, positions)
    _set_motion(rng, rg, inside, positions, velocities)
    _set_entries(rng, rg, shapes, sorted(entering), positions, velocities, entry)
    angles = [0.0 if s == "circle" else float(rng.uniform(0, 2 * math.pi)) for s in shapes]
    attrs = (shapes, colours, materials, positions, velocities, angles, entry)
    return Scene(int(seed), *(tuple(a) for a in attrs), regime=regime)


def _draw_attributes(rng: np.random.Generator, n: int) -> tuple[list[str], list[str], list[str]]:
    """Shapes, colours and materials with unique (colour, material, shape) so that every object
    has a name in questions."""
    while True:
        shapes = [SHAPES[i] for i in rng.integers(0, len(SHAPES), n)]
        colours = [list(COLOURS)[i] for i in rng.integers(0, len(COLOURS), n)]
        materials = [MATERIALS[i] for i in rng.integers(0, len(MATERIALS), n)]
        if len(set(zip(shapes, colours, materials, strict=True))) == n:
            return shapes, colours, materials


def _place(
    rng: np.random.Generator,
    shapes: list[str],
    inside: list[int],
    positions: list[tuple[float, float]],
) -> None:
    """Non-overlapping positions (in place) for the objects ``inside`` the arena at frame 0, by
    rejection sampling; restart if the table is too crowded."""
    placed: list[int] = []
    while len(placed) < len(inside):
        placed = []
        for k in inside:
            r = CIRCUMRADIUS[shapes[k]] / ARENA
            for _ in range(200):
                p = rng.uniform(r + 0.01, 1 - r - 0.01, 2)
                if all(
                    np.hypot(*(p - positions[m])) > r + CIRCUMRADIUS[shapes[m]] / ARENA + 0.02
                    for m in placed
                ):
                    positions[k] = (float(p[0]), float(p[1]))
                    placed.append(k)
                    break
            else:
                break


def _set_motion(
    rng: np.random.Generator,
    rg: Regime,
    inside: list[int],
    positions: list[tuple[float, float]],
    velocities: list[tuple[float, float]],
) -> None:
    """Initial velocities (in place): a share stays still, most movers aim at another object so
    that collisions are common, the rest head in a random direction."""
    for k in inside:
        if rng.random() < rg.still:
            continue
        others = [m for m in inside if m != k]
        if others and rng.random() < rg.aimed:
            target = np.asarray(positions[others[rng.integers(len(others))]])
            d = target + rng.normal(0, 0.05, 2) - np.asarray(positions[k])
        else:
            d = rng.normal(size=2)
        speed = rng.uniform(*rg.speed) / FPS
        velocities[k] = tuple(float(v) for v in d / max(np.hypot(*d), 1e-9) * speed)


def _set_entries(
    rng: np.random.Generator,
    rg: Regime,
    shapes: list[str],
    entering: list[int],
    positions: list[tuple[float, float]],
    velocities: list[tuple[float, float]],
    entry: list[int],
) -> None:
    """For each entering object (in place): a start just outside a random edge, wholly
    invisible, a velocity toward the middle of the arena and an entry frame."""
    for k in entering:
        side, along = int(rng.integers(4)), rng.uniform(0.2, 0.8)
        out = -(CIRCUMRADIUS[shapes[k]] + 0.5) / ARENA
        p = [(out, along), (1 - out, along), (along, out), (along, 1 - out)][side]
        d = rng.uniform(0.3, 0.7, 2) - np.asarray(p)
        speed = rng.uniform(*rg.entry_speed) / FPS
        positions[k] = (float(p[0]), float(p[1]))
        velocities[k] = tuple(float(v) for v in d / np.hypot(*d) * speed)
        entry[k] = int(rng.integers(rg.entry_frames[0], rg.entry_frames[1] + 1))


@dataclass
class Episode:
    """A simulated scene. frames (T, H, W, 3) uint8, masks (T, H, W) uint8 (None unless
    rendered), states (T, K, 6) float32, collisions [(frame, i, j)], wall_contacts [(frame, k)]."""

    scene: Scene
    removed: frozenset[int]
    states: np.ndarray
    collisions: list[tuple[int, int, int]]
    wall_contacts: list[tuple[int, int]]
    frames: np.ndarray | None = None
    masks: np.ndarray | None = None
