"""Shape legend used in every docstring and ``# (...)`` comment of the library.

B  batch                     T  time steps in a window (T_h history + T_p future)
N  object slots per frame    D  slot dimension
E  entities per frame (N slots plus auxiliary tokens when aux is encoded as entities)
W  transformer width         L  flattened sequence length (T * E)
A  action dimension          P  proprioception dimension
H  planning horizon          S  CEM samples per episode
K  objects in a world's ground-truth state, F state features
"""

from __future__ import annotations

from typing import TypedDict

import torch


class SlotBatch(TypedDict, total=False):
    """A training batch of slot windows.

    slots:   (B, T_h + T_p, N, D) float, the frozen encoder's slots (targets and inputs).
    mask:    (B, T_h, N) bool, True = hidden history cell (frame 0 never hidden).
    actions: (B, T_h + T_p, A) float, ``actions[:, t]`` is applied after frame t (optional).
    proprio: (B, T_h + T_p, P) float, z-scored proprioception (optional).
    """

    slots: torch.Tensor
    mask: torch.Tensor
    actions: torch.Tensor
    proprio: torch.Tensor
