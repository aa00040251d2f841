"""Windows of slot episodes for training: history + future frames at a frameskip.

A window starting at frame s covers frames s, s + f, ..., s + (T - 1) f for T = T_h + T_p and
frameskip f. With actions, window step j carries the f raw actions applied between its frame and
the next, concatenated (the paper's Push-T: 2-D actions x frameskip 5 -> 10 numbers), so a window
also needs the f - 1 frames after its last one. Episodes may have different lengths; those
shorter than one window contribute none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from cjepa.types import SlotBatch
from cjepa.worlds.registry import WORLDS


class _WindowPresets(Mapping[str, dict[str, int]]):
    """The paper's window settings (SPEC section 7): each registered world's ``WorldSpec.window``
    (a live view of ``cjepa.worlds.WORLDS``; ``clevrer``, the published data, shares the
    collide world's)."""

    def _table(self) -> dict[str, dict[str, int]]:
        return {n: dict(s.window) for n, s in sorted(WORLDS.items()) if s.window is not None}

    def __getitem__(self, name: str) -> dict[str, int]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


WINDOW_PRESETS = _WindowPresets()

Episodes = torch.Tensor | Sequence[torch.Tensor]


def _flatten(name: str, x: Episodes, lengths: list[int] | None) -> tuple[torch.Tensor, list[int]]:
    """Concatenate episodes along time: (E, L, ...) or [(L_e, ...)] -> (sum L_e, ...)."""
    parts = list(x.unbind(0)) if isinstance(x, torch.Tensor) else list(x)
    got = [p.shape[0] for p in parts]
    if lengths is not None and got != lengths:
        raise ValueError(f"{name} episode lengths {got} differ from the slots' {lengths}")
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"{name} episodes disagree on per-frame shape: {sorted(shapes)}")
    return torch.cat(parts, dim=0), got


class SlotWindows:
    """Index of every window of a set of slot episodes.

    Args:
        slots: (E, L, N, D) or a list of (L_e, N, D) slot episodes.
        actions: raw per-frame actions, (E, L, A) or a list of (L_e, A), or None.
        proprio: (E, L, P) or a list of (L_e, P), or None.
        history, n_future: T_h and T_p.
        frameskip: f, frames between window steps.
        stride: frames between consecutive window starts.
    """

    def __init__(
        self,
        slots: Episodes,
        actions: Episodes | None = None,
        proprio: Episodes | None = None,
        *,
        history: int,
        n_future: int,
        frameskip: int = 1,
        stride: int = 1,
    ) -> None:
        if isinstance(slots, torch.Tensor) and slots.ndim != 4:
            raise ValueError(f"slots must be (E, L, N, D), got {tuple(slots.shape)}")
        self.slots, lengths = _flatten("slots", slots, None)
        if self.slots.ndim != 3:
            raise ValueError(
                f"slot episodes must be (L, N, D), got per-frame {tuple(self.slots.shape[1:])}"
            )
        self.actions = None if actions is None else _flatten("actions", actions, lengths)[0]
        self.proprio = None if proprio is None else _flatten("proprio", proprio, lengths)[0]
        for name, x in (("actions", self.actions), ("proprio", self.proprio)):
            if x is not None and x.ndim != 2:
                raise ValueError(
                    f"{name} episodes must be (L, C), got per-frame {tuple(x.shape[1:])}"
                )
        self.time, self.frameskip = history + n_future, frameskip
        span = (self.time - 1) * frameskip + 1 + (frameskip - 1 if actions is not None else 0)
        offsets = torch.tensor([0, *lengths]).cumsum(0)
        rows = [
            torch.stack([torch.full_like(s, e), s, s + offsets[e]], dim=1)
            for e, length in enumerate(lengths)
            if length >= span
            for s in [torch.arange(0, length - span + 1, stride)]
        ]
        if not rows:
            raise ValueError(
                f"no episode (longest {max(lengths, default=0)} frames) holds one window: "
                f"{history}+{n_future} steps at frameskip {frameskip} need {span} frames"
            )
        table = torch.cat(rows)
        self.index = table[:, :2]  # (windows, 2): episode, start frame within it
        self._flat_start = table[:, 2]
        self.lengths = lengths

    def __len__(self) -> int:
        return self.index.shape[0]

    def frames(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, T) indices of the windows ``rows`` into the episodes concatenated along time
        (the layout per-frame labels of the same episodes, in the same order, share)."""
        return self._flat_start[rows, None] + torch.arange(self.time) * self.frameskip

    def get(self, rows: torch.Tensor) -> SlotBatch:
        """The windows ``rows`` (indices into this dataset) as a batch (without a mask)."""
        frames = self.frames(rows)  # (B, T)
        batch: SlotBatch = {"slots": self.slots[frames]}  # (B, T, N, D)
        if self.proprio is not None:
            batch["proprio"] = self.proprio[frames]
        if self.actions is not None:
            sub = frames[:, :, None] + torch.arange(self.frameskip)  # (B, T, f)
            batch["actions"] = self.actions[sub].flatten(2)  # (B, T, f * A)
        return batch

    def sample(self, batch_size: int, generator: torch.Generator) -> SlotBatch:
        rows = torch.randint(0, len(self), (batch_size,), generator=generator)
        return self.get(rows)
