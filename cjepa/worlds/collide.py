"""CLEVRER-style 2-D collision world: pymunk physics, numpy rasterisation, exact counterfactuals.

A top-down table (no gravity, no friction, light damping) with 3-6 objects, each a circle, square
or triangle of one of 8 colours and rubber (light, elasticity 0.9) or metal (3x heavier,
elasticity 1.0, drawn with a specular highlight). Objects start in the arena or enter it later
from an edge. Shapes: T frames, H = W = ``size`` pixels, K objects, F = 6 state columns.

Units and conventions:
- ``states`` (T, K, 6) float32, columns :data:`STATE_COLUMNS`: x, y in normalised arena
  coordinates ([0, 1], origin top-left, y grows downward like image rows), vx, vy in arena widths
  per frame, angle in radians wrapped to [-pi, pi], present in {0, 1}. present = 1 iff the object's
  footprint overlaps the arena; rows with present = 0 are all zeros.
- ``masks`` (T, H, W) uint8: 0 background, k + 1 for object k (later objects drawn on top).
- A collision ``(frame, i, j)`` (i < j) is the first stored frame after a contact *starts*
  (restarts within :data:`MERGE_FRAMES` are the same collision); wall contacts ``(frame, k)``
  likewise. Frames run at :data:`FPS`, 128 frames = 5.12 s.

Counterfactuals: ``simulate(scene, remove={x})`` keeps x in the space as a *ghost* that collides
with walls but not with objects. Chipmunk resolves contacts in the order its bounding-box tree
reports them, and that tree holds every shape; deleting x outright would reshape the tree and
reorder the remaining contacts, so an object that touched nothing could still nudge the others in
the last bits. A ghost of an untouched object follows its factual path, the tree is identical, and
every other trajectory is bit-identical (deleting the body instead breaks this for 2 of 657
untouched objects over seeds 1000-2999: tests pin those seeds); a ghost of a colliding object leaves
everything unchanged up to its first object contact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pymunk

from cjepa.data.episode import EpisodeData
from cjepa.worlds import questions as q

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
OBJECT, WALL = 1, 2  # collision types
CAT_OBJECT, CAT_GHOST, CAT_INNER, CAT_OUTER = 1, 2, 4, 8  # shape-filter category bits


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
    the regime's range (3..6 in collide-v1)."""
    rg = regime_of(regime)
    rng = np.random.default_rng(seed)
    lo, hi = rg.n_objects
    n = int(rng.integers(lo, hi + 1)) if n_objects is None else int(n_objects)
    if not 1 <= n <= 8:
        raise ValueError(f"n_objects must be in [1, 8], got {n_objects}")
    while True:  # unique (colour, material, shape) so every object has a name in questions
        shapes = [SHAPES[i] for i in rng.integers(0, len(SHAPES), n)]
        colours = [list(COLOURS)[i] for i in rng.integers(0, len(COLOURS), n)]
        materials = [MATERIALS[i] for i in rng.integers(0, len(MATERIALS), n)]
        if len(set(zip(shapes, colours, materials, strict=True))) == n:
            break
    n_enter = int(rng.integers(0, min(rg.entering, n - 2) + 1)) if n >= 3 else 0
    entering = set(rng.choice(n, n_enter, replace=False).tolist())
    inside = [k for k in range(n) if k not in entering]
    positions: list[tuple[float, float]] = [(0.0, 0.0)] * n
    velocities: list[tuple[float, float]] = [(0.0, 0.0)] * n
    entry = [0] * n
    placed: list[int] = []
    while len(placed) < len(inside):  # rejection sampling; restart if the table is too crowded
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
    for k in inside:  # aim most movers at another object so that collisions are common
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
    for k in sorted(entering):
        side, along = int(rng.integers(4)), rng.uniform(0.2, 0.8)
        out = -(CIRCUMRADIUS[shapes[k]] + 0.5) / ARENA  # wholly outside, invisible at entry
        p = [(out, along), (1 - out, along), (along, out), (along, 1 - out)][side]
        d = rng.uniform(0.3, 0.7, 2) - np.asarray(p)
        speed = rng.uniform(*rg.entry_speed) / FPS
        positions[k] = (float(p[0]), float(p[1]))
        velocities[k] = tuple(float(v) for v in d / np.hypot(*d) * speed)
        entry[k] = int(rng.integers(rg.entry_frames[0], rg.entry_frames[1] + 1))
    angles = [0.0 if s == "circle" else float(rng.uniform(0, 2 * math.pi)) for s in shapes]
    attrs = (shapes, colours, materials, positions, velocities, angles, entry)
    return Scene(int(seed), *(tuple(a) for a in attrs), regime=regime)


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


