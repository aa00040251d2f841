"""Ground truth read off collide episodes: CLEVRER's four question types (interaction graphs:
``cjepa.worlds.interactions``, re-exported here).

Answers come from (counterfactual) simulation; see ``cjepa.worlds.collide`` for units. This
module needs only the scene records (``cjepa.worlds.collide_scene``), not the physics.

Types (Yi et al., CLEVRER, ICLR 2020, Sec. 3), with the semantics the answers follow:
- descriptive: attributes and counts; ``answer`` is a string ("2", "red", "yes", "none").
  Counts run over objects that appear (present in some frame).
- explanatory: "which of the following is responsible for the collision between A and B?";
  option "the presence of X" is correct iff, re-simulated without X, A and B never collide.
- predictive: the model observes frames [0, observe) with ``observe = frames * 3 // 4`` (96 of
  the 128 stored frames; the rest of the stored video is the ground truth). Option "A and B
  collide" is correct iff a collision between A and B starts in [observe, frames). Only objects
  seen before ``observe`` are named.
- counterfactual: "without X, which of the following would happen?"; option "A and B collide"
  is correct iff they collide at any time in ``simulate(scene, remove={X})``.

Question dicts are JSON-able: ``{"type", "family", "question", "program", "answer"}`` for
descriptive, ``{"type", "family", "question", "program", "choices": [{"text", "correct",
"object" | "pair"}]}`` otherwise. Multiple-choice options are sampled up to two true and as
many false (at least one) so that constant answers stay well below 100% (see
:func:`majority_baseline`).
The ``program`` alone determines the answer: :func:`evaluate` executes it on episodes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from cjepa.worlds.collide_scene import Episode, Scene

# Interaction graphs live in cjepa.worlds.interactions; importable from here as before.
from cjepa.worlds.interactions import InteractionGraph as InteractionGraph
from cjepa.worlds.interactions import adjacency as adjacency
from cjepa.worlds.interactions import interaction_graph as interaction_graph

Counterfactual = Callable[[int], Episode]
TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
MOVING_SPEED = 0.002  # arena widths per frame (0.05 per second): slower counts as "stopped"
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}


def observe_frames(frames: int) -> int:
    """Length of the observed prefix for predictive questions."""
    return frames * 3 // 4


def _attr(scene: Scene, attr: str) -> tuple[str, ...]:
    if attr not in ("colour", "shape", "material"):
        raise ValueError(f"attr must be colour, shape or material, got {attr!r}")
    return {"colour": scene.colours, "shape": scene.shapes, "material": scene.materials}[attr]


def describe(scene: Scene, k: int) -> str:
    """Shortest unique description of object k, e.g. "the red square" or "the metal circle"."""
    for keys in (
        ("shape",),
        ("colour", "shape"),
        ("material", "shape"),
        ("colour", "material", "shape"),
    ):
        names = [tuple(_attr(scene, a)[m] for a in keys) for m in range(scene.n_objects)]
        if names.count(names[k]) == 1:
            return "the " + " ".join(names[k])
    raise ValueError(f"object {k} has no unique description in {scene}")


def appearing(episode: Episode, end: int | None = None) -> list[int]:
    """Objects present in some frame before ``end`` (default: any frame)."""
    return np.flatnonzero(episode.states[:end, :, 5].any(axis=0)).tolist()


def collision_pairs(episode: Episode, start: int = 0) -> set[tuple[int, int]]:
    """Pairs (i < j) with a collision starting at frame >= start."""
    return {(i, j) for f, i, j in episode.collisions if f >= start}


def first_partner(episode: Episode, k: int) -> int | None:
    """The object that first collides with k (None if none, or if two tie)."""
    hits = [(f, j if i == k else i) for f, i, j in episode.collisions if k in (i, j)]
    if not hits:
        return None
    first = {m for f, m in hits if f == hits[0][0]}
    return first.pop() if len(first) == 1 else None


def first_entering(scene: Scene, episode: Episode) -> int | None:
    """The object that enters (first becomes visible) first among those not present from frame
    0 (None if none enter, or if two tie)."""
    present = episode.states[:, :, 5] > 0  # (T, K)
    entering = sorted(
        (int(present[:, k].argmax()), k) for k in appearing(episode) if scene.entry_frames[k] > 0
    )
    if not entering or (len(entering) > 1 and entering[1][0] == entering[0][0]):
        return None
    return entering[0][1]


def evaluate(question: dict, scene: Scene, episode: Episode, without: Counterfactual) -> Any:
    """Execute ``question["program"]``: a string for descriptive questions, else one bool per
    choice. ``without(x)`` must return the episode re-simulated without object x."""
    p = question["program"]
    op = p["op"]
    if op == "count_attr":
        values = _attr(scene, p["attr"])
        return str(sum(values[k] == p["value"] for k in appearing(episode)))
    if op == "count_collisions":
        return str(len(episode.collisions))
    if op == "count_moving_end":
        last = episode.states[-1]
        return str(
            int(((last[:, 5] > 0) & (np.hypot(last[:, 2], last[:, 3]) > MOVING_SPEED)).sum())
        )
    if op in ("query_first_partner", "query_first_entering"):
        if op == "query_first_partner":
            k = first_partner(episode, p["object"])
        else:
            k = first_entering(scene, episode)
        return "none" if k is None else _attr(scene, p["attr"])[k]
    if op == "exists_entering":
        shapes = [scene.shapes[k] for k in appearing(episode) if scene.entry_frames[k] > 0]
        return "yes" if p["value"] in shapes else "no"
    choices = question["choices"]
    if op == "responsible_for":
        pair = tuple(p["pair"])
        return [pair not in collision_pairs(without(c["object"])) for c in choices]
    if op == "will_collide":
        future = collision_pairs(episode, p["observe"])
        return [tuple(c["pair"]) in future for c in choices]
    if op == "collide_without":
        happened = collision_pairs(without(p["remove"]))
        return [tuple(c["pair"]) in happened for c in choices]
    raise ValueError(f"unknown program op {op!r}")


def _take(rng: np.random.Generator, items: list, n: int, preferred: list | None = None) -> list:
    """Up to n items, drawn from ``preferred`` first, in a random order."""
    preferred = [x for x in (preferred or []) if x in items]
    rest = [x for x in items if x not in preferred]
    out = [preferred[i] for i in rng.permutation(len(preferred))]
    out += [rest[i] for i in rng.permutation(len(rest))]
    return out[:n]


def _choices(
    rng: np.random.Generator,
    true: list,
    false: list,
    text: Callable[[Any], str],
    key: str,
    prefer_true: list | None = None,
    prefer_false: list | None = None,
) -> list[dict]:
    """Up to two true options and as many false ones (at least one), shuffled: true options are
    the rarer kind, so matching their count keeps "always false" near 50% per option."""
    picked = _take(rng, true, 2, prefer_true)
    picked += _take(rng, false, max(1, len(picked)), prefer_false)
    picked = [picked[i] for i in rng.permutation(len(picked))]
    return [{"text": text(x), key: list(x) if isinstance(x, tuple) else x} for x in picked]


def _descriptive(scene: Scene, episode: Episode, rng: np.random.Generator) -> list[dict]:
    """All applicable descriptive questions, one per family (value drawn at random)."""
    attr = ("colour", "shape", "material")[rng.integers(3)]
    material = ("rubber", "metal")[rng.integers(2)]
    shape = ("circle", "square", "triangle")[rng.integers(3)]
    out = [
        (
            "count_material",
            {"op": "count_attr", "attr": "material", "value": material},
            f"How many {material} objects are there?",
        ),
        (
            "count_shape",
            {"op": "count_attr", "attr": "shape", "value": shape},
            f"How many {PLURAL[shape]} are there?",
        ),
        ("count_collisions", {"op": "count_collisions"}, "How many collisions are there?"),
        (
            "count_moving_end",
            {"op": "count_moving_end"},
            "How many objects are moving when the video ends?",
        ),
        (
            "exists_entering",
            {"op": "exists_entering", "value": shape},
            f"Is there a {shape} that enters the scene?",
        ),
    ]
    hit = [k for k in appearing(episode) if first_partner(episode, k) is not None]
    if hit:
        k = hit[rng.integers(len(hit))]
        out.append(
            (
                f"first_partner_{attr}",
                {"op": "query_first_partner", "object": k, "attr": attr},
                f"What {attr} is the first object to collide with {describe(scene, k)}?",
            )
        )
    if first_entering(scene, episode) is not None:
        out.append(
            (
                f"first_entering_{attr}",
                {"op": "query_first_entering", "attr": attr},
                f"What {attr} is the first object to enter the scene?",
            )
        )
    return [{"type": "descriptive", "family": f, "question": t, "program": p} for f, p, t in out]


def generate_questions(
    scene: Scene,
    episode: Episode,
    without: Counterfactual,
    rng: np.random.Generator,
    n_descriptive: int = 4,
    n_explanatory: int = 2,
    n_counterfactual: int = 2,
) -> list[dict]:
    """Sample questions about ``episode`` (the factual run of ``scene``) and answer them.

    ``without(x)`` re-simulates without object x; at most one call per object is needed, so a
    memoised callable keeps the cost at K extra (unrendered) simulations. The question types are
    drawn from ``rng`` in a fixed order (descriptive, explanatory, predictive, counterfactual):
    reordering them changes every dataset.
    """
    ctx = _Context(scene, episode, without)
    desc = _descriptive(scene, episode, rng)
    out = [desc[i] for i in sorted(rng.permutation(len(desc))[:n_descriptive])]
    out += _explanatory(ctx, rng, n_explanatory)
    out += _predictive(ctx, rng)
    out += _counterfactual(ctx, rng, n_counterfactual)
    for question in out:  # answers come only from executing the program
        result = evaluate(question, scene, episode, without)
        if question["type"] == "descriptive":
            question["answer"] = result
        else:
            for choice, correct in zip(question["choices"], result, strict=True):
                choice["correct"] = bool(correct)
    return out


class _Context:
    """What every question type reads: the scene, its factual run, the counterfactual runs,
    the objects seen, their names and the pairs that collided."""

    def __init__(self, scene: Scene, episode: Episode, without: Counterfactual) -> None:
        self.scene, self.episode, self.without = scene, episode, without
        self.seen = appearing(episode)
        self.name = {k: describe(scene, k) for k in range(scene.n_objects)}
        self.happened = sorted(collision_pairs(episode))

    def pair_text(self, pair: tuple[int, int]) -> str:
        return f"{self.name[pair[0]]} and {self.name[pair[1]]} collide".capitalize()


def _explanatory(ctx: _Context, rng: np.random.Generator, n: int) -> list[dict]:
    """ "Which is responsible for the collision between A and B?", preferring collisions that
    some other object's presence made possible."""
    seen, name, without = ctx.seen, ctx.name, ctx.without
    causes = {
        p: [x for x in seen if x not in p and p not in collision_pairs(without(x))]
        for p in ctx.happened
    }
    with_cause = [p for p in ctx.happened if causes[p]]
    out = []
    for pair in _take(rng, ctx.happened, n, preferred=with_cause):
        others = [x for x in seen if x not in pair]
        if not others:
            continue
        choices = _choices(
            rng,
            causes[pair],
            [x for x in others if x not in causes[pair]],
            lambda x: f"The presence of {name[x]}",
            "object",
        )
        out.append(
            {
                "type": "explanatory",
                "family": "responsible_for",
                "question": f"Which of the following is responsible for the collision "
                f"between {name[pair[0]]} and {name[pair[1]]}?",
                "program": {"op": "responsible_for", "pair": list(pair)},
                "choices": choices,
            }
        )
    return out


