"""Future error where dynamics live: present objects, interaction vs free-flight cells, baselines.

Whole-window future MSE on object slots is dominated by cells that nobody can predict (an object
entering the view jumps from the "empty" vector to an object) and, on slow worlds, by cells where
nothing moves. These metrics score the predictor only on cells where an object is in view and
split them by whether it touched another object between the last frame the predictor saw and the
frame it predicts, next to two trivial baselines on exactly the same cells.

Shapes: B windows, T = T_h + T_p window steps, N slots, D slot dim, L frames of an episode,
K objects of an episode (slot k = object k: the oracle encoder's alignment).

Cell sets, per future step j (target window step T_h + j, frame ``frames[T_h + j]``):
- *present*: the object is in view (simulator ``present`` flag) at the last two history frames
  and at the target frame (both baselines are then defined on in-view slots).
- *interaction*: present, and a collision of the object with another object starts in
  ``(frames[T_h - 1], frames[T_h + j]]`` (the simulator's contact log): the object's path changes
  by contact after the last frame the predictor saw.
- *free*: present and not interaction.

Baselines: copy-last ``z[T_h - 1]``; constant velocity in slot space
``z[T_h - 1] + (j + 1) (z[T_h - 1] - z[T_h - 2])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: Metric name -> better direction; the names are what analysis tables and outside checks read.
DIRECTIONS = {
    "future_all": "min",
    "future_present": "min",
    "copy_last_present": "min",
    "linear_present": "min",
    "future_interaction": "min",
    "copy_last_interaction": "min",
    "linear_interaction": "min",
    "future_free": "min",
    "copy_last_free": "min",
    "linear_free": "min",
}


@dataclass
class EpisodeLabels:
    """Per-frame labels of one episode, slot-aligned.

    Attributes:
        present: (L, N) bool, object in view (False for slots without an object).
        contacts: (L, N) int, cumulative count of object-object collision starts up to each frame.
    """

    present: torch.Tensor
    contacts: torch.Tensor


def episode_labels(
    states: np.ndarray, collisions: Sequence[Sequence[int]], n_slots: int
) -> EpisodeLabels:
    """Labels from a collide episode: ``states`` (L, K, 6) with ``present`` last, ``collisions``
    ``[(frame, i, j)]``; slots K..N-1 (no object, background) are never present."""
    length, k = states.shape[:2]
    if k > n_slots:
        raise ValueError(f"episode has {k} objects but the slots hold {n_slots}")
    present = torch.zeros(length, n_slots, dtype=torch.bool)
    present[:, :k] = torch.from_numpy(np.asarray(states[..., -1] > 0.5))
    starts = torch.zeros(length, n_slots, dtype=torch.long)
    for frame, i, j in collisions:
        if 0 <= frame < length:
            starts[frame, i] += 1
            starts[frame, j] += 1
    return EpisodeLabels(present, starts.cumsum(0))


def window_cells(
    labels: EpisodeLabels, frames: torch.Tensor, history: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(present, interaction) bool (B, T_p, N) for windows at ``frames`` (B, T) of one
    labelled frame axis (an episode, or episodes concatenated as in ``SlotWindows``)."""
    if history < 2:
        raise ValueError(f"dynamics metrics need T_h >= 2 (constant velocity), got {history}")
    last, prev, target = frames[:, history - 1], frames[:, history - 2], frames[:, history:]
    p = labels.present
    present = (p[last] & p[prev]).unsqueeze(1) & p[target]  # (B, T_p, N)
    touched = labels.contacts[target] > labels.contacts[last].unsqueeze(1)  # (B, T_p, N)
    return present, present & touched


