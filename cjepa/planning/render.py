"""Files of a Push-T planning result: the JSON, a per-episode CSV, start/goal/reached strips and
episode GIFs (start | executed plan | goal).

Strips and GIFs re-render the recorded states with the real env at ``size`` px, so they do not
depend on the (often tiny) frame size the encoder used.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from cjepa.worlds import pusht


def render_states(states: np.ndarray, size: int = 192) -> np.ndarray:
    """(K, 7) states -> (K, size, size, 3) uint8 frames, each drawn by a restored env."""
    env = pusht.make_env(size)
    try:
        return np.stack([pusht.reset_to_state(env, s)["pixels"] for s in np.asarray(states)])
    finally:
        env.close()


def save_strips(path: str | Path, rows: list[dict[str, Any]], size: int = 192) -> None:
    """One row per episode: start | goal | reached, titled with the final block errors.

    Args:
        rows: per-episode results with ``start_state``, ``goal_state``, ``final_state`` (7,)
            and ``block_pos_err``, ``block_angle_err``, ``success_block_final``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("save_strips needs at least one episode row")
    keys = ("start_state", "goal_state", "final_state")
    frames = render_states(np.array([r[k] for r in rows for k in keys]), size)
    fig, axes = plt.subplots(len(rows), 3, figsize=(6, 2.1 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        err = (
            f"reached: {row['block_pos_err']:.0f}px {np.degrees(row['block_angle_err']):.0f}deg "
            f"{'OK' if row['success_block_final'] else 'fail'}"
        )
        titles = (f"{row['episode_id'][-6:]} t={row['start']}", f"goal t={row['goal']}", err)
        for j, title in enumerate(titles):
            axes[i, j].imshow(frames[3 * i + j])
            axes[i, j].set_title(title, fontsize=7)
            axes[i, j].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_plan_video(path: str | Path, row: dict[str, Any], size: int = 128) -> Path:
    """One episode as a GIF of 1 + budget frames: the start and the goal as stills beside the
    executed states (``row["executed_states"]``, start first), captioned with the step and, on the
    last frame, the block errors and success."""
    from cjepa.evaluation.video_io import compose, write_video

    executed = np.asarray(row["executed_states"])  # (1 + budget, 7)
    frames = render_states(np.concatenate([executed, [row["goal_state"]]]), size)
    budget = len(executed) - 1
    captions = [f"{row['episode_id']} seed {row['seed']} step {t}/{budget}" for t in range(budget)]
    verdict = "OK" if row["success_block_final"] else "fail"
    err = f"{row['block_pos_err']:.0f}px {np.degrees(row['block_angle_err']):.0f}deg {verdict}"
    captions.append(f"step {budget}/{budget}: {err}")
    panels = [frames[0], frames[:-1], frames[-1]]
    labels = [f"start t={row['start']}", "executed plan", f"goal t={row['goal']}"]
    return write_video(path, compose(panels, labels, captions))


def write_table(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Per-episode CSV of the scalar columns (state vectors are left to the JSON)."""
    if not rows:
        raise ValueError("write_table needs at least one episode row")
    cols = [k for k, v in rows[0].items() if not isinstance(v, list | dict)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(
    result: dict[str, Any],
    out_dir: Path,
    *,
    json_name: str = "plan.json",
    strips: int = 4,
    stem: str = "",
    videos: int = 0,
) -> list[Path]:
    """Write ``json_name`` (episode rows without their executed states), ``<stem>episodes.csv``,
    (``strips`` > 0) ``<stem>strips.png`` and, for the first ``videos`` episodes,
    ``videos/<stem>plan_<episode>_s<seed>.gif`` into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / json_name, out_dir / f"{stem}episodes.csv"]
    rows = [{k: v for k, v in r.items() if k != "executed_states"} for r in result["episodes"]]
    paths[0].write_text(json.dumps({**result, "episodes": rows}, indent=1) + "\n")
    write_table(paths[1], result["episodes"])
    if strips > 0:
        paths.append(out_dir / f"{stem}strips.png")
        save_strips(paths[2], result["episodes"][:strips])
    for row in result["episodes"][:videos]:
        name = f"{stem}plan_{row['episode_id']}_s{row['seed']}.gif"
        paths.append(save_plan_video(out_dir / "videos" / name, row))
    return paths
