"""What the published-layout loaders share: the error they raise, field access, JSON, video.

Every error is a ``LayoutError`` whose message names the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class LayoutError(ValueError):
    """A published file is missing or malformed; the message names the file and the field."""


def field(record: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise LayoutError(f"{where}: missing field {key!r}")
    return record[key]


def read_video(path: Path, size: int) -> np.ndarray:
    """Decode a video with cv2 into (T, size, size, 3) uint8 RGB (aspect ratio not kept).

    Squashing 480 x 320 CLEVRER frames to a square follows SAVi's 64 x 64 CLEVRER input.
    """
    if not path.is_file():
        raise LayoutError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if rgb.shape[:2] != (size, size):
                rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
            frames.append(rgb)
    finally:
        cap.release()
    if not frames:
        raise LayoutError(f"{path}: no frames could be decoded")
    return np.stack(frames).astype(np.uint8)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError and bad encodings
        raise LayoutError(f"{path}: not valid JSON ({err})") from err
