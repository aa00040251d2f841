"""Push-T planning evaluation: DINO-WM's protocol (SPEC section 9) for any planner, batched.

Per seed: ``episodes`` trajectories of ``protocol.split`` and a start frame on each are drawn;
each env is restored to the stored start state (checked to ``RESTORE_TOL``), the goal is the
stored state ``offset`` env steps later, and the planner gets ``budget`` env steps. All episodes
of a seed advance together, so one planner call (one CEM cost call) covers every episode.

Presets (``PROTOCOLS``, ``PlanProtocol.preset``): ``official`` is the public code's protocol
(training-split starts, 1-frame history, ``public`` success at any step); ``cjepa`` is this
project's stricter default (held-out, non-trivial starts, the model's history, ``public`` at the
final step, CEM returning its best candidate).

Success (both recorded, ``protocol.success`` / ``protocol.when`` pick the headline):
- ``block``: block position error < 20 px and wrapped angle error < pi/9 (the paper's text).
- ``public``: the public code's ``eval_state``: the L2 norm over agent AND block positions
  (4 numbers) < 20, angle error ``min(|d|, 2 pi - |d|)`` < pi/9 (the SPEC's known trap).
Each is evaluated at the ``final`` state and at ``any_step`` of the budget (start excluded).
With ``nontrivial`` (default) starts whose block already passes ``block`` against the goal are
not drawn: scripted data often leaves the block still for 25 steps. ``replay`` (stored actions)
is the protocol's self-check: it must reach every goal.

History for the world model: ``protocol.history`` frames (None: the model's T_h) at the model's
frameskip f ending at the current frame.
At the start they are the stored trajectory's frames before the start (``min_start`` frames of
it are kept, default 10 = (3 - 1) x 5); if fewer exist, the earliest one is repeated, with zero
(dataset-mean) actions between the repeats. Frame encoders see frames rendered at the stored
episode size; ``oracle:pusht`` reads states. Actions are planned in z-scored space (train-split
statistics), clipped to the train-split range, and executed as relative env actions in pixels.
"""

from __future__ import annotations

import importlib.metadata
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from cjepa.planning.pusht_protocol import (
    ANGLE_TOL,
    MATCHES,
    POS_TOL,
    PROTOCOLS,
    RESTORE_TOL,
    SPLITS,
    SUCCESS,
    WHEN,
    PlanProtocol,
    angle_error,
    protocol_from_options,
    success,
)
from cjepa.planning.pusht_rollout import Planner, PushTData, Rollout, load_data, select_episodes

__all__ = [
    "ANGLE_TOL",
    "HISTORY_NOTE",
    "MATCHES",
    "POS_TOL",
    "PROTOCOLS",
    "RESTORE_TOL",
    "SPLITS",
    "SUCCESS",
    "WHEN",
    "PlanProtocol",
    "Planner",
    "PushTData",
    "Rollout",
    "angle_error",
    "episode_rows",
    "evaluate",
    "load_data",
    "per_episode_means",
    "protocol_from_options",
    "protocol_record",
    "run_seed",
    "select_episodes",
    "success",
    "summarise",
]


def evaluate(planner: Planner, data: PushTData, protocol: PlanProtocol) -> dict[str, Any]:
    """Run ``planner`` on every seed's episodes; per-episode rows, rates and the protocol."""
    rows, per_seed, t_all = [], {}, time.perf_counter()
    # env steps over all seeds; shown only on a terminal (tqdm: disable=None)
    bar = tqdm(total=protocol.budget * len(protocol.seeds), unit="step", desc="plan", disable=None)
    for seed in protocol.seeds:
        seed_rows, per_seed[str(seed)] = run_seed(planner, data, protocol, seed, bar)
        rows += seed_rows
    bar.close()
    return {
        "planner": planner.name,
        **summarise(rows, protocol),
        "wall_s": time.perf_counter() - t_all,
        **per_episode_means(rows),
        "per_seed": per_seed,
        "episodes": rows,
        "protocol": protocol_record(planner, data, protocol),
    }