def _bounds(shape: str, x: float, y: float, angle: float) -> tuple[float, float, float, float]:
    """Exact axis-aligned footprint (xmin, xmax, ymin, ymax) in physics units."""
    if shape == "circle":
        return x - CIRCLE_R, x + CIRCLE_R, y - CIRCLE_R, y + CIRCLE_R
    c, s = math.cos(angle), math.sin(angle)
    xs = [x + c * u - s * v for u, v in POLYGONS[shape]]
    ys = [y + s * u + c * v for u, v in POLYGONS[shape]]
    return min(xs), max(xs), min(ys), max(ys)


def _filter(ghost: bool, inside: bool) -> pymunk.ShapeFilter:
    """Ghosts (removed objects) meet walls only; the arena wall stops an object once inside."""
    walls = CAT_OUTER | (CAT_INNER if inside else 0)
    if ghost:
        return pymunk.ShapeFilter(categories=CAT_GHOST, mask=walls)
    return pymunk.ShapeFilter(categories=CAT_OBJECT, mask=CAT_OBJECT | walls)


def _add_walls(space: pymunk.Space) -> None:
    for offset, category in ((WALL_R, CAT_INNER), (OUTER + WALL_R, CAT_OUTER)):
        lo, hi = -offset, ARENA + offset
        corners = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            seg = pymunk.Segment(space.static_body, a, b, WALL_R)
            seg.elasticity, seg.friction, seg.collision_type = 1.0, 0.0, WALL
            seg.filter = pymunk.ShapeFilter(categories=category)
            space.add(seg)


def _add_object(space: pymunk.Space, scene: Scene, k: int, ghost: bool) -> pymunk.Shape:
    kind, mass = scene.shapes[k], MASS[scene.materials[k]]
    if kind == "circle":
        body = pymunk.Body(mass, pymunk.moment_for_circle(mass, 0, CIRCLE_R))
        shape: pymunk.Shape = pymunk.Circle(body, CIRCLE_R)
    else:
        body = pymunk.Body(mass, pymunk.moment_for_poly(mass, POLYGONS[kind]))
        shape = pymunk.Poly(body, POLYGONS[kind])
    body.position = (scene.positions[k][0] * ARENA, scene.positions[k][1] * ARENA)
    body.velocity = (scene.velocities[k][0] * ARENA * FPS, scene.velocities[k][1] * ARENA * FPS)
    body.angle = scene.angles[k]
    shape.elasticity, shape.friction = ELASTICITY[scene.materials[k]], 0.0
    shape.collision_type = OBJECT
    shape.filter = _filter(ghost, inside=scene.entry_frames[k] == 0)
    space.add(body, shape)
    return shape


