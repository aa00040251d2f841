"""Side-by-side video frames and their files: labelled panels -> an animated GIF (Pillow) or an
MP4 (OpenCV), written atomically.

Shape legend: F frames, H x W pixels.

A composed frame is a title row (one label per panel), the panels side by side (each scaled to
``height`` px by nearest neighbour, so 32 px worlds stay crisp), and a caption row with a time bar
whose length is the frame's position in the video. The bar makes every frame differ from the one
before it, so a GIF's frame count is the number of frames given (Pillow merges identical
consecutive frames into one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cjepa.data.shard_io import atomic_write, temp_path_for

#: The container formats :func:`write_video` writes, by file suffix.
FORMATS = (".gif", ".mp4")
TEXT_ROW = 14  # px of the title and caption rows
BAR = 3  # px of the time bar under the caption
GAP = 2  # px between panels
INK, PAPER, BAR_COLOUR = (20, 20, 20), (245, 245, 245), (60, 120, 220)


def _as_video(panel: np.ndarray, frames: int, name: str) -> np.ndarray:
    """(F, H, W, 3) uint8; a still (H, W, 3) is repeated over the F frames."""
    panel = np.asarray(panel)
    if panel.ndim == 3:
        panel = np.broadcast_to(panel, (frames, *panel.shape))
    if panel.ndim != 4 or panel.shape[0] != frames or panel.shape[-1] != 3:
        raise ValueError(f"panel {name!r} must be (F={frames}, H, W, 3), got {panel.shape}")
    if panel.dtype != np.uint8:
        raise ValueError(f"panel {name!r} must be uint8, got {panel.dtype}")
    return panel


def _scaled(frame: np.ndarray, height: int) -> np.ndarray:
    """(H, W, 3) -> (height, W * height / H, 3), nearest neighbour."""
    from PIL import Image

    h, w = frame.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.NEAREST))


def compose(
    panels: Sequence[np.ndarray],
    labels: Sequence[str],
    captions: Sequence[str],
    *,
    height: int = 128,
) -> np.ndarray:
    """Panels side by side under their labels, above a per-frame caption and time bar.

    Args:
        panels: one (F, H_i, W_i, 3) uint8 video, or (H_i, W_i, 3) still, per panel.
        labels: one title per panel.
        captions: one line per frame (F of them), e.g. ``"frame 12 | rollout step 3"``.

    Returns:
        (F, H', W', 3) uint8 frames.
    """
    from PIL import Image, ImageDraw, ImageFont

    if len(panels) != len(labels) or not panels:
        raise ValueError(f"compose: {len(panels)} panel(s) but {len(labels)} label(s)")
    frames = len(captions)
    if frames < 1:
        raise ValueError("compose: no frames (captions is empty)")
    videos = [_as_video(p, frames, name) for p, name in zip(panels, labels, strict=True)]
    font = ImageFont.load_default()
    out = []
    for t in range(frames):
        tiles = [_scaled(v[t], height) for v in videos]
        width = sum(x.shape[1] for x in tiles) + GAP * (len(tiles) - 1)
        canvas = Image.new("RGB", (width, height + 2 * TEXT_ROW + BAR), PAPER)
        draw = ImageDraw.Draw(canvas)
        x = 0
        for tile, label in zip(tiles, labels, strict=True):
            canvas.paste(Image.fromarray(tile), (x, TEXT_ROW))
            draw.text((x + 2, 1), label, fill=INK, font=font)
            x += tile.shape[1] + GAP
        draw.text((2, height + TEXT_ROW + 1), captions[t], fill=INK, font=font)
        bar = round(width * (t + 1) / frames)
        draw.rectangle([0, height + 2 * TEXT_ROW, bar - 1, height + 2 * TEXT_ROW + BAR - 1],
                       fill=BAR_COLOUR)  # fmt: skip
        out.append(np.asarray(canvas))
    return np.stack(out)


def write_video(path: str | Path, frames: np.ndarray, *, fps: float = 6.0) -> Path:
    """Write frames (F, H, W, 3) uint8 atomically as an animated GIF (looping) or an MP4 (mp4v),
    chosen by ``path``'s suffix; returns ``path``."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"{path}: frames must be (F >= 1, H, W, 3) uint8, got "
                         f"{frames.shape} {frames.dtype}")  # fmt: skip
    if fps <= 0:
        raise ValueError(f"{path}: fps must be > 0, got {fps!r}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: video suffix must be one of {list(FORMATS)}, got {suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        atomic_write(
            path,
            lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                     duration=round(1000 / fps), loop=0),
        )  # fmt: skip
        return path
    return _write_mp4(path, frames, fps)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    import cv2

    tmp = temp_path_for(path).with_suffix(".mp4")  # OpenCV picks the container by suffix
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        if not writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot open an mp4v writer")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
        writer.release()
        os.replace(tmp, path)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return path