def run_seed(
    planner: Planner, data: PushTData, protocol: PlanProtocol, seed: int, bar: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Plan one seed's episodes for the whole budget: their rows and the seed's timings."""
    rollout = Rollout(select_episodes(data, protocol, seed), protocol)
    planner.begin(rollout, seed)
    t0, plan_s = time.perf_counter(), 0.0
    while rollout.steps < protocol.budget:
        t1 = time.perf_counter()
        actions = planner.act(rollout)
        plan_s += time.perf_counter() - t1
        before = rollout.steps
        rollout.step(actions[:, : protocol.budget - rollout.steps])
        bar.update(rollout.steps - before)
    calls, b = planner.calls(), rollout.batch
    rows = episode_rows(rollout, seed)
    for r in rows:
        r.update(
            plan_wall_s=plan_s / b,  # batched: the seed's planning time shared equally
            predictor_calls=calls.get("rollout_steps", 0),  # forwards each episode went through
            sim_steps=calls.get("sim_steps", 0) / b,  # oracle planner's simulated env steps
        )
    info = {"wall_s": time.perf_counter() - t0, "plan_wall_s": plan_s, **calls}
    rollout.close()
    return rows, info


def summarise(rows: list[dict[str, Any]], protocol: PlanProtocol) -> dict[str, Any]:
    """The headline success rate, every definition x timing, and starts already at the goal."""
    rates = {
        f"{d}/{w}": float(np.mean([r[f"success_{d}_{w}"] for r in rows]))
        for d in SUCCESS
        for w in WHEN
    }
    return {
        "success_rate": rates[f"{protocol.success}/{protocol.when}"],
        "success_rates": rates,
        "start_already_success": float(np.mean([r["start_success_block"] for r in rows])),
    }


def per_episode_means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Planning time, predictor calls and simulated steps per episode, averaged."""
    return {
        "plan_wall_s_per_episode": float(np.mean([r["plan_wall_s"] for r in rows])),
        "predictor_calls_per_episode": float(np.mean([r["predictor_calls"] for r in rows])),
        "sim_steps_per_episode": float(np.mean([r["sim_steps"] for r in rows])),
    }


def protocol_record(planner: Planner, data: PushTData, protocol: PlanProtocol) -> dict[str, Any]:
    """Every protocol setting, the episodes each seed drew and the planner's settings."""
    return {
        **protocol.to_dict(),
        "headline": f"{protocol.success}/{protocol.when}",
        "episode_ids": {
            str(s): [[e.episode_id, t] for e, t in select_episodes(data, protocol, s)]
            for s in protocol.seeds
        },
        "planner": planner.settings(),
        "cem": planner.settings().get("cem"),  # None: the planner does not use CEM
        "history_frames": HISTORY_NOTE,
        "gym_pusht": importlib.metadata.version("gym-pusht"),
    }


HISTORY_NOTE = (
    "protocol.history frames (None: the model's T_h) at the model frameskip ending at the "
    "current frame; before the start the stored ones, the earliest repeated (zero actions) if "
    "the start is too early"
)


def episode_rows(rollout: Rollout, seed: int) -> list[dict[str, Any]]:
    """Per-episode outcome: success by definition x timing, final and best errors."""
    done = rollout.states[:, rollout.now :]  # (B, 1 + budget, 7): start ... final
    g = rollout.goals[:, None]
    pos = np.linalg.norm(done[..., 2:4] - g[..., 2:4], axis=-1)  # (B, 1 + budget)
    ang = angle_error(done[..., 4], g[..., 4])
    rows = []
    for i in range(rollout.batch):
        row: dict[str, Any] = {
            "seed": seed,
            "episode_id": rollout.ids[i],
            "start": rollout.starts[i],
            "start_pixel_diff": rollout.pixel_diff[i],
            "goal": rollout.starts[i] + rollout.offset,
        }
        for d in SUCCESS:
            ok = success(done[i], rollout.goals[i], d)
            row[f"success_{d}_final"] = bool(ok[-1])
            row[f"success_{d}_any_step"] = bool(ok[1:].any())  # the start does not count
            row[f"start_success_{d}"] = bool(ok[0])
        row.update(
            block_pos_err=float(pos[i, -1]),
            block_angle_err=float(ang[i, -1]),
            agent_pos_err=float(np.linalg.norm(done[i, -1, :2] - rollout.goals[i, :2])),
            start_block_pos_err=float(pos[i, 0]),
            min_block_pos_err=float(pos[i].min()),
            start_state=done[i, 0].tolist(),
            goal_state=rollout.goals[i].tolist(),
            final_state=done[i, -1].tolist(),
            executed_states=done[i].tolist(),  # (1 + budget, 7); videos only, not plan.json
        )
        rows.append(row)
    return rows
