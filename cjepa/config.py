"""Typed experiment configuration.

Dataclasses are the schema: each validates itself in ``__post_init__`` and raises a ValueError
naming the field and the value at fault. YAML presets (``experiments/configs/``) build them
through ``load_config``; a preset may name a ``base`` preset to start from, and dotted
command-line overrides (``predictor.depth=4``) come last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Importable from here too: cjepa.config is where callers look first.
from cjepa.data.config import WORLD_AUX as WORLD_AUX
from cjepa.data.config import DataConfig as DataConfig
from cjepa.data.config import SyntheticConfig as SyntheticConfig
from cjepa.masking import (
    OFFICIAL_UNITS,
    SAMPLINGS,
    STRATEGIES,
    budget_from_ratio,
    ratio_from_budget,
)
from cjepa.schema import apply_overrides as apply_overrides
from cjepa.schema import check, one_of, read_yaml
from cjepa.schema import flatten as flatten
from cjepa.schema import from_dict as from_dict
from cjepa.schema import parse_yaml as parse_yaml


@dataclass
class MaskingConfig:
    """Which history cells are hidden (SPEC section 5).

    Give ``budget`` (|M|, objects) or ``ratio`` (fraction of maskable cells); ``resolve`` fills
    the other with the rule of ``cjepa.masking.budget_from_ratio`` so every run records both.

    ``sampling`` (``cjepa.masking.make_mask``): ``uniform`` (the paper), ``exact``, ``fixed``
    (one pattern from a torch generator seeded with ``FIXED_SEED``) or ``fixed_official`` (the
    official code's draw: ``np.random.RandomState(train.seed).choice(N, |M|, replace=False)``
    object slots, auxiliary tokens excluded; units ``object`` and ``none`` only).
    """

    unit: str = "object"
    budget: int | None = None
    ratio: float | None = None
    sampling: str = "uniform"

    def __post_init__(self) -> None:
        one_of("masking.unit", self.unit, STRATEGIES)
        one_of("masking.sampling", self.sampling, SAMPLINGS)
        if self.sampling == "fixed_official":
            one_of(
                "masking.unit (with masking.sampling='fixed_official')", self.unit, OFFICIAL_UNITS
            )
        if self.budget is not None:
            check(self.budget >= 0, "masking.budget", self.budget, ">= 0")
        if self.ratio is not None:
            check(0 <= self.ratio <= 1, "masking.ratio", self.ratio, "in [0, 1]")

    def resolve(self, n_slots: int) -> MaskingConfig:
        """Return a copy with both budget and ratio set for N = n_slots."""
        if self.unit == "none":
            return dataclasses.replace(self, budget=0, ratio=0.0)
        budget = self.budget
        if budget is None:
            budget = 0 if self.ratio is None else budget_from_ratio(self.ratio, n_slots)
        elif self.ratio is not None and budget_from_ratio(self.ratio, n_slots) != budget:
            raise ValueError(
                f"masking.budget={budget} and masking.ratio={self.ratio} disagree for "
                f"N={n_slots} slots (ratio gives {budget_from_ratio(self.ratio, n_slots)})"
            )
        check(budget <= n_slots, "masking.budget", budget, f"<= the number of slots {n_slots}")
        return dataclasses.replace(self, budget=budget, ratio=ratio_from_budget(budget, n_slots))


@dataclass
class PredictorConfig:
    """The masked slot predictor (SPEC section 4). Defaults are the paper's.

    ``future_query``: what a future token starts from. ``anchor`` (the paper): the mask token +
    phi(the object's frame-0 slot), like a masked history token. ``last_visible`` (a cjepa
    option, not in the paper): phi of the object's last visible history slot, so predicting
    "no change" is the starting point; on smoke collide slots it reached val future MSE 0.017
    after 400 steps vs 0.041 with ``anchor`` (copy-last 0.013).

    ``future_residual`` (a cjepa option, not in the paper): a future cell's output is the
    object's last visible history slot plus the head's output, so the head predicts the change
    rather than the whole slot (history cells are unchanged).

    Options that reproduce the official code (galilai-group/cjepa); ``variant: official`` on the
    ``ExperimentConfig`` sets all of them (``OFFICIAL``):

    - ``head_dim``: per-head size; ``null`` = transformer width / heads (the official
      ``nn.MultiheadAttention(width, heads)``: 128 / 16 = 8).
    - ``norm_before_attention``: ``false`` drops the LayerNorm before attention (official).
    - ``short_history``: ``reject`` (a history must have exactly T_h frames) or ``right_align``
      (official inference: k < T_h frames use time-embedding rows T_h-k .. T_h-1, then the
      future rows; the first given frame is the anchor).
    - ``aux_order``: per-frame order of the auxiliary entity tokens (and of the appended
      features under ``concat_join: append``): ``action_proprio`` (cjepa) or ``proprio_action``
      (official and the paper's figure). With no positional code along entities this changes
      only the token layout (attention maps), not what the model can compute.
    - ``future_action``: the action token at future frames (entity encoding): ``zeros`` (cjepa:
      the action embedding of a zero action at the window's last step, the real actions at
      earlier future steps) or ``masked`` (official: every future action token is a query,
      mask token + e_t + phi(the frame-0 action embedding); with T_p > 1 the actions between
      predicted frames are then not read).
    - ``proprio_target``: what the proprio output predicts: ``raw`` proprio through a separate
      head (cjepa) or ``embedding`` (official: the proprio embedding of the future frame,
      detached, through the shared slot head; needs width = slot dim). Rollouts then feed the
      predicted embedding back as the next history token, as the official rollout does.
    - ``concat_join`` (``aux_encoding: concat``): ``project`` (cjepa: small embeddings mixed
      into the width by a Linear and added to every token) or ``append`` (official: the small
      embeddings are concatenated onto every slot token, the transformer width grows by
      ``concat_dim`` per input, and a hidden token is a query over the whole widened token).
    - ``attention_output_dropout``: dropout on the attention output before the residual
      (cjepa); the official block has none (it keeps dropout on the attention weights and in
      the MLP, as cjepa does).
    - ``time_embed_init``: ``trunc_normal`` (std 0.02, cjepa) or ``standard_normal`` (std 1,
      the official ``torch.randn``).
    """

    width: int = 128
    depth: int = 6
    heads: int = 16
    head_dim: int | None = 64
    mlp_dim: int = 2048
    dropout: float = 0.1
    aux_encoding: str = "entity"
    concat_dim: int = 10
    norm_before_attention: bool = True
    future_query: str = "anchor"
    future_residual: bool = False
    short_history: str = "reject"
    aux_order: str = "action_proprio"
    future_action: str = "zeros"
    proprio_target: str = "raw"
    concat_join: str = "project"
    attention_output_dropout: bool = True
    time_embed_init: str = "trunc_normal"

    def __post_init__(self) -> None:
        for name in ("width", "depth", "heads", "mlp_dim", "concat_dim"):
            check(getattr(self, name) >= 1, f"predictor.{name}", getattr(self, name), ">= 1")
        if self.head_dim is not None:
            check(self.head_dim >= 1, "predictor.head_dim", self.head_dim, ">= 1 or null")
        check(0 <= self.dropout < 1, "predictor.dropout", self.dropout, "in [0, 1)")
        one_of("predictor.aux_encoding", self.aux_encoding, ["entity", "concat", "none"])
        one_of("predictor.future_query", self.future_query, ["anchor", "last_visible"])
        one_of("predictor.short_history", self.short_history, ["reject", "right_align"])
        one_of("predictor.aux_order", self.aux_order, ["action_proprio", "proprio_action"])
        one_of("predictor.future_action", self.future_action, ["zeros", "masked"])
        one_of("predictor.proprio_target", self.proprio_target, ["raw", "embedding"])
        one_of("predictor.concat_join", self.concat_join, ["project", "append"])
        one_of(
            "predictor.time_embed_init", self.time_embed_init, ["trunc_normal", "standard_normal"]
        )
        if self.aux_encoding == "concat" and self.proprio_target == "embedding":
            check(
                self.concat_join == "append",
                "predictor.concat_join",
                self.concat_join,
                "'append' when aux_encoding is 'concat' and proprio_target is 'embedding' "
                "(projected concat features have no proprio output)",
            )


#: history_loss cell selections (``LossConfig.history_frames``).
HISTORY_FRAMES = ("masked", "masked_with_anchor", "all_anchors")


@dataclass(frozen=True)
class LossConfig:
    """Weights of L = w_h L_history + w_f (L_future + w_p L_proprio) (SPEC section 6).

    ``history_frames``: which history cells L_history scores (``cjepa.losses.history_loss``):
    ``masked`` (the paper: hidden cells only), ``masked_with_anchor`` (the official code: every
    history frame of the masked objects, frame 0 included) or ``all_anchors`` (hidden cells plus
    frame 0 of every slot). ``history_loss_includes_anchor`` is the older spelling of
    ``all_anchors``: ``true`` selects it (and conflicts with any other explicit choice); it is
    kept equal to ``history_frames == "all_anchors"`` so saved configs load either way.
    """

    history_weight: float = 1.0
    future_weight: float = 1.0
    proprio_weight: float = 1.0
    history_frames: str = "masked"
    history_loss_includes_anchor: bool = False

    def __post_init__(self) -> None:
        for name in ("history_weight", "future_weight", "proprio_weight"):
            check(getattr(self, name) >= 0, f"loss.{name}", getattr(self, name), ">= 0")
        one_of("loss.history_frames", self.history_frames, HISTORY_FRAMES)
        frames = self.history_frames
        if self.history_loss_includes_anchor:
            check(
                frames in ("masked", "all_anchors"),
                "loss.history_loss_includes_anchor",
                True,
                f"false with loss.history_frames={frames!r} (true means 'all_anchors')",
            )
            frames = "all_anchors"
        object.__setattr__(self, "history_frames", frames)
        object.__setattr__(self, "history_loss_includes_anchor", frames == "all_anchors")


@dataclass
class OptimConfig:
    optimizer: str = "adam"
    lr: float = 5e-4
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        one_of("optim.optimizer", self.optimizer, ["adam", "adamw"])
        one_of("optim.schedule", self.schedule, ["constant", "cosine"])
        check(self.lr > 0, "optim.lr", self.lr, "> 0")
        check(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, ">= 0")
        check(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, ">= 0")
        check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", self.min_lr_ratio, "in [0, 1]")
        if self.grad_clip is not None:
            check(self.grad_clip > 0, "optim.grad_clip", self.grad_clip, "> 0 or null")


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    seed: int = 42
    log_every: int = 100
    eval_every: int = 250
    eval_batches: int = 8
    ckpt_every: int = 500
    out_dir: str = "runs/demo"
    device: str = "auto"
    #: torch intra-op threads for training and evaluation (0: torch's default). Small models on
    #: a few cores run ~4x faster with 1 thread per process than with 2.
    threads: int = 0

    def __post_init__(self) -> None:
        check(self.threads >= 0, "train.threads", self.threads, ">= 0 (0 = torch's default)")
        for name in ("steps", "batch_size", "log_every", "eval_every", "eval_batches"):
            check(getattr(self, name) >= 1, f"train.{name}", getattr(self, name), ">= 1")
        check(self.ckpt_every >= 0, "train.ckpt_every", self.ckpt_every, ">= 0 (0 = off)")
        check(
            self.device in ("auto", "cpu") or self.device.startswith(("cuda", "mps")),
            "train.device",
            self.device,
            "'auto', 'cpu', 'cuda[:i]' or 'mps'",
        )


#: What ``variant: official`` sets: the official code's behaviour (galilai-group/cjepa) where it
#: differs from the paper (SPEC sections 3-6, [code differs]). ``load_config`` / ``from_dict``
#: fill these fields; a field the config sets to another value is an error, not overridden.
#: Not included: the optimiser (official AdamW, wd 0.01) and schedules, which stay explicit.
OFFICIAL: dict[str, Any] = {
    "predictor.head_dim": None,  # transformer width / heads (nn.MultiheadAttention)
    "predictor.norm_before_attention": False,
    "predictor.future_query": "anchor",
    "predictor.future_residual": False,
    "predictor.short_history": "right_align",
    "predictor.aux_order": "proprio_action",
    "predictor.future_action": "masked",
    "predictor.proprio_target": "embedding",
    "predictor.concat_join": "append",
    "predictor.attention_output_dropout": False,
    "predictor.time_embed_init": "standard_normal",
    "loss.history_frames": "masked_with_anchor",
    "masking.sampling": "fixed_official",
}

VARIANTS = ("paper", "official")


@dataclass
class ExperimentConfig:
    """One run. ``variant``: ``paper`` (every field as given, defaults the paper's) or
    ``official`` (the fields of ``OFFICIAL`` take the official code's values)."""

    name: str = "demo"
    variant: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        one_of("variant", self.variant, VARIANTS)
        if self.variant == "official":
            for key, value in OFFICIAL.items():
                section, name = key.split(".")
                got = getattr(getattr(self, section), name)
                if got != value:
                    raise ValueError(
                        f"{key}={got!r} conflicts with variant='official', which needs "
                        f"{value!r} (load_config/from_dict fill it when the field is unset)"
                    )
        p = self.predictor
        if p.proprio_target == "embedding" and p.aux_encoding == "entity" and self.data.proprio_dim:
            check(
                p.width == self.data.slot_dim,
                "predictor.width",
                p.width,
                f"data.slot_dim={self.data.slot_dim}: with proprio_target='embedding' the slot "
                "head also predicts the proprio embedding, as in the official code",
            )
        self.masking = self.masking.resolve(self.data.n_slots)
        has_aux = self.data.action_dim > 0 or self.data.proprio_dim > 0
        if self.predictor.aux_encoding != "none" and not has_aux:
            # Nothing to encode: the aux encoding is moot, record it honestly as "none".
            self.predictor = dataclasses.replace(self.predictor, aux_encoding="none")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def prepare_dict(data: dict[str, Any]) -> dict[str, Any]:
        """``from_dict`` fills the variant's fields first (``apply_variant``)."""
        return apply_variant(data)


def apply_variant(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the ``OFFICIAL`` fields of an experiment dict whose ``variant`` is ``official``.

    Fields the dict (preset or override) already sets to other values raise one ValueError that
    names them all: an explicit choice is never overridden silently. Other variants return
    ``data`` unchanged.
    """
    if data.get("variant") != "official":
        return data
    data = dict(data)
    conflicts = []
    for key, value in OFFICIAL.items():
        section, name = key.split(".")
        node = data.get(section, {})
        if not isinstance(node, dict):
            continue  # from_dict reports the bad section
        if name in node and not (node[name] == value and type(node[name]) is type(value)):
            spelled = {None: "null", False: "false", True: "true"}.get(value, value)
            conflicts.append((f"{key}={node[name]!r}", f"{key}={spelled}"))
        data[section] = {**node, name: value}
    if conflicts:
        raise ValueError(
            f"variant='official' conflicts with {', '.join(c for c, _ in conflicts)}; drop these "
            f"settings, override them ({' '.join(o for _, o in conflicts)}) or use variant=paper"
        )
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None):
    """Load an ``ExperimentConfig`` from a YAML preset plus dotted overrides."""
    data = read_yaml(Path(path)) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    return from_dict(ExperimentConfig, data)
