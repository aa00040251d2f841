"""The masking ablation end to end: data -> encoder -> slot extraction -> sweep -> table.

Each stage is idempotent, so re-running a preset reuses what exists: episode shards
(``make_data``), slot shards for the encoder's hash (Ray Data extraction), and, with
``resume=True``, the sweep's finished trials. Everything lives under ``root`` (resolved to an
absolute path, so a ``ray job submit`` run on this machine writes where the submitter looks;
on a multi-node cluster ``root`` must be shared storage).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml

from cjepa import metrics as metric_registry
from cjepa.config import ExperimentConfig
from cjepa.data.generate import generate_shards
from cjepa.data.shards import read_shard_metadata
from cjepa.data.splits import list_shards
from cjepa.distributed import tracking
from cjepa.distributed.extract import ExtractReport, extract_local, extract_ray
from cjepa.distributed.preflight import check_ablation, encoder_spec, existing_episodes
from cjepa.distributed.sweep import (
    SweepResult,
    node_resources,
    plan_resources,
    run_controls_task,
    run_sweep,
)
from cjepa.encoders.quality import encoder_quality, quality_line
from cjepa.evaluation.stage import get_stage
from cjepa.schema import apply_overrides, check, from_dict, one_of, read_yaml
from cjepa.sweeps import load_sweep
from cjepa.tables import learning_bar, reference_tables, reference_values
from cjepa.worlds import WORLDS, get_world


@dataclass
class WorldData:
    """How much of a world to simulate (``options`` go to the world's ``make_episode``), or
    ``episode_dir``: existing episode shards to use instead, e.g. published data imported with
    ``make_data.py --from`` (the only source of a data-only world such as ``clevrer``)."""

    episodes: int = 200
    seed: int = 0
    shard_size: int = 50
    options: dict[str, Any] = field(default_factory=dict)
    episode_dir: str | None = None

    def __post_init__(self) -> None:
        check(self.episodes >= 2, "world_data.episodes", self.episodes, ">= 2")
        check(self.shard_size >= 1, "world_data.shard_size", self.shard_size, ">= 1")


@dataclass
class AblationConfig:
    """A preset of ``experiments/ablate_masking.py`` (``experiments/configs/ablate/*.yaml``)."""

    name: str = "smoke"
    root: str = "runs/ablate"
    encoder: str = "oracle"
    extract_batch_size: int = 8
    use_ray_data: bool = True
    world_data: dict[str, WorldData] = field(default_factory=dict)
    experiment: dict[str, Any] = field(default_factory=dict)
    world_overrides: dict[str, list[str]] = field(default_factory=dict)
    sweep: str = "../sweeps/units_budgets.yaml"
    mlflow_experiment: str = "cjepa-ablation"
    tracking_uri: str | None = None
    metrics: list[str] = field(default_factory=lambda: ["final/future_visible", "final/history"])
    #: Evaluation stages per world after training: ``{world: {stage name: {option: value}}}``
    #: (``cjepa.evaluation.stage.STAGES``). A world not listed gets its ``WorldSpec``'s
    #: ``default_stages`` (``final_validation`` for the built-in worlds);
    #: ``name: null`` removes a stage inherited from a ``base:`` preset.
    stages: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)
    #: Run every stage once on trivial inputs (copy-last predictor, true slots) for the table's
    #: reference rows (``cjepa.evaluation.controls``).
    controls: bool = True
    #: Stages run only as controls, not per trial: ``{world: {stage: {option: value}}}``. For a
    #: stage whose ceiling shows it cannot separate models at this budget (smoke VQA), the
    #: controls document that once instead of spending every trial's time on it.
    control_stages: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for world in (*self.world_data, *self.world_overrides, *self.stages, *self.control_stages):
            one_of("world", world, sorted(WORLDS))
        check(self.extract_batch_size >= 1, "extract_batch_size", self.extract_batch_size, ">= 1")

    def stages_for(self, world: str) -> dict[str, dict[str, Any]]:
        chosen = {k: v for k, v in (self.stages.get(world) or {}).items() if v is not None}
        default = get_world(world).default_stages
        return chosen or {name: dict(options) for name, options in default.items()}


def load_ablation(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[AblationConfig, Path]:
    """A preset (``base:`` composition as in ``load_config``) plus dotted overrides."""
    path = Path(path)
    data = read_yaml(path)
    # A relative ``sweep:`` is relative to the file that sets it (a ``base:`` preset elsewhere).
    if "sweep" in data and not Path(data["sweep"]).is_absolute():
        data["sweep"] = str((_setter_dir(path, "sweep") / data["sweep"]).resolve())
    data = apply_overrides(data, list(overrides or []))
    try:
        return from_dict(AblationConfig, data), path.parent
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def _setter_dir(path: Path, key: str) -> Path:
    """The folder of the file in ``path``'s ``base:`` chain that sets top-level ``key``."""
    while True:
        raw = yaml.safe_load(path.read_text()) or {}
        if key in raw or "base" not in raw:
            return path.parent
        path = path.parent / raw["base"]


def _log(message: str) -> None:
    print(f"[ablate] {message}", flush=True)


def make_world_data(cfg: AblationConfig, world: str, root: Path) -> Path:
    if world not in cfg.world_data:
        raise ValueError(f"preset {cfg.name!r} has no world_data for world {world!r}")
    existing = existing_episodes(cfg, world)
    if existing is not None:
        _log(f"data: {existing} (existing episode shards, not simulated)")
        return existing
    wd = cfg.world_data[world]
    out = root / "data" / f"{world}-s{wd.seed}-n{wd.episodes}"
    t0 = time.perf_counter()
    report = generate_shards(
        world, wd.episodes, wd.seed, out, shard_size=wd.shard_size, world_kwargs=wd.options
    )
    _log(
        f"data: {out} ({len(report.written) + len(report.rewritten)} shard(s) written, "
        f"{len(report.kept)} kept, {time.perf_counter() - t0:.1f} s)"
    )
    return out


#: Sweep-run tag: the Ray node ids that extracted slot shards in this run, comma-separated.
EXTRACT_NODES_TAG = "cjepa.extract_nodes"


def extract(cfg: AblationConfig, world: str, data_dir: Path, root: Path) -> ExtractReport:
    encoder = encoder_spec(cfg, world)
    run = extract_ray if cfg.use_ray_data else extract_local
    report = run(
        data_dir, encoder, root / "slots" / data_dir.name, batch_size=cfg.extract_batch_size
    )
    rate = f", {report.frames_per_s:.0f} frames/s" if report.frames_extracted else ""
    nodes = len(set(report.shard_nodes.values()))
    rate += f" on {nodes} node(s)" if nodes else ""
    _log(
        f"slots: {report.out} (encoder {report.encoder_hash[:12]}, {report.episodes} episodes, "
        f"{len(report.written) + len(report.rewritten)} shard(s) extracted{rate})"
    )
    return report


def learned_encoder_quality(
    cfg: AblationConfig, world: str, data_dir: Path, base: ExperimentConfig
) -> dict[str, float]:
    """FG-ARI and slot-object alignment of a checkpoint encoder on the held-out episodes
    (``cjepa.encoders.quality``); empty for the oracle, or with nothing to score it on."""
    if cfg.encoder == "oracle":
        return {}
    quality = encoder_quality(cfg.encoder, data_dir, val_fraction=base.data.val_fraction)
    _log(quality_line(cfg.encoder, quality) if quality else f"encoder {cfg.encoder}: no slot "
         f"masks or no held-out instance masks in {data_dir}; FG-ARI not scored")  # fmt: skip
    return quality


def base_experiment(
    cfg: AblationConfig, world: str, data_dir: Path, slot_dir: Path
) -> ExperimentConfig:
    """The preset's experiment, pointed at the extracted slots of ``world``."""
    meta = read_shard_metadata(list_shards(slot_dir, "slots")[0])
    data = apply_overrides(cfg.experiment, cfg.world_overrides.get(world, []))
    data.setdefault("data", {})
    data["data"] = {
        **data["data"],
        "source": "slots",
        "world": world,
        "slot_dir": str(slot_dir),
        "episode_dir": str(data_dir) if get_world(world).pipeline_episode_dir else None,
        "n_slots": meta["n_slots"],
        "slot_dim": meta["slot_dim"],
    }
    data["name"] = f"{cfg.name}-{world}"
    return from_dict(ExperimentConfig, data)


class SweepInterrupted(RuntimeError):
    """The sweep stopped before every trial ended (SIGINT, a stopped Tune run); its finished
    trials are kept and ``--resume`` continues it."""

    exit_code = 130


def run_ablation(
    cfg: AblationConfig,
    preset_dir: Path,
    *,
    world: str = "collide",
    sweep_id: str | None = None,
    resume: bool = False,
    sweep_overrides: list[str] | None = None,
) -> SweepResult:
    """The whole ablation for ``world``; prints progress and the summary tables."""
    uri = check_ablation(cfg, preset_dir, world=world, sweep_overrides=sweep_overrides)
    # Ray is up now: a resource plan this cluster cannot place fails before any data is made.
    spec = load_sweep(preset_dir / cfg.sweep, sweep_overrides)
    plan_resources(spec, ray.cluster_resources(), node_resources())
    root = Path(cfg.root).resolve()
    _log(f"root {root}; MLflow {uri}")
    data_dir = make_world_data(cfg, world, root)
    extracted = extract(cfg, world, data_dir, root)
    base = base_experiment(cfg, world, data_dir, Path(extracted.out))
    quality = learned_encoder_quality(cfg, world, data_dir, base)
    sweep_id = sweep_id or _latest_or_new(root / "sweeps", f"{cfg.name}-{world}", resume)
    _log(f"sweep {sweep_id} ({spec.mode}): {root / 'sweeps' / sweep_id}")
    stages = cfg.stages_for(world)
    context = {"encoder": encoder_spec(cfg, world), "episode_dir": str(data_dir)}
    controls_ref = _start_controls(cfg, world, base, stages, context) if cfg.controls else None
    t0 = time.perf_counter()
    result = run_sweep(
        base,
        spec,
        sweep_id=sweep_id,
        storage_path=root / "sweeps",
        tracking_uri=uri,
        experiment_name=cfg.mlflow_experiment,
        resume=resume,
        stages=stages,
        stage_context=context,
        parent_tags=_sweep_tags(cfg, world, extracted),
        model_name=f"cjepa-{cfg.name}-{world}",
    )
    if result.interrupted:
        _stop_interrupted(result, controls_ref, uri)
    wait = "; waiting for the controls" if controls_ref is not None else ""
    _log(f"trials finished ({time.perf_counter() - t0:.0f} s){wait}")
    try:
        controls, control_files = ray.get(controls_ref) if controls_ref is not None else ({}, {})
    except BaseException:
        if result.parent_run_id:  # never leave the sweep's parent RUNNING
            tracking.end_run(tracking.client(uri), result.parent_run_id, failed=True)
        raise
    result.encoder_quality = quality
    tables = reference_tables(result.rows, cfg.metrics, controls)
    enc = quality and quality_line(cfg.encoder, quality)  # {} for the oracle: no line
    tables = "\n\n".join(filter(None, [setting_line(base), enc, learning_bar(result.rows), tables]))
    failed = sum(1 for r in result.rows if r.get("error"))
    _log(f"{len(result.rows)} trial(s), {failed} failed, sweep {time.perf_counter() - t0:.0f} s")
    print(f"\n{tables}\n", flush=True)
    if result.parent_run_id:
        tracking.MlflowTracker(uri, result.parent_run_id).log_metrics(quality, 0)
        _publish(cfg, result, uri, tables, controls, control_files, failed=failed > 0)
    return result


def _sweep_tags(cfg: AblationConfig, world: str, extracted: ExtractReport) -> dict[str, str]:
    """The sweep run's tags: preset, world and the nodes that extracted its slots (none when
    every shard was kept from an earlier run, or without Ray Data)."""
    tags = {"cjepa.preset": cfg.name, "cjepa.world": world, "cjepa.encoder": cfg.encoder}
    if extracted.shard_nodes:
        tags[EXTRACT_NODES_TAG] = ",".join(sorted(set(extracted.shard_nodes.values())))
    return tags


def _start_controls(
    cfg: AblationConfig,
    world: str,
    base: ExperimentConfig,
    stages: dict[str, dict[str, Any]],
    context: dict[str, str],
) -> ray.ObjectRef:
    """Run every stage once on the controls, beside the trials (a fraction of a CPU: it waits
    more than it computes); control-only stages are checked now, not after the sweep."""
    extra = {k: v for k, v in (cfg.control_stages.get(world) or {}).items() if v is not None}
    for name in extra:
        get_stage(name)
    return run_controls_task.options(num_cpus=0.05).remote(
        base, {**stages, **extra}, context, sorted(set(extra) - set(stages))
    )


def _stop_interrupted(result: SweepResult, controls_ref: ray.ObjectRef | None, uri: str) -> None:
    """Cancel the controls, mark the parent run and its open trials KILLED (not FINISHED:
    ``--resume`` reopens them) and raise :class:`SweepInterrupted`."""
    if controls_ref is not None:
        ray.cancel(controls_ref, force=True)
    if result.parent_run_id:
        mlf = tracking.client(uri)
        tracking.end_run(mlf, result.parent_run_id, killed=True)
        tracking.end_open_children(mlf, result.experiment_id, result.parent_run_id)
    raise SweepInterrupted(
        f"interrupted: {result.finished} of {result.total} trials finished; rerun with "
        f"--resume (sweep {result.sweep_id})"
    )


def _publish(
    cfg: AblationConfig,
    result: SweepResult,
    uri: str,
    tables: str,
    controls: dict[str, float],
    control_files: dict[str, bytes],
    *,
    failed: bool,
) -> None:
    """Log the tables, the preset and the controls to the sweep's parent run, end it, and say
    where to look."""
    parent = tracking.MlflowTracker(uri, result.parent_run_id)
    parent.log_text(tables + "\n", "ablation_table.md")
    parent.log_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), "preset.yaml")
    _log_controls(parent, result.rows, controls, control_files)
    tracking.end_run(tracking.client(uri), result.parent_run_id, failed=failed)
    if result.model is not None:
        m = result.model
        _log(f"best trial ({m.metric} {m.value:.4g}) registered as MLflow model {m.uri}")
    if uri.startswith(("http://", "https://")):
        _log(f"open the runs: {uri} (experiment {cfg.mlflow_experiment!r})")
    else:
        _log(f"open the runs: mlflow ui --backend-store-uri {uri} --host 127.0.0.1")
    _log("table and plots: python -m analysis.ablation_table (make analyse)")


def setting_line(base: ExperimentConfig) -> str:
    """What every table states: the predictor options that differ from the paper's defaults
    (``PredictorConfig()``), the training budget and the window."""
    from cjepa.config import PredictorConfig

    paper = dataclasses.asdict(PredictorConfig())
    ours = dataclasses.asdict(base.predictor)
    diff = ", ".join(f"{k}={v}" for k, v in ours.items() if paper[k] != v) or "none"
    d, t, o = base.data, base.train, base.optim
    return (
        f"Setting: predictor options differing from the paper's: {diff}; training {t.steps} steps"
        f" x batch {t.batch_size}, {o.optimizer} lr {o.lr:g} ({o.schedule}); window "
        f"{d.history}+{d.n_future} at frameskip {d.frameskip}; encoder slots {d.slot_dir}."
    )


def _log_controls(
    parent: tracking.MlflowTracker,
    rows: list[dict[str, Any]],
    controls: dict[str, float],
    files: dict[str, bytes],
) -> None:
    """Controls as parent-run metrics and ``controls/`` files, plus ``metrics.json``: every
    metric's direction and resolved references (``cjepa.metrics.describe``)."""
    if controls:
        parent.log_metrics(controls, 0)
    names = {k for row in rows for k, v in row.items() if "/" in k and isinstance(v, int | float)}
    doc = {
        "metrics": metric_registry.describe(
            names | set(controls), reference_values(rows, controls)
        ),
        "controls": controls,
    }
    parent.log_text(json.dumps(doc, indent=1), "metrics.json")
    if files:
        with tempfile.TemporaryDirectory() as d:
            for rel, data in files.items():
                (Path(d) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(d) / rel).write_bytes(data)
            parent.log_artifacts(d, "controls")


def _latest_or_new(sweeps: Path, prefix: str, resume: bool) -> str:
    existing = (
        sorted(p.name for p in sweeps.glob(f"{prefix}-*") if p.is_dir()) if sweeps.is_dir() else []
    )
    if resume:
        if not existing:
            raise FileNotFoundError(f"--resume: no sweep named {prefix}-* under {sweeps}")
        return existing[-1]
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
