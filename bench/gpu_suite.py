"""One prepared GPU suite for the paper's speed claims (issue K), library only, JSON out.

On the GPU machine (one H200; Python 3.12 + torch, no Ray/MLflow/Optuna/simulator, no network):

    python bench/gpu_suite.py --out $OUT                # about 6-8 min, bounded by --budget-s 420
    bash bench/gpu_suite.sh                             # the same line

On a CPU (the quick mode ``tests/bench/test_gpu_suite.py`` runs; every code path, < 60 s):

    python bench/gpu_suite.py --quick --out /tmp/gpu_suite

Sections, one JSON file each in ``--out`` plus ``summary.json`` (metadata and every ratio):

- ``planning``: Push-T CEM at the official budget (300 samples / 30 elites / 30 iterations,
  horizon 5) for 50 episodes batched in one solver call, and the official per-episode loop, for
  the slot model (N = 4 slots x D = 128) and the patch model (196 DINOv2 patch tokens x D = 384),
  same predictor (the paper's Push-T shape: width 128, depth 6, 16 heads x 64, MLP 2048,
  proprio + action entity tokens, history 3, n_future 1, frameskip 5), fp32 and bf16 autocast.
  Weights are random and start/goal slots synthetic: the PLANNER is timed without the simulator
  or the encoder (no gym-pusht on the GPU machine). A 50-episode evaluation makes
  ``plans_per_episode`` = 50 env steps / (5 blocks x frameskip 5) = 2 plans per episode, so its
  planning time is 2 x the measured plan time (arithmetic on a measurement, labelled so). The
  patch arm is too slow to run 30 iterations within the budget: it times ``patch_iterations``
  CEM iterations of the same shapes (every iteration costs the same) and the per-iteration
  ratio is the measured one; the patch "official plan" time is marked ``extrapolated``.
- ``planning_options``: the slot model's batched plan with the speed options of
  ``WorldModelCost`` (eager fp32, bf16 autocast, torch.compile fp32 / bf16; compile falls back
  to eager with a warning on a CPU or without a compiler, recorded as ``compile_active``).
- ``extraction``: frames/s of the CNN slot encoder (SAVi-style, 64 px, N = 7) and of the DINOv2
  ViT-S/14 backbone at 196 px (14 x 14 patches), random init (nothing is downloaded).
- ``training``: predictor ``train_step`` steps/s at the paper's Push-T (N 4, T_h 3, T_p 1,
  actions + proprio, |M| 1) and CLEVRER (N 7, T_h 6, T_p 10, |M| 4) shapes, batch 256, Adam.

Every figure: warm-up excluded, median of repeats, device, torch version, git commit, dtype.
``--budget-s`` bounds the whole run: a measurement that would start after the budget is
skipped with a note, every JSON file is rewritten after each measurement, and a watchdog
(``--hard-stop-s``, default budget + 90 s) writes the notes and exits 0 even in the middle of
one overlong measurement, so the files always come back. ``--set KEY=INT`` overrides a size
(``SIZES``), e.g. ``--set episodes=10 patch_repeats=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

from cjepa.config import LossConfig, PredictorConfig
from cjepa.encoders.config import EncoderConfig
from cjepa.encoders.dinov2 import DinoVisionTransformer, normalise_images
from cjepa.encoders.video import VideoSlotModel
from cjepa.masking import make_mask
from cjepa.planning import CEMConfig, CEMSolver, WorldModelCost
from cjepa.planning.world_model import _COMPILED
from cjepa.predictor import SlotPredictor
from cjepa.steps import train_step

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("fp32", "bf16")

#: full (GPU) and --quick sizes; quick keeps every path (both arms, dtypes, batched and loop)
SIZES = {
    "full": dict(
        episodes=50,
        samples=300,
        elites=30,
        iterations=30,
        horizon=5,
        depth=6,
        mlp_dim=2048,
        heads=16,
        head_dim=64,
        slot_tokens=4,
        patch_tokens=196,
        patch_iterations=1,
        patch_repeats=2,
        max_batch=None,
        patch_max_batch=500,
        repeats=3,
        option_iterations=10,
        cnn_size=64,
        cnn_clips=32,
        cnn_frames=8,
        vit_input=96,
        vit_size=196,
        vit_depth=12,
        vit_batch=256,
        train_batch=256,
        train_steps=20,
        budget_s=420.0,
    ),
    "quick": dict(
        episodes=2,
        samples=8,
        elites=2,
        iterations=2,
        horizon=2,
        depth=1,
        mlp_dim=128,
        heads=2,
        head_dim=16,
        slot_tokens=4,
        patch_tokens=16,
        patch_iterations=1,
        patch_repeats=2,
        max_batch=None,
        patch_max_batch=8,
        repeats=2,
        option_iterations=1,
        cnn_size=32,
        cnn_clips=1,
        cnn_frames=2,
        vit_input=32,
        vit_size=28,
        vit_depth=2,
        vit_batch=2,
        train_batch=4,
        train_steps=2,
        budget_s=120.0,
    ),
}
ENV_STEPS, FRAMESKIP, HISTORY = 50, 5, 3  # Push-T evaluation budget, SPEC section 9


def git_commit() -> str:
    """HEAD's commit, from .git directly (the GPU machine may lack git), else git, else unknown."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
        return out.stdout.decode().strip() or "unknown"
    except OSError:
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def metadata(device: torch.device, quick: bool) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": str(device),
        "device_name": name or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": git_commit(),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_threads": torch.get_num_threads(),
        "quick": quick,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "weights": "random init (timing only)",
    }


