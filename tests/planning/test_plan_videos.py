"""Push-T planning episodes as GIFs: start | executed plan | goal, 1 + budget frames each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cjepa.data.generate import generate_shards
from cjepa.planning import pusht_eval as pe
from cjepa.planning.cem import CEMConfig
from cjepa.planning.pusht_planners import RandomPlanner
from cjepa.planning.render import render_states, write_outputs

VAL, BUDGET = 0.5, 6


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht_videos")
    kwargs = {"steps": 30, "size": 32, "policy": "scripted"}
    generate_shards("pusht", 8, 0, out, shard_size=8, workers=1, world_kwargs=kwargs)
    data = pe.load_data(out, VAL)
    prot = pe.PlanProtocol(episodes=2, seeds=[0], offset=6, budget=BUDGET, val_fraction=VAL,
                           min_start=4, nontrivial=False,
                           cem=CEMConfig(samples=4, elites=2, iterations=1, horizon=2))  # fmt: skip
    return pe.evaluate(RandomPlanner(data.action_stats()), data, prot)


def test_plan_gifs_show_start_executed_plan_and_goal(result, tmp_path):
    paths = write_outputs(result, tmp_path, strips=0, videos=2)
    gifs = [p for p in paths if p.suffix == ".gif"]
    rows = result["episodes"]
    assert [p.name for p in gifs] == [f"plan_{r['episode_id']}_s{r['seed']}.gif" for r in rows]
    for path, row in zip(gifs, rows, strict=True):
        assert path.parent == tmp_path / "videos" and path.stat().st_size > 0
        with Image.open(path) as im:
            assert im.n_frames == 1 + BUDGET
            im.seek(im.n_frames - 1)  # the last frame's middle panel is the final state
            last = np.asarray(im.convert("RGB"))
        final = render_states(np.array([row["final_state"]]), 128)[0]
        middle = last[14 : 14 + 128, 128 + 2 : 2 * 128 + 2].astype(int)
        assert np.abs(middle - final).mean() < 8  # GIF palette quantisation only
    # the executed states feed the videos; plan.json stays as before (no per-step states)
    stored = json.loads(paths[0].read_text())["episodes"]
    assert all("executed_states" not in r for r in stored)
    assert all(len(r["executed_states"]) == 1 + BUDGET for r in rows)
    assert write_outputs(result, tmp_path / "none", strips=0)[-1].suffix == ".csv"
