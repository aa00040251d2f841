"""Rollout videos of the collide evaluation stages: what the encoder saw beside what the predictor
rolled out, and, for the intervention test, the simulator's counterfactual beside the rollout
with the object removed.

Shape legend (``cjepa/types.py``): T frames, N slots, M slots drawn (N, or N - 1 after a
removal), D slot dim, K objects, H x W pixels.

Slots become pixels the way the encoder allows:

- oracle (object-aligned) slots: a ridge probe slot k -> object k's (x, y, sin, cos of the
  angle) fitted on present objects of train episodes, and slot -> present on all of them
  (:func:`fit_state_probe`); the decoded states are drawn by the world's own renderer
  (``cjepa.worlds.collide_render.rasterise``) with the episode's scene (shapes, colours);
- a learned video slot encoder (``StageContext.encoder``, a checkpoint): its decoder. A pixel
  decoder (CNN) gives its reconstruction; a feature decoder (DINOv2) gives features, so its
  alpha masks are drawn instead, one colour per slot (the slot's index before any removal).

Videos (``compose``: labelled panels, a caption per frame, a time bar) are GIFs in the stage's
``out_dir/videos/`` so the sweep logs them as trial artifacts:

- ``rollout_<episode>.gif``: the history window at the episode start, then the rollout to the
  last frame at the model's frameskip; panels "encoder slots" | "predictor rollout", T_h + steps
  frames;
- ``intervention_<episode>_obj<X>.gif``: the counterfactual stage's window ending before X's
  first contact, then ``ceil(horizon / f)`` steps; panels "encoder slots (factual)" | "rollout,
  no obj X" | "simulator, no obj X" (the re-simulated frames), T_h + steps frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cjepa.config import ExperimentConfig
from cjepa.evaluation.rollouts import (
    EvalEpisode,
    Probe,
    history_frames,
    load_split,
    ridge_fit,
    slots_are_aligned,
)
from cjepa.evaluation.video_io import compose, write_video

#: ``draw(slots (T, M, D), objects) -> frames (T, H, W, 3) uint8``; ``objects`` gives each drawn
#: slot's index in the full slot set (slot k of an aligned encoder is object k).
Draw = Callable[[np.ndarray, Sequence[int]], np.ndarray]
#: Slot colours for decoders without pixels (alpha masks), by slot index.
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
     [0, 128, 128], [170, 110, 40], [128, 0, 0], [128, 128, 0], [0, 0, 128], [128, 128, 128]],
    np.uint8,
)  # fmt: skip


class StateProbe(Probe):
    """Linear map slots (..., D) -> (x, y, sin, cos of the angle, present) (..., 5)."""

    def states(self, slots: np.ndarray, objects: Sequence[int], n_objects: int) -> np.ndarray:
        """Collide states (T, K, 6) of slots (T, M, D); objects not drawn are absent."""
        out = np.zeros((slots.shape[0], n_objects, 6), np.float32)
        for i, k in enumerate(objects):
            if k < n_objects:
                x, y, s, c, p = self(slots[:, i].astype(np.float64)).T
                out[:, k, 0], out[:, k, 1], out[:, k, 4] = x, y, np.arctan2(s, c)
                out[:, k, 5] = p > 0.5
        return out


def fit_state_probe(
    episodes: Sequence[EvalEpisode], ridge: float = 1e-3, stride: int = 2
) -> StateProbe:
    """:class:`StateProbe` from aligned slots: pose on present objects, presence on all."""
    pose_x, pose_y, seen_x, seen_y = [], [], [], []
    for ep in episodes:
        s = ep.states[::stride]  # (T', K, 6)
        z = ep.slots[::stride, : s.shape[1]].astype(np.float64)  # (T', K, D)
        present = s[..., 5] > 0
        pose = s[present]
        pose_x.append(z[present])
        pose_y.append(np.stack([pose[:, 0], pose[:, 1], np.sin(pose[:, 4]), np.cos(pose[:, 4])], 1))
        seen_x.append(z.reshape(-1, z.shape[-1]))
        seen_y.append(s[..., 5].reshape(-1, 1))
    if not any(len(x) for x in pose_x):
        raise ValueError("fit_state_probe: no present objects in the episodes")
    w1, b1 = ridge_fit(np.concatenate(pose_x), np.concatenate(pose_y), ridge)
    w2, b2 = ridge_fit(np.concatenate(seen_x), np.concatenate(seen_y).astype(np.float64), ridge)
    return StateProbe(np.concatenate([w1, w2], 1), np.concatenate([b1, b2]))


def probe_draw(probe: StateProbe, ep: EvalEpisode) -> Draw:
    """Draw slots of ``ep`` through ``probe`` and the collide renderer, with ``ep``'s scene."""
    from cjepa.worlds.collide import scene_from_meta
    from cjepa.worlds.collide_render import rasterise

    scene, size, k = scene_from_meta(ep.meta), int(ep.meta.get("size", 64)), ep.states.shape[1]
    return lambda slots, objects: rasterise(scene, probe.states(slots, objects, k), size)[0]


