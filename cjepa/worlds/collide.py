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

import numpy as np
import pymunk

from cjepa.data.episode import EpisodeData
from cjepa.worlds import questions as q

# Scenes (no physics) and rendering live in collide_scene and collide_render; their public
# names stay importable from here.
from cjepa.worlds.collide_render import rasterise
from cjepa.worlds.collide_scene import (
    ARENA,
    BACKGROUND,
    CIRCLE_R,
    CIRCUMRADIUS,
    COLOURS,
    DAMPING,
    ELASTICITY,
    FPS,
    FRAMES,
    GENERATOR_VERSION,
    ITERATIONS,
    MASS,
    MATERIALS,
    MERGE_FRAMES,
    OUTER,
    POLYGONS,
    REGIMES,
    SHAPES,
    SIZE,
    SQUARE_H,
    STATE_COLUMNS,
    SUBSTEPS,
    TRIANGLE_R,
    UNITS,
    WALL_R,
    Episode,
    Regime,
    Scene,
    regime_of,
    sample_scene,
)

__all__ = [
    "ARENA",
    "BACKGROUND",
    "CIRCLE_R",
    "CIRCUMRADIUS",
    "COLOURS",
    "DAMPING",
    "ELASTICITY",
    "FPS",
    "FRAMES",
    "GENERATOR_VERSION",
    "ITERATIONS",
    "MASS",
    "MATERIALS",
    "MERGE_FRAMES",
    "OUTER",
    "POLYGONS",
    "REGIMES",
    "SHAPES",
    "SIZE",
    "SQUARE_H",
    "STATE_COLUMNS",
    "SUBSTEPS",
    "TRIANGLE_R",
    "UNITS",
    "WALL_R",
    "Episode",
    "Regime",
    "Scene",
    "check_answers",
    "episode_scene",
    "make_episode",
    "rasterise",
    "regime_of",
    "sample_scene",
    "scene_from_meta",
    "simulate",
]

OBJECT, WALL = 1, 2  # collision types
CAT_OBJECT, CAT_GHOST, CAT_INNER, CAT_OUTER = 1, 2, 4, 8  # shape-filter category bits


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


class _Run:
    """One ``simulate`` run in progress: the pymunk space, the objects added so far and the
    contacts recorded, stamped with the frame the current step leads into."""

    def __init__(self, scene: Scene, removed: frozenset[int]) -> None:
        self.scene, self.removed, self.regime = scene, removed, regime_of(scene.regime)
        self.space = pymunk.Space()
        self.space.iterations, self.space.damping = ITERATIONS, self.regime.damping
        _add_walls(self.space)
        self.index_of: dict[pymunk.Shape, int] = {}
        self.clock = 0
        self.collisions: list[tuple[int, int, int]] = []
        self.walls: list[tuple[int, int]] = []
        self.space.add_collision_handler(OBJECT, OBJECT).begin = self._on_objects
        self.space.add_collision_handler(OBJECT, WALL).begin = self._on_wall
        self.shapes: list[pymunk.Shape | None] = [None] * scene.n_objects
        self.outside: list[int] = []  # entered objects not yet wholly inside the arena wall

    def _on_objects(self, arbiter: pymunk.Arbiter, _space: pymunk.Space, _data: dict) -> bool:
        i, j = sorted(self.index_of[s] for s in arbiter.shapes)  # ghosts are filtered before
        self.collisions.append((self.clock, i, j))
        return True

    def _on_wall(self, arbiter: pymunk.Arbiter, _space: pymunk.Space, _data: dict) -> bool:
        k = self.index_of[arbiter.shapes[0]]
        if k not in self.removed:
            self.walls.append((self.clock, k))
        return True

    def add_entering(self, t: int) -> None:
        """Add the objects whose entry frame is t, in index order (a fixed insertion order)."""
        for k in range(self.scene.n_objects):
            if self.scene.entry_frames[k] == t:
                shape = _add_object(self.space, self.scene, k, ghost=k in self.removed)
                self.shapes[k], self.index_of[shape] = shape, k
                if t > 0:
                    self.outside.append(k)

    def record(self, raw: np.ndarray, t: int) -> None:
        """Write frame t's state (physics units) of every visible, not removed object."""
        for k, shape in enumerate(self.shapes):
            if shape is None or k in self.removed:
                continue
            body = shape.body
            (x, y), (vx, vy) = body.position, body.velocity
            x0, x1, y0, y1 = _bounds(self.scene.shapes[k], x, y, body.angle)
            if x1 > 0 and x0 < ARENA and y1 > 0 and y0 < ARENA:
                raw[t, k] = (x, y, vx, vy, math.remainder(body.angle, 2 * math.pi), 1.0)

    def step_frame(self, into: int) -> None:
        """Advance one frame (the regime's substeps) into frame ``into``; an entered object
        meets the arena wall once it is wholly inside."""
        self.clock = into
        dt = 1.0 / (FPS * self.regime.substeps)
        for _ in range(self.regime.substeps):
            self.space.step(dt)
            for k in list(self.outside):
                body = self.shapes[k].body
                x0, x1, y0, y1 = _bounds(self.scene.shapes[k], *body.position, body.angle)
                if x0 > 0 and x1 < ARENA and y0 > 0 and y1 < ARENA:
                    self.shapes[k].filter = _filter(k in self.removed, inside=True)
                    self.outside.remove(k)


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
    run = _Run(scene, removed)
    raw = np.zeros((frames, scene.n_objects, len(STATE_COLUMNS)))  # physics units
    for t in range(frames):
        run.add_entering(t)
        run.record(raw, t)
        if t < frames - 1:
            run.step_frame(t + 1)
    states = (raw / UNITS).astype(np.float32)
    ep = Episode(scene, removed, states, _merge(run.collisions), _merge(run.walls))
    if render:
        ep.frames, ep.masks = rasterise(scene, states, size)
    return ep


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
            "objects": _object_records(scene),
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


def _object_records(scene: Scene) -> list[dict]:
    """Per object: shape, colour, material and entry frame (``info["objects"]``)."""
    return [
        {"shape": s, "colour": c, "material": m, "entry_frame": e}
        for s, c, m, e in zip(
            scene.shapes, scene.colours, scene.materials, scene.entry_frames, strict=True
        )
    ]


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