def _merge(events: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Sorted events (frame, *ids), dropping a contact that starts within MERGE_FRAMES of the
    previous start by the same ids: polygons rattling in one contact re-trigger chipmunk's begin
    callback, which is not a new collision anyone could see."""
    last: dict[tuple[int, ...], int] = {}
    out = []
    for frame, *ids in sorted(set(events)):
        key = tuple(ids)
        if frame - last.get(key, -MERGE_FRAMES - 1) > MERGE_FRAMES:
            out.append((frame, *ids))
        last[key] = frame
    return out


def simulate(
    scene: Scene,
    frames: int = FRAMES,
    remove: Iterable[int] = frozenset(),
    size: int = SIZE,
    *,
    render: bool = True,
) -> Episode:
    """Run ``scene`` for ``frames`` frames without the objects in ``remove`` (kept as ghosts, see
    module doc); ``render=False`` skips frames/masks (states and contacts are unchanged)."""
    removed = frozenset(int(k) for k in remove)
    if frames < 1 or size < 1 or any(not 0 <= k < scene.n_objects for k in removed):
        raise ValueError(f"bad simulate args: frames={frames} size={size} remove={set(removed)}")
    space = pymunk.Space()
    rg = regime_of(scene.regime)
    space.iterations, space.damping = ITERATIONS, rg.damping
    _add_walls(space)
    index_of: dict[pymunk.Shape, int] = {}
    clock = [0]
    collisions: list[tuple[int, int, int]] = []
    walls: list[tuple[int, int]] = []

    def on_objects(arbiter: pymunk.Arbiter, _space: pymunk.Space, _data: dict) -> bool:
        i, j = sorted(index_of[s] for s in arbiter.shapes)  # ghosts are filtered before this
        collisions.append((clock[0], i, j))
        return True

    def on_wall(arbiter: pymunk.Arbiter, _space: pymunk.Space, _data: dict) -> bool:
        k = index_of[arbiter.shapes[0]]
        if k not in removed:
            walls.append((clock[0], k))
        return True

    space.add_collision_handler(OBJECT, OBJECT).begin = on_objects
    space.add_collision_handler(OBJECT, WALL).begin = on_wall
    shapes: list[pymunk.Shape | None] = [None] * scene.n_objects
    outside: list[int] = []  # entered objects not yet wholly inside the arena wall
    raw = np.zeros((frames, scene.n_objects, len(STATE_COLUMNS)))  # physics units
    dt = 1.0 / (FPS * rg.substeps)
    for t in range(frames):
        for k in range(scene.n_objects):  # fixed insertion order: entry frame, then index
            if scene.entry_frames[k] == t:
                shapes[k] = _add_object(space, scene, k, ghost=k in removed)
                index_of[shapes[k]] = k
                if t > 0:
                    outside.append(k)
        for k, shape in enumerate(shapes):
            if shape is None or k in removed:
                continue
            body = shape.body
            (x, y), (vx, vy) = body.position, body.velocity
            x0, x1, y0, y1 = _bounds(scene.shapes[k], x, y, body.angle)
            if x1 > 0 and x0 < ARENA and y1 > 0 and y0 < ARENA:
                raw[t, k] = (x, y, vx, vy, math.remainder(body.angle, 2 * math.pi), 1.0)
        if t == frames - 1:
            break
        clock[0] = t + 1
        for _ in range(rg.substeps):
            space.step(dt)
            for k in list(outside):
                body = shapes[k].body
                x0, x1, y0, y1 = _bounds(scene.shapes[k], *body.position, body.angle)
                if x0 > 0 and x1 < ARENA and y0 > 0 and y1 < ARENA:
                    shapes[k].filter = _filter(k in removed, inside=True)
                    outside.remove(k)
    states = (raw / UNITS).astype(np.float32)
    ep = Episode(scene, removed, states, _merge(collisions), _merge(walls))
    if render:
        ep.frames, ep.masks = rasterise(scene, states, size)
    return ep


def rasterise(scene: Scene, states: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise states (T, K, 6) to frames (T, size, size, 3) uint8 and masks (T, size, size)
    uint8 by pixel-centre tests; metal objects get a white highlight that fades from the centre."""
    t_all, k_all = states.shape[:2]
    frames = np.empty((t_all, size, size, 3), np.uint8)
    frames[:] = BACKGROUND
    masks = np.zeros((t_all, size, size), np.uint8)
    cell = np.float32(ARENA / size)
    for k in range(k_all):
        idx = np.flatnonzero(states[:, k, 5] > 0)
        if idx.size == 0:
            continue
        pose = states[idx, k].astype(np.float32)
        px, py = pose[:, 0] * np.float32(ARENA), pose[:, 1] * np.float32(ARENA)
        # Test only an n x n pixel window around each object (12x fewer pixels at 64 x 64).
        reach = CIRCUMRADIUS[scene.shapes[k]]
        n = math.ceil(2 * reach / cell) + 2
        cols = np.floor((px - reach) / cell).astype(np.int64)[:, None] + np.arange(n)  # (T', n)
        rows = np.floor((py - reach) / cell).astype(np.int64)[:, None] + np.arange(n)  # (T', n)
        dx = ((cols.astype(np.float32) + 0.5) * cell - px[:, None])[:, None, :]  # (T', 1, n)
        dy = ((rows.astype(np.float32) + 0.5) * cell - py[:, None])[:, :, None]  # (T', n, 1)
        if scene.shapes[k] == "circle":
            hit = dx * dx + dy * dy < np.float32(CIRCLE_R**2)
        else:  # rotate pixels into the body frame, then one half-plane test per edge
            c, s = np.cos(pose[:, 4])[:, None, None], np.sin(pose[:, 4])[:, None, None]
            u, v = c * dx + s * dy, c * dy - s * dx  # (T', n, n)
            verts = POLYGONS[scene.shapes[k]]
            hit = np.ones(u.shape, bool)
            for (ax, ay), (bx, by) in zip(verts, verts[1:] + verts[:1], strict=True):
                hit &= (bx - ax) * (v - ay) - (by - ay) * (u - ax) >= 0
        hit &= ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
        ti, a, b = np.nonzero(hit)
        t, ri, ci = idx[ti], rows[ti, a], cols[ti, b]
        colour = np.asarray(COLOURS[scene.colours[k]], np.float32)
        pixels = np.broadcast_to(colour, (t.size, 3))
        if scene.materials[k] == "metal":
            d = np.hypot(dx[ti, 0, b], dy[ti, a, 0])
            shine = 0.7 * np.clip(1 - d / (0.6 * CIRCLE_R), 0, 1)[:, None]
            pixels = pixels + (255 - colour) * shine
        frames[t, ri, ci] = np.round(pixels).astype(np.uint8)
        masks[t, ri, ci] = k + 1
    return frames, masks


def _seeds(seed: int, episode_index: int) -> tuple[int, int]:
    scene_seed, question_seed = np.random.SeedSequence([seed, episode_index]).generate_state(2)
    return int(scene_seed), int(question_seed)


def episode_scene(episode_index: int, *, seed: int, generator: str = GENERATOR_VERSION) -> Scene:
    """The scene behind ``make_episode(episode_index, seed=seed, generator=generator)``."""
    return sample_scene(_seeds(seed, episode_index)[0], regime=generator)


def scene_from_meta(meta: dict) -> Scene:
    """The scene behind a stored collide episode (its ``meta``), under the generator version it
    was made with."""
    return episode_scene(
        int(meta["episode_index"]), seed=int(meta["seed"]), generator=str(meta["generator"])
    )


def _counterfactuals(scene: Scene, frames: int) -> Callable[[int], Episode]:
    """Memoised single-object removals (states and contacts only)."""
    cache: dict[int, Episode] = {}

    def without(k: int) -> Episode:
        if k not in cache:
            cache[k] = simulate(scene, frames, remove={k}, render=False)
        return cache[k]

    return without


def make_episode(
    episode_index: int,
    *,
    seed: int,
    frames: int = FRAMES,
    size: int = SIZE,
    questions: bool = True,
    generator: str = GENERATOR_VERSION,
) -> EpisodeData:
    """Episode ``episode_index`` of the dataset ``seed`` (see module doc for shapes and units),
    drawn and simulated under the regime ``generator`` (:data:`REGIMES`)."""
    scene_seed, question_seed = _seeds(seed, episode_index)
    scene = sample_scene(scene_seed, regime=generator)
    rg = regime_of(generator)
    ep = simulate(scene, frames, size=size)
    qs = None
    if questions:
        rng = np.random.default_rng(question_seed)
        qs = q.generate_questions(scene, ep, _counterfactuals(scene, frames), rng)
    objects = [
        {"shape": s, "colour": c, "material": m, "entry_frame": e}
        for s, c, m, e in zip(
            scene.shapes, scene.colours, scene.materials, scene.entry_frames, strict=True
        )
    ]
    return EpisodeData(
        episode_id=f"collide-s{seed}-{episode_index:06d}",
        world="collide",
        frames=ep.frames,
        states=ep.states,
        masks=ep.masks,
        questions=qs,
        info={
            "collisions": [list(c) for c in ep.collisions],
            "wall_contacts": [list(c) for c in ep.wall_contacts],
            "objects": objects,
            "state_columns": list(STATE_COLUMNS),
            "predict_observe": q.observe_frames(frames),
        },
        meta={
            "seed": seed,
            "episode_index": episode_index,
            "scene_seed": scene_seed,
            "question_seed": question_seed,
            "generator": generator,
            "frames": frames,
            "size": size,
            "physics": {"arena": ARENA, "fps": FPS, "substeps": rg.substeps, "damping": rg.damping},
            "units": "x, y: arena widths from the top-left; vx, vy: arena widths per frame",
        },
    )


def check_answers(scene: Scene, questions: list[dict], frames: int = FRAMES) -> list[str]:
    """Re-simulate ``scene`` from scratch and re-derive every stored answer; returns one message
    per mismatch (empty when all agree)."""
    factual = simulate(scene, frames, render=False)
    without = _counterfactuals(scene, frames)
    errors = []
    for n, question in enumerate(questions):
        got = q.evaluate(question, scene, factual, without)
        stored = question.get("answer", [c["correct"] for c in question.get("choices", [])])
        if got != stored:
            errors.append(f"question {n} ({question['question']!r}): stored {stored}, got {got}")
    return errors
