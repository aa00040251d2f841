"""Frozen encoders that turn episodes into slots (SPEC section 2).

- ``oracle`` / ``oracle:<world>``: ground-truth states -> object-aligned slots. A labelled
  control (perfect object alignment), never a learned result. ``oracle`` means
  ``oracle:collide``.
- a path to a ``.pt`` written by ``experiments/pretrain_encoder.py``: a video slot encoder
  (SAVi-style CNN or VideoSAUR-style on frozen DINOv2) or the DINOv2 patch baseline.

Every encoder implements :class:`SlotEncoder`; extraction code calls only ``load_encoder`` and
that interface.
"""

from __future__ import annotations

from pathlib import Path

from cjepa.encoders.base import CheckpointEncoder, SlotEncoder, load_checkpoint_encoder
from cjepa.encoders.config import EncoderConfig
from cjepa.encoders.oracle import OracleEncoder

__all__ = ["CheckpointEncoder", "EncoderConfig", "OracleEncoder", "SlotEncoder", "load_encoder"]


def load_encoder(spec: str, *, device: str = "cpu") -> SlotEncoder:
    """Build the encoder named by ``spec``: ``"oracle"``, ``"oracle:<world>"``,
    ``"oracle:<world>:<version>"`` (``v1`` rebuilds the first oracle; default ``v2``) or a
    checkpoint path.

    Raises:
        ValueError: unknown oracle world, or a file that is not an encoder checkpoint.
        FileNotFoundError: ``spec`` is neither an oracle name nor an existing file.
    """
    if spec == "oracle" or spec.startswith("oracle:"):
        world, _, version = spec.partition(":")[2].partition(":")
        return OracleEncoder(world or "collide", version=f"oracle-{version or 'v2'}")
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"encoder spec {spec!r} is not 'oracle', 'oracle:<world>' or an existing checkpoint"
        )
    return load_checkpoint_encoder(spec, device=device)