class Suite:
    """Holds the budget, the device and the results; writes every file after each figure."""

    def __init__(self, args: argparse.Namespace, size: dict) -> None:
        self.args, self.size, self.t0 = args, size, time.perf_counter()
        self.device = torch.device(args.device)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, dict] = {}
        self.meta = {**metadata(self.device, args.quick), "sizes": size}
        self.skipped: list[str] = []
        self.current = ""

    def hard_stop(self) -> None:
        """Watchdog (``--hard-stop-s``): one measurement ran far past the budget; note it,
        write what there is and exit 0, so the JSON comes back before the machine's limit."""
        self.skipped.append(f"{self.current} (hard stop after {self.args.hard_stop_s} s)")
        with contextlib.suppress(Exception):  # the main thread may be mid-update
            self.write()
        print(f"hard stop during {self.current}", flush=True)
        os._exit(0)

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self, dtype: str):
        return torch.autocast(self.device.type, torch.bfloat16, enabled=dtype == "bf16")

    def measure(self, section: str, key: str, fn, *, repeats: int, warmup=None, **info) -> None:
        """Record median seconds of ``fn()`` over ``repeats`` runs (after ``warmup()``, or one
        untimed ``fn()``), or a skip note once the budget is spent."""
        entry = self.results.setdefault(section, {"measurements": {}})["measurements"]
        self.current = f"{section}/{key}"
        if self.left() <= 0:
            entry[key] = {"skipped": f"budget {self.args.budget_s} s spent", **info}
            self.skipped.append(f"{section}/{key}")
        else:
            try:
                (warmup or fn)()
                times = []
                for _ in range(repeats):
                    self.sync()
                    t = time.perf_counter()
                    fn()
                    self.sync()
                    times.append(time.perf_counter() - t)
                entry[key] = {"median_s": statistics.median(times), "repeats_s": times, **info}
            except torch.OutOfMemoryError as err:
                entry[key] = {"skipped": f"out of memory: {str(err)[:200]}", **info}
                self.skipped.append(f"{section}/{key}")
                torch.cuda.empty_cache()
        self.write()

    def get(self, section: str, key: str) -> dict:
        return self.results.get(section, {}).get("measurements", {}).get(key, {})

    def write(self) -> None:
        for section, body in self.results.items():
            (self.out / f"{section}.json").write_text(json.dumps(body, indent=2))
        summary = {
            **self.meta,
            "wall_s": time.perf_counter() - self.t0,
            "budget_s": self.args.budget_s,
            "sections": sorted(self.results),
            "skipped": self.skipped,
            "ratios": ratios(self),
            "targets": targets(self),
            "paper": PAPER,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))


# -- planning ------------------------------------------------------------------------------


def predictor_config(size: dict) -> PredictorConfig:
    """The paper's predictor (width 128) at this run's depth, MLP and heads."""
    keys = ("depth", "mlp_dim", "heads", "head_dim")
    return PredictorConfig(**{k: size[k] for k in keys})


