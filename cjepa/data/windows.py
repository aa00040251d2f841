"""Windows of slot episodes for training: history + future frames at a frameskip.

A window starting at frame s covers frames s, s + f, ..., s + (T - 1) f for T = T_h + T_p and
frameskip f. With actions, window step j carries the f raw actions applied between its frame and
the next, concatenated (the paper's Push-T: 2-D actions x frameskip 5 -> 10 numbers), so a window
also needs the f - 1 frames after its last one.
"""

from __future__ import annotations

import torch

from cjepa.types import SlotBatch

#: The paper's window settings (SPEC section 7).
WINDOW_PRESETS = {
    "pusht": {"history": 3, "n_future": 1, "frameskip": 5},
    "clevrer": {"history": 6, "n_future": 10, "frameskip": 2},
}


class SlotWindows:
    """Index of every window of a set of equally long slot episodes.

    Args:
        slots: (E, L, N, D) slots.
        actions: (E, L, A) raw per-frame actions or None.
        proprio: (E, L, P) proprio or None.
        history, n_future: T_h and T_p.
        frameskip: f, frames between window steps.
        stride: frames between consecutive window starts.
    """

    def __init__(
        self,
        slots: torch.Tensor,
        actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        *,
        history: int,
        n_future: int,
        frameskip: int = 1,
        stride: int = 1,
    ) -> None:
        if slots.ndim != 4:
            raise ValueError(f"slots must be (E, L, N, D), got {tuple(slots.shape)}")
        e, length = slots.shape[:2]
        for name, x in (("actions", actions), ("proprio", proprio)):
            if x is not None and (x.ndim != 3 or x.shape[:2] != (e, length)):
                raise ValueError(f"{name} must be (E={e}, L={length}, C), got {tuple(x.shape)}")
        self.slots, self.actions, self.proprio = slots, actions, proprio
        self.time = history + n_future
        self.frameskip = frameskip
        span = (self.time - 1) * frameskip + 1 + (frameskip - 1 if actions is not None else 0)
        if span > length:
            raise ValueError(
                f"episodes of {length} frames are shorter than one window "
                f"({history}+{n_future} steps at frameskip {frameskip} need {span})"
            )
        starts = torch.arange(0, length - span + 1, stride)
        self.index = torch.cartesian_prod(torch.arange(e), starts)  # (windows, 2)

    def __len__(self) -> int:
        return self.index.shape[0]

    def get(self, rows: torch.Tensor) -> SlotBatch:
        """The windows ``rows`` (indices into this dataset) as a batch (without a mask)."""
        ep, start = self.index[rows].unbind(dim=1)  # (B,)
        steps = torch.arange(self.time) * self.frameskip
        frames = start[:, None] + steps[None, :]  # (B, T)
        batch: SlotBatch = {"slots": self.slots[ep[:, None], frames]}  # (B, T, N, D)
        if self.proprio is not None:
            batch["proprio"] = self.proprio[ep[:, None], frames]
        if self.actions is not None:
            sub = frames[:, :, None] + torch.arange(self.frameskip)  # (B, T, f)
            acts = self.actions[ep[:, None, None], sub]  # (B, T, f, A)
            batch["actions"] = acts.flatten(2)  # (B, T, f * A)
        return batch

    def sample(self, batch_size: int, generator: torch.Generator) -> SlotBatch:
        rows = torch.randint(0, len(self), (batch_size,), generator=generator)
        return self.get(rows)
