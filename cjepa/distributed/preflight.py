"""What can refuse an ablation run cheaply, before Ray starts or any data is made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from cjepa.config import ExperimentConfig
from cjepa.distributed import tracking
from cjepa.evaluation.stage import check_stages, get_stage
from cjepa.schema import apply_overrides, from_dict, one_of
from cjepa.sweeps import grid_trials, load_sweep, swept_fields
from cjepa.worlds import WORLDS, get_world

if TYPE_CHECKING:
    from cjepa.distributed.pipeline import AblationConfig


def encoder_spec(cfg: AblationConfig, world: str) -> str:
    """The encoder spec extraction uses for ``world`` (``oracle:<world>`` or a checkpoint)."""
    return f"oracle:{world}" if cfg.encoder == "oracle" else cfg.encoder


def existing_episodes(cfg: AblationConfig, world: str) -> Path | None:
    """``world_data.<world>.episode_dir`` resolved and checked to hold episode shards of
    ``world``, or None when the world's data is to be simulated; a data-only world without one
    raises, saying how to import its data."""
    from cjepa.data.splits import list_shards

    directory = cfg.world_data[world].episode_dir
    if directory is None:
        if get_world(world).make_episode is None:
            raise ValueError(
                f"world_data.{world}.episode_dir: world {world!r} has no simulator; import its "
                f"published data (experiments/make_data.py --from {world} PATH --out DIR) and "
                f"set world_data.{world}.episode_dir=DIR"
            )
        return None
    out = Path(directory).expanduser().resolve()
    if not out.is_dir() or not list_shards(out, "episodes"):
        raise FileNotFoundError(f"world_data.{world}.episode_dir={out} holds no episode shards")
    manifest = out / "manifest.json"
    made = json.loads(manifest.read_text()).get("world") if manifest.is_file() else world
    if made != world:
        raise ValueError(f"world_data.{world}.episode_dir={out} holds world {made!r} episodes")
    return out


def check_ablation(
    cfg: AblationConfig,
    preset_dir: Path,
    *,
    world: str,
    sweep_overrides: list[str] | None = None,
    overrides: list[str] | None = None,
) -> str:
    """Everything cheap that can refuse the run, before Ray starts or data is made: the world,
    the experiment section (as this world's trials will see it), the sweep spec, stage names
    and the tracking store; ``overrides`` (the user's dotted preset overrides) must not set an
    experiment field the sweep sets per trial. Returns the tracking URI."""
    one_of("--world", world, sorted(WORLDS))
    if world not in cfg.world_data:
        raise ValueError(f"preset {cfg.name!r} has no world_data for world {world!r}")
    existing_episodes(cfg, world)
    from cjepa.encoders import load_encoder

    try:  # N and D, as extraction will write them
        encoder = load_encoder(encoder_spec(cfg, world))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"preset {cfg.name!r}, encoder: {err}; experiments/"
            "pretrain_encoder.py writes one (README, learned slots)"
        ) from err
    data = apply_overrides(cfg.experiment, cfg.world_overrides.get(world, []))
    data.setdefault("data", {})
    data["data"] = {
        **data["data"],
        "source": "slots",
        "world": world,
        "slot_dir": "<extracted slots>",
        "episode_dir": "<episodes>" if get_world(world).pipeline_episode_dir else None,
        "n_slots": encoder.n_slots,
        "slot_dim": encoder.slot_dim,
    }
    try:
        provisional = from_dict(ExperimentConfig, data)
    except ValueError as err:
        raise ValueError(f"preset {cfg.name!r}, experiment: {err}") from err
    spec = load_sweep(preset_dir / cfg.sweep, sweep_overrides)
    swept = swept_fields(spec)
    for item in overrides or []:
        key = item.partition("=")[0].removeprefix("experiment.")
        if item.startswith("experiment.") and key in swept:
            raise ValueError(
                f"override {item!r}: the sweep sets {key} per trial, so this would be ignored; "
                f"change it with --sweep-set (e.g. --sweep-set 'grid.{key}=[...]')"
            )
    if spec.mode == "grid":
        grid_trials(spec, provisional)  # a bad key or value (budget above N) fails here
    check_stages(cfg.stages_for(world))  # names and options: stages.<stage>.<field>
    for name in cfg.control_stages.get(world) or {}:
        get_stage(name)
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    return uri