def decoder_draw(model: torch.nn.Module) -> Draw:
    """Draw slots through a video slot model's decoder: pixels, or alpha masks coloured by slot."""
    from cjepa.encoders.video import PixelDecoder

    device = next(model.parameters()).device

    @torch.no_grad()
    def draw(slots: np.ndarray, objects: Sequence[int]) -> np.ndarray:
        recon, alpha = model.decoder(torch.from_numpy(np.asarray(slots, np.float32)).to(device))
        if isinstance(model.decoder, PixelDecoder):  # (T, 3, H, W) in [-1, 1]
            pixels = (recon.clamp(-1, 1) + 1) * 127.5
            return pixels.round().byte().permute(0, 2, 3, 1).cpu().numpy()
        grid = model.grid  # alpha (T, M, P): each patch coloured by its winning slot
        owner = np.asarray(objects)[alpha.argmax(1).cpu().numpy()]  # (T, P)
        return PALETTE[owner % len(PALETTE)].reshape(len(slots), grid, grid, 3)

    return draw


def slot_drawer(
    cfg: ExperimentConfig, episode_dir: str | None, encoder: str | None, stage: str, device: str
) -> Callable[[EvalEpisode], Draw]:
    """``episode -> Draw`` for the slots of ``cfg.data.slot_dir`` (module doc); ValueError
    naming ``stages.<stage>.videos`` when those slots cannot be drawn."""
    if slots_are_aligned(cfg):
        probe = fit_state_probe(load_split(cfg, episode_dir, "train", limit=64))
        return lambda ep: probe_draw(probe, ep)
    if encoder is None:
        raise ValueError(
            f"stages.{stage}.videos: slots of a learned encoder are drawn by its decoder, so "
            "the stage needs StageContext.encoder (its checkpoint); set videos: 0 or pass it"
        )
    from cjepa.encoders import load_encoder
    from cjepa.encoders.video import VideoSlotModel

    enc = load_encoder(encoder, device=device)
    model = getattr(enc, "model", None)
    if not isinstance(model, VideoSlotModel):
        raise ValueError(
            f"stages.{stage}.videos: encoder {encoder!r} has no slot decoder to draw slots "
            f"with ({type(model or enc).__name__}); set videos: 0"
        )
    draw = decoder_draw(model)
    return lambda ep: draw


def _rolled(model: Any, history: np.ndarray, steps: int) -> np.ndarray:
    """(T_h + steps, M, D): the history slots (T_h, M, D) then the model's rollout after them."""
    device = next(model.parameters()).device
    with torch.no_grad():
        pred = model.rollout(torch.from_numpy(history).unsqueeze(0).to(device), steps)[0]
    return np.concatenate([history, pred[0].float().cpu().numpy()])


def _captions(ep: EvalEpisode, frames: Sequence[int], history: int) -> list[str]:
    return [
        f"{ep.episode_id} t={t} " + ("history" if j < history else f"rollout {j - history + 1}")
        for j, t in enumerate(frames)
    ]