def _predictive(ctx: _Context, rng: np.random.Generator) -> list[dict]:
    """ "After the first frames, which will happen?", naming only objects seen in the observed
    prefix; collisions that already happened are preferred as false options."""
    episode = ctx.episode
    frames = episode.states.shape[0]
    observe = observe_frames(frames)
    pairs = list(itertools.combinations(appearing(episode, observe), 2))
    future = collision_pairs(episode, observe)
    if not pairs or observe >= frames:
        return []
    before = {(i, j) for f, i, j in episode.collisions if f < observe}
    choices = _choices(
        rng,
        [p for p in pairs if p in future],
        [p for p in pairs if p not in future],
        ctx.pair_text,
        "pair",
        prefer_false=sorted(before - future),
    )
    return [
        {
            "type": "predictive",
            "family": "will_collide",
            "question": f"After the first {observe} frames, which of the following will happen?",
            "program": {"op": "will_collide", "observe": observe},
            "choices": choices,
        }
    ]


def _counterfactual(ctx: _Context, rng: np.random.Generator, n: int) -> list[dict]:
    """ "Without X, which would happen?", preferring removals of objects that collide and
    options whose outcome the removal changes."""
    seen, happened = ctx.seen, ctx.happened
    colliders = sorted({k for p in happened for k in p})
    out = []
    for x in _take(rng, seen, n, preferred=colliders):
        rest = list(itertools.combinations([k for k in seen if k != x], 2))
        if not rest:
            continue
        cf = collision_pairs(ctx.without(x))
        choices = _choices(
            rng,
            [p for p in rest if p in cf],
            [p for p in rest if p not in cf],
            ctx.pair_text,
            "pair",
            prefer_true=sorted(cf - set(happened)),
            prefer_false=sorted(set(happened) - cf),
        )
        out.append(
            {
                "type": "counterfactual",
                "family": "collide_without",
                "question": f"Without {ctx.name[x]}, which of the following would happen?",
                "program": {"op": "collide_without", "remove": x},
                "choices": choices,
            }
        )
    return out


def majority_baseline(questions: list[dict]) -> dict[str, dict[str, float]]:
    """Best constant-answer accuracy per question type.

    Multiple choice: ``per_option`` answers every option True (or every option False),
    ``per_question`` counts a question right only if all its options are. Descriptive: the most
    frequent answer of each question family (CLEVRER's "Q-type" baseline); both keys equal.
    """
    out: dict[str, dict[str, float]] = {}
    for qtype in TYPES:
        qs = [x for x in questions if x["type"] == qtype]
        if not qs:
            continue
        if qtype == "descriptive":
            families: dict[str, Counter] = {}
            for x in qs:
                families.setdefault(x["family"], Counter())[x["answer"]] += 1
            acc = sum(c.most_common(1)[0][1] for c in families.values()) / len(qs)
            out[qtype] = {"per_option": acc, "per_question": acc}
            continue
        flags = [[c["correct"] for c in x["choices"]] for x in qs]
        options = [f for fs in flags for f in fs]
        n_true = sum(options)
        out[qtype] = {
            "per_option": max(n_true, len(options) - n_true) / max(len(options), 1),
            "per_question": max(sum(all(fs) for fs in flags), sum(not any(fs) for fs in flags))
            / len(qs),
        }
    return out