def predictor(suite: Suite, dim: int, seed: int = 0) -> SlotPredictor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SlotPredictor(
            predictor_config(suite.size),
            slot_dim=dim,
            history=HISTORY,
            n_future=1,
            action_dim=2 * FRAMESKIP,
            proprio_dim=4,
        )
    return model.to(suite.device).eval()


def episodes(suite: Suite, e: int, n: int, d: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Synthetic start histories and goals for e episodes (no simulator, no encoder)."""
    g = torch.Generator().manual_seed(seed)
    x = {
        "history_slots": torch.randn(e, HISTORY, n, d, generator=g),
        "goal_slots": torch.randn(e, n, d, generator=g),
        "history_actions": torch.randn(e, HISTORY - 1, 2 * FRAMESKIP, generator=g),
        "history_proprio": torch.randn(e, HISTORY, 4, generator=g),
        "goal_proprio": torch.randn(e, 4, generator=g),
    }
    return {k: v.to(suite.device) for k, v in x.items()}


def planner(suite: Suite, model, x, iterations: int, match: str, max_batch, **options):
    """A function making one batched CEM plan for the episodes in x."""
    s = suite.size
    cem = CEMSolver(
        CEMConfig(
            samples=s["samples"], elites=s["elites"], iterations=iterations, horizon=s["horizon"]
        )
    )
    e = x["goal_slots"].shape[0]

    def run():
        cost = WorldModelCost(model, **x, match=match, max_batch=max_batch, **options)
        g = torch.Generator(device=suite.device).manual_seed(0)
        return cem.solve(cost, e, model.action_dim, generator=g)

    return run


def loop_planner(suite: Suite, model, x, match: str, **options):
    """One plan per episode, one after another (the official code's loop)."""
    e = x["goal_slots"].shape[0]
    runs = [
        planner(
            suite,
            model,
            {k: v[i : i + 1] for k, v in x.items()},
            suite.size["iterations"],
            match,
            None,
            **options,
        )
        for i in range(e)
    ]
    return lambda: [run() for run in runs]


def planning(suite: Suite) -> None:
    s, e, it = suite.size, suite.size["episodes"], suite.size["iterations"]
    plans = math.ceil(ENV_STEPS / (s["horizon"] * FRAMESKIP))
    arms = {
        "slots": (s["slot_tokens"], 128, "hungarian"),
        "patches": (s["patch_tokens"], 384, "none"),
    }
    suite.results["planning"] = {
        "note": "planner timed on synthetic start/goal slots, random weights, no simulator or "
        "encoder in the loop; patches time patch_iterations CEM iterations",
        "protocol": {
            "episodes": e,
            "samples": s["samples"],
            "elites": s["elites"],
            "iterations": it,
            "horizon": s["horizon"],
            "frameskip": FRAMESKIP,
            "history": HISTORY,
            "env_steps": ENV_STEPS,
            "plans_per_episode": plans,
            "predictor": {k: s[k] for k in ("depth", "mlp_dim", "heads", "head_dim")},
            "tokens_per_frame": {k: v[0] + 2 for k, v in arms.items()},
        },
        "measurements": {},
    }
    for dtype in DTYPES:
        prec = {"precision": dtype}
        n, d, match = arms["slots"]
        model, x = predictor(suite, d), episodes(suite, e, n, d)
        info = dict(arm="slots", dtype=dtype, episodes=e, iterations=it, unit="one batched plan")
        small = {k: v[:1] for k, v in x.items()}
        suite.measure(
            "planning",
            f"slots_batched_{dtype}",
            planner(suite, model, x, it, match, s["max_batch"], **prec),
            repeats=s["repeats"],
            warmup=planner(suite, model, x, 1, match, s["max_batch"], **prec),
            **info,
        )
        info.update(unit=f"{e} plans, one episode each")
        suite.measure(
            "planning",
            f"slots_loop_{dtype}",
            loop_planner(suite, model, x, match, **prec),
            repeats=1,
            warmup=planner(suite, model, small, 1, match, None, **prec),
            **info,
        )
    for dtype in reversed(DTYPES):  # bf16 first: the fp32 patch arm is the likeliest to overrun
        prec = {"precision": dtype}
        n, d, match = arms["patches"]
        model, x = predictor(suite, d), episodes(suite, e, n, d)
        rows = math.ceil(s["patch_max_batch"] / s["samples"])
        small = {k: v[:rows] for k, v in x.items()}
        pit = s["patch_iterations"]
        suite.measure(
            "planning",
            f"patches_batched_{dtype}",
            planner(suite, model, x, pit, match, s["patch_max_batch"], **prec),
            repeats=s["patch_repeats"],
            warmup=planner(suite, model, small, 1, match, s["patch_max_batch"], **prec),
            arm="patches",
            dtype=dtype,
            episodes=e,
            iterations=pit,
            unit=f"{pit} CEM iterations of one batched plan",
        )
        del model, x
    derive_planning(suite, plans)


def derive_planning(suite: Suite, plans: int) -> None:
    """Per-iteration times, the 50-episode planning time and the patch extrapolation."""
    it, pit = suite.size["iterations"], suite.size["patch_iterations"]
    derived = {}
    for dtype in DTYPES:
        slot, loop = (
            suite.get("planning", f"slots_batched_{dtype}"),
            suite.get("planning", f"slots_loop_{dtype}"),
        )
        patch = suite.get("planning", f"patches_batched_{dtype}")
        if "median_s" in slot:
            derived[f"slots_per_iteration_s_{dtype}"] = slot["median_s"] / it
            derived[f"slots_episodes_planning_s_{dtype}"] = plans * slot["median_s"]
        if "median_s" in loop:
            derived[f"slots_loop_episodes_planning_s_{dtype}"] = plans * loop["median_s"]
        if "median_s" in patch:
            derived[f"patches_per_iteration_s_{dtype}"] = patch["median_s"] / pit
            derived[f"patches_episodes_planning_s_{dtype}_extrapolated"] = (
                plans * it * patch["median_s"] / pit
            )
    derived["how"] = (
        "episodes_planning_s = plans_per_episode x measured plan time; patches: measured "
        "per-iteration time x iterations x plans_per_episode (extrapolated)"
    )
    suite.results["planning"]["derived"] = derived
    suite.write()


def planning_options(suite: Suite) -> None:
    s, e, it = suite.size, suite.size["episodes"], suite.size["option_iterations"]
    n, d, match = s["slot_tokens"], 128, "hungarian"
    model, x = predictor(suite, d), episodes(suite, e, n, d)
    suite.results["planning_options"] = {
        "note": "slot model, one batched plan of option_iterations CEM iterations per option",
        "iterations": it,
        "episodes": e,
        "measurements": {},
    }
    for compile_ in (False, True):
        for dtype in DTYPES:
            opts = {"precision": dtype, "compile": compile_}
            run = planner(suite, model, x, it, match, s["max_batch"], **opts)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                active = WorldModelCost(model, **x, **opts).runner is not model
            name = f"{'compiled' if compile_ else 'eager'}_{dtype}"
            suite.measure(
                "planning_options",
                name,
                run,
                repeats=s["repeats"],
                warmup=planner(suite, model, x, 1, match, s["max_batch"], **opts),
                dtype=dtype,
                compile=compile_,
                compile_active=active,
                warnings=[str(w.message)[:200] for w in caught],
            )
            if compile_ and "median_s" in suite.get("planning_options", name):
                # a compile failure at the first call falls back to eager: say so
                suite.get("planning_options", name)["compile_active"] = _COMPILED.get(
                    model
                ) not in (
                    None,
                    model,
                )
        suite.write()


# -- extraction ----------------------------------------------------------------------------


def extraction(suite: Suite) -> None:
    s, dev = suite.size, suite.device
    suite.results["extraction"] = {
        "note": "random init, inference_mode, uint8 frames already on "
        "the device; frames_per_s = frames / median_s",
        "measurements": {},
    }
    cfg = EncoderConfig(image_size=s["cnn_size"])  # SAVi-style CNN, N = 7, D = 128
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = VideoSlotModel(cfg).to(dev).eval()
    b, t = s["cnn_clips"], s["cnn_frames"]
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(
        0, 256, (b, t, s["cnn_size"], s["cnn_size"], 3), generator=g, dtype=torch.uint8
    ).to(dev)
    noise = cnn.extraction_noise().to(dev)
    vit = DinoVisionTransformer(14, 384, s["vit_depth"], 6).to(dev).eval()
    vin = s["vit_input"]  # stored Push-T frames are 96 px; DINOv2 reads them resized to 196
    frames = torch.randint(
        0, 256, (s["vit_batch"], vin, vin, 3), generator=g, dtype=torch.uint8
    ).to(dev)
    for dtype in DTYPES:

        def run_cnn(dtype=dtype):
            with torch.inference_mode(), suite.autocast(dtype):
                cnn.slots_over_time(cnn.features(clips)[0], noise)

        def run_vit(dtype=dtype):
            with torch.inference_mode(), suite.autocast(dtype):
                vit(normalise_images(frames, s["vit_size"]))

        suite.measure(
            "extraction",
            f"cnn_slots_{dtype}",
            run_cnn,
            repeats=s["repeats"],
            dtype=dtype,
            frames=b * t,
            image_size=s["cnn_size"],
            n_slots=cfg.n_slots,
            slot_dim=cfg.slot_dim,
        )
        suite.measure(
            "extraction",
            f"dinov2_vits14_{dtype}",
            run_vit,
            repeats=s["repeats"],
            dtype=dtype,
            frames=s["vit_batch"],
            image_size=s["vit_size"],
            depth=s["vit_depth"],
            patches=(s["vit_size"] // 14) ** 2,
        )
    for m in suite.results["extraction"]["measurements"].values():
        if "median_s" in m:
            m["frames_per_s"] = m["frames"] / m["median_s"]
    suite.write()


# -- training ------------------------------------------------------------------------------

#: the paper's shapes (SPEC section 7): slots N, history, future, action, proprio, budget |M|
TRAIN_SHAPES = {
    "pusht": dict(n=4, history=3, future=1, action=2 * FRAMESKIP, proprio=4, budget=1),
    "clevrer": dict(n=7, history=6, future=10, action=0, proprio=0, budget=4),
}


def training(suite: Suite) -> None:
    s, dev = suite.size, suite.device
    suite.results["training"] = {
        "note": "train_step (forward, loss, backward, Adam lr 5e-4) on "
        "random slot windows; steps_per_s = steps / median_s",
        "batch": s["train_batch"],
        "measurements": {},
    }
    for world, shape in TRAIN_SHAPES.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = SlotPredictor(
                predictor_config(s),
                slot_dim=128,
                history=shape["history"],
                n_future=shape["future"],
                action_dim=shape["action"],
                proprio_dim=shape["proprio"],
            ).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        b, t = s["train_batch"], shape["history"] + shape["future"]
        g = torch.Generator().manual_seed(0)
        batch = {
            "slots": torch.randn(b, t, shape["n"], 128, generator=g),
            "mask": make_mask(
                "object", b, shape["history"], shape["n"], shape["budget"], generator=g
            ),
        }
        if shape["action"]:
            batch["actions"] = torch.randn(b, t, shape["action"], generator=g)
        if shape["proprio"]:
            batch["proprio"] = torch.randn(b, t, shape["proprio"], generator=g)
        batch = {k: v.to(dev) for k, v in batch.items()}
        for dtype in DTYPES:

            def run(dtype=dtype, model=model, opt=opt, batch=batch):
                for _ in range(s["train_steps"]):
                    with suite.autocast(dtype):
                        train_step(model, batch, opt, loss=LossConfig())

            suite.measure(
                "training",
                f"{world}_{dtype}",
                run,
                repeats=s["repeats"],
                dtype=dtype,
                steps=s["train_steps"],
                batch=b,
                tokens_per_sequence=(t * (shape["n"] + (2 if shape["action"] else 0))),
            )
    for m in suite.results["training"]["measurements"].values():
        if "median_s" in m:
            m["steps_per_s"] = m["steps"] / m["median_s"]
    suite.write()


# -- ratios --------------------------------------------------------------------------------


def ratios(suite: Suite) -> dict[str, float | None]:
    """Every ratio line, from figures of this run (None where a figure was skipped)."""

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def med(section: str, key: str) -> float | None:
        return suite.get(section, key).get("median_s")

    d = suite.results.get("planning", {}).get("derived", {})
    out: dict[str, float | None] = {}
    for dt in DTYPES:
        out[f"planning_patch_over_slot_per_iteration_{dt}"] = div(
            d.get(f"patches_per_iteration_s_{dt}"), d.get(f"slots_per_iteration_s_{dt}")
        )
        out[f"planning_loop_over_batched_{dt}"] = div(
            med("planning", f"slots_loop_{dt}"), med("planning", f"slots_batched_{dt}")
        )
        out[f"slots_all_episodes_planning_s_{dt}"] = d.get(f"slots_episodes_planning_s_{dt}")
    out["planning_fp32_over_bf16_slots_batched"] = div(
        med("planning", "slots_batched_fp32"), med("planning", "slots_batched_bf16")
    )
    base = med("planning_options", "eager_fp32")
    for name in ("eager_bf16", "compiled_fp32", "compiled_bf16"):
        out[f"options_eager_fp32_over_{name}"] = div(base, med("planning_options", name))
    for dt in DTYPES:
        out[f"extraction_cnn_over_dinov2_frames_per_s_{dt}"] = div(
            suite.get("extraction", f"cnn_slots_{dt}").get("frames_per_s"),
            suite.get("extraction", f"dinov2_vits14_{dt}").get("frames_per_s"),
        )
    for world in TRAIN_SHAPES:
        out[f"training_fp32_over_bf16_time_{world}"] = div(
            med("training", f"{world}_fp32"), med("training", f"{world}_bf16")
        )
    return out


#: SPEC section 8: 50 Push-T episodes on one L40S (the claim these figures test)
PAPER = {"cjepa_50_episodes_s_L40S": 673, "dinowm_50_episodes_s_L40S": 5763, "ratio": 8.6}


def targets(suite: Suite) -> dict[str, dict]:
    """Issue K's targets per dtype, each with this run's figure (None when skipped) and met;
    ``valid`` is False for --quick, whose sizes say nothing about them."""
    r, out = ratios(suite), {}
    for dt in DTYPES:
        rows = {
            "patch_over_slot_planning_ge_100x": (
                r[f"planning_patch_over_slot_per_iteration_{dt}"],
                100,
            ),
            "loop_over_batched_planning_ge_20x": (r[f"planning_loop_over_batched_{dt}"], 20),
            "slots_50_episodes_planning_le_30s": (r[f"slots_all_episodes_planning_s_{dt}"], -30),
        }
        for name, (v, goal) in rows.items():
            met = v is not None and (v >= goal if goal > 0 else v <= -goal)
            out[f"{name}_{dt}"] = {"value": v, "goal": f">= {goal}" if goal > 0 else f"<= {-goal}",
                                   "met": met, "valid": not suite.args.quick}  # fmt: skip
    return out


#: run order: the likeliest overrun (the fp32 patch arm, planning's last figure) comes last
SECTIONS = {
    "extraction": extraction,
    "training": training,
    "planning_options": planning_options,
    "planning": planning,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="directory (default: $OUT)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: every path on a CPU, < 60 s")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget-s", type=float, default=None, help="whole-run bound (420 / 120 quick)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma list, run in this order")
    p.add_argument(
        "--hard-stop-s", type=float, default=None, help="exit mid-measurement (budget + 90)"
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=INT", help="override a size")
    args = p.parse_args(argv)
    if not args.out:
        p.error("--out is required when $OUT is not set")
    size = dict(SIZES["quick" if args.quick else "full"])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in size or not value.lstrip("-").isdigit():
            p.error(f"--set {item!r}: want KEY=INT with KEY one of {sorted(size)}")
        size[key] = int(value)
    args.size = size
    if args.budget_s is None:
        args.budget_s = size["budget_s"]
    if args.hard_stop_s is None:
        args.hard_stop_s = args.budget_s + 90
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    suite = Suite(args, args.size)
    print(
        f"gpu_suite: {suite.meta['device_name']} ({args.device}), torch {torch.__version__}, "
        f"commit {suite.meta['commit'][:12]}, budget {args.budget_s:.0f} s -> {suite.out}"
    )
    watchdog = threading.Timer(args.hard_stop_s, suite.hard_stop)
    watchdog.daemon = True
    watchdog.start()
    for name in args.sections.split(","):
        t = time.perf_counter()
        SECTIONS[name](suite)
        print(f"{name}: {time.perf_counter() - t:.1f} s")
    watchdog.cancel()
    suite.write()
    for key, value in ratios(suite).items():
        print(f"{key}: {'skipped' if value is None else f'{value:.3f}'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
