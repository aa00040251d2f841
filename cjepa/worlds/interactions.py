"""Ground-truth interaction graphs of collide episodes: which objects touched in a window.

See ``cjepa.worlds.collide`` for the contact conventions (a contact is stamped with the first
stored frame after it starts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cjepa.worlds.collide_scene import Episode


@dataclass(frozen=True)
class InteractionGraph:
    """Object contacts starting in frames [start, end): ``pairs[(i, j)]`` (i < j) and
    ``walls[k]`` are the sorted contact frames; K = ``n_objects``."""

    start: int
    end: int
    n_objects: int
    pairs: dict[tuple[int, int], tuple[int, ...]]
    walls: dict[int, tuple[int, ...]]

    def adjacency(self) -> np.ndarray:
        """(K, K) bool, symmetric, False on the diagonal: True where i and j touched."""
        adj = np.zeros((self.n_objects, self.n_objects), bool)
        for i, j in self.pairs:
            adj[i, j] = adj[j, i] = True
        return adj


def interaction_graph(episode: Episode, start: int, end: int) -> InteractionGraph:
    """The ground-truth interaction graph of the window [start, end) of ``episode``."""
    pairs: dict[tuple[int, int], list[int]] = {}
    walls: dict[int, list[int]] = {}
    for f, i, j in episode.collisions:
        if start <= f < end:
            pairs.setdefault((i, j), []).append(f)
    for f, k in episode.wall_contacts:
        if start <= f < end:
            walls.setdefault(k, []).append(f)
    pairs_t = {p: tuple(v) for p, v in sorted(pairs.items())}
    walls_t = {k: tuple(v) for k, v in sorted(walls.items())}
    return InteractionGraph(start, end, episode.scene.n_objects, pairs_t, walls_t)


def adjacency(episode: Episode, start: int, end: int) -> np.ndarray:
    """(K, K) bool interaction adjacency of the window [start, end)."""
    return interaction_graph(episode, start, end).adjacency()