def rollout_video(model: Any, ep: EvalEpisode, draw: Draw, frameskip: int) -> np.ndarray:
    """Frames (T_h + steps, H', W', 3): the history window at the episode start, then the rollout
    to the episode's last frame on the frameskip grid (module doc)."""
    th = model.history
    end = frameskip * (th - 1)
    steps = (ep.n_frames - 1 - end) // frameskip
    if steps < 1:
        raise ValueError(f"episode {ep.episode_id!r}: {ep.n_frames} frames leave no rollout step "
                         f"after {th} history frames at frameskip {frameskip}")  # fmt: skip
    frames = list(range(0, end + frameskip * steps + 1, frameskip))
    everyone = list(range(ep.slots.shape[1]))
    seq = _rolled(model, ep.slots[frames[:th]], steps)
    panels = [draw(ep.slots[frames], everyone), draw(seq, everyone)]
    return compose(panels, ["encoder slots", "predictor rollout"], _captions(ep, frames, th))


def intervention_video(
    model: Any,
    ep: EvalEpisode,
    removed: int,
    end: int,
    draw: Draw,
    frameskip: int,
    steps: int,
    slot: int | None = None,
) -> np.ndarray:
    """Frames (T_h + steps, H', W', 3) of one removal of the intervention test (module doc).

    ``removed`` is the object the simulator removes; ``slot`` the slot dropped from the history
    (the object's aligned slot for a learned encoder; None: slot ``removed``, as for oracle
    slots)."""
    from cjepa.worlds.collide import scene_from_meta, simulate

    th = model.history
    frames = history_frames(end, th, frameskip)
    frames += [end + frameskip * j for j in range(1, steps + 1)]
    drop = removed if slot is None else slot
    keep = [k for k in range(ep.slots.shape[1]) if k != drop]
    seq = _rolled(model, ep.slots[frames[:th]][:, keep], steps)
    size = int(ep.meta.get("size", 64))
    truth = simulate(scene_from_meta(ep.meta), ep.n_frames, remove={removed}, size=size).frames
    everyone = list(range(ep.slots.shape[1]))
    panels = [draw(ep.slots[frames], everyone), draw(seq, keep), truth[frames]]
    no = f"no obj {removed}"
    labels = ["encoder slots (factual)", f"rollout, {no}", f"simulator, {no}"]
    return compose(panels, labels, _captions(ep, frames, th))


def write_rollout_videos(
    cfg: ExperimentConfig, model: Any, episodes: Sequence[EvalEpisode], ctx: Any, count: int
) -> list[Path]:
    """``rollout_<episode>.gif`` for the first ``count`` of ``episodes`` into
    ``ctx.out_dir/videos`` (``ctx``: a ``StageContext``); returns the paths."""
    if count < 1:
        return []
    drawer = slot_drawer(cfg, ctx.episode_dir, ctx.encoder, "final_validation", ctx.device)
    out = []
    for ep in list(episodes)[:count]:
        frames = rollout_video(model, ep, drawer(ep), cfg.data.frameskip)
        name = f"rollout_{ep.episode_id}.gif"
        out.append(write_video(Path(ctx.out_dir) / "videos" / name, frames))
    return out


def write_intervention_videos(
    cfg: ExperimentConfig,
    model: Any,
    episodes: Sequence[EvalEpisode],
    rows: Sequence[dict[str, Any]],
    ctx: Any,
    count: int,
    steps: int,
) -> list[Path]:
    """``intervention_<episode>_obj<X>.gif`` for the first ``count`` collider removals of
    ``rows`` (the counterfactual stage's ``cf_interventions.json`` rows) into
    ``ctx.out_dir/videos``; returns the paths."""
    chosen = [r for r in rows if r["kind"] == "collider"][:count]
    if not chosen:
        return []
    drawer = slot_drawer(cfg, ctx.episode_dir, ctx.encoder, "counterfactual", ctx.device)
    by_id = {ep.episode_id: ep for ep in episodes}
    out = []
    for row in chosen:
        ep, x = by_id[row["episode_id"]], int(row["object"])
        slot = int(row.get("slot", x))  # the aligned slot of object x (learned encoders)
        frames = intervention_video(model, ep, x, int(row["end"]), drawer(ep), cfg.data.frameskip,
                                    steps, slot)  # fmt: skip
        name = f"intervention_{ep.episode_id}_obj{x}.gif"
        out.append(write_video(Path(ctx.out_dir) / "videos" / name, frames))
    return out