def baselines(slots: torch.Tensor, history: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(copy_last, linear), each (B, T_p, N, D), from window slots (B, T, N, D)."""
    tp = slots.shape[1] - history
    last, prev = slots[:, history - 1 : history], slots[:, history - 2 : history - 1]
    steps = torch.arange(1, tp + 1, dtype=slots.dtype, device=slots.device).view(1, tp, 1, 1)
    return last.expand(-1, tp, -1, -1), last + steps * (last - prev)


class DynamicsScore:
    """Accumulates per-cell squared errors over batches; ``result()`` gives the metrics."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(
        self,
        pred: torch.Tensor,
        slots: torch.Tensor,
        present: torch.Tensor,
        interaction: torch.Tensor,
    ) -> None:
        """pred (B, T_p, N, D) future predictions; slots (B, T, N, D) the windows; present and
        interaction (B, T_p, N) from ``window_cells``."""
        history = slots.shape[1] - pred.shape[1]
        target = slots[:, history:]
        copy, linear = baselines(slots, history)
        errors = {
            name: ((x - target) ** 2).mean(-1).double()  # (B, T_p, N)
            for name, x in (("future", pred), ("copy_last", copy), ("linear", linear))
        }
        cells = {"present": present, "interaction": interaction, "free": present & ~interaction}
        for name, err in errors.items():
            self._add(f"{name}_all", err.sum(), err.numel())
            for cell, sel in cells.items():
                self._add(f"{name}_{cell}", err[sel].sum(), int(sel.sum()))
        self._add("cells_present", present.sum(), 0)
        self._add("cells_interaction", interaction.sum(), 0)

    def _add(self, key: str, total: torch.Tensor, count: int) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(total)
        self.counts[key] = self.counts.get(key, 0) + count

    def result(self) -> dict[str, float]:
        """Mean error per cell set (NaN where a set is empty), plus cell counts and the share
        of present cells that are interaction cells."""
        out = {
            k: (self.sums[k] / self.counts[k] if self.counts[k] else float("nan"))
            for k in self.sums
            if not k.startswith("cells_")
        }
        n_present, n_inter = (
            self.sums.get("cells_present", 0.0),
            self.sums.get("cells_interaction", 0.0),
        )
        out["cells_present"], out["cells_interaction"] = n_present, n_inter
        out["interaction_share"] = n_inter / n_present if n_present else float("nan")
        return out


def labels_for(episodes: Sequence, n_slots: int) -> EpisodeLabels:
    """Labels of several episodes (objects with ``states`` and ``info["collisions"]``),
    concatenated along time in the given order (the layout of ``SlotWindows``). Windows never
    span two episodes, so per-episode cumulative contact counts stay exact within each."""
    parts = [episode_labels(ep.states, ep.info.get("collisions") or [], n_slots) for ep in episodes]
    return EpisodeLabels(
        torch.cat([p.present for p in parts]), torch.cat([p.contacts for p in parts])
    )


@torch.no_grad()
def score_windows(
    model, windows, labels: EpisodeLabels | None, *, batch_size: int = 512, limit: int = 0
) -> dict[str, float]:
    """Dynamics metrics of ``model`` (full history visible) on the windows of ``windows`` (a
    ``SlotWindows``), in order, the first ``limit`` of them (0: all). Without ``labels`` (slots
    not aligned with objects) only the ``*_all`` metrics are defined."""
    th = model.history
    device = next(model.parameters()).device
    score = DynamicsScore()
    n = len(windows) if not limit else min(limit, len(windows))
    for rows in torch.arange(n).split(batch_size):
        batch = windows.get(rows)
        slots = batch["slots"]
        visible = torch.zeros(slots.shape[0], th, slots.shape[2], dtype=torch.bool)
        aux = {k: batch[k].to(device) for k in ("actions", "proprio") if k in batch}
        pred = model(slots[:, :th].to(device), visible.to(device), **aux).slots[:, th:].cpu()
        if labels is None:
            present = torch.ones(pred.shape[:3], dtype=torch.bool)
            interaction = torch.zeros_like(present)
        else:
            present, interaction = window_cells(labels, windows.frames(rows), th)
        score.add(pred, slots, present, interaction)
    out = score.result()
    if labels is None:
        out = {k: v for k, v in out.items() if k.endswith("_all")}
    out["windows"] = float(n)
    return out
