"""CLEVRER-style VQA on collide: a small ALOE-like reader over observed + rolled-out slots.

Protocol (SPEC section 8, adapted to collide's questions, ``cjepa.worlds.questions``):

1. Reader input per episode: the encoder's slots of the observed prefix (frames
   ``0, s, 2s, ... < observe``, s = ``observe_stride``) followed by the predictor's rollout from
   the window ending at ``observe - 1`` to the end of the video (``rollout_after``), i.e.
   (F, N, D) slot tokens. Every question type reads the same input, so events after ``observe``
   (predictive answers, late collisions that descriptive / explanatory / counterfactual answers
   may depend on) are seen only through the rollout. ``reader_input: encoder`` feeds the
   encoder's true slots at the same frames instead (the reader's ceiling; no predictor).
2. Reader (after ALOE, Ding et al. 2021): one transformer over [CLS] + question words
   (+ [SEP] + choice words for a multiple-choice option) + slot tokens; a slot token is
   Linear(LayerNorm(z)) + a learned embedding of its frame index + an observed/rolled-out flag;
   no slot-index code. CLS (plus, with ``pool``, a sum over slot tokens FiLM-ed by CLS, which
   can count) -> a class over the descriptive answers seen in training, or one
   True/False logit per (question, choice). Vocabulary and answers come from train questions
   (unknown words map to <unk>).
3. Trained on the train split's questions (``split_of(id, cfg.data.val_fraction)``) with a
   fixed budget (``steps``, ``episodes_per_batch``, ``width``, ``depth``, ``lr``, ...) so every
   predictor gets the same reader; scored on the val split. Per-option and per-question
   accuracy (CLEVRER: a multiple-choice question is right only if all its options are), plus
   ``majority_baseline`` on the same val questions (fitted on val itself, so for descriptive
   questions it is an optimistic constant baseline on small val splits).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from cjepa.config import ExperimentConfig
from cjepa.evaluation.rollouts import (
    EvalEpisode,
    horizon_steps,
    load_split,
    require_collide,
    rollout_after,
)
from cjepa.evaluation.stage import (
    StageContext,
    StageSpec,
    check_at_least,
    check_choice,
    model_from_state,
    parse_options,
)
from cjepa.evaluation.vqa_reader import (
    CLS,
    PAD,
    SEP,
    SPECIAL,
    UNK,
    Items,
    Reader,
    predict,
    train_reader,
)
from cjepa.metrics import MetricFamily, MetricInfo, Reference
from cjepa.predictor import SlotPredictor
from cjepa.worlds.questions import majority_baseline, observe_frames


#: Stage options and their defaults (``stages: {vqa: {...}}``).
@dataclass
class VQAOptions:
    """The reader's settings (``Reader`` doc) and what it reads."""

    steps: int = 300  # reader optimisation steps
    episodes_per_batch: int = 16  # a step reads all questions of this many train episodes
    width: int = 128
    depth: int = 2  # question blocks (self- + cross-attention)
    video_depth: int = 0  # self-attention layers over an episode's slot tokens
    heads: int = 4
    lr: float = 3e-3  # peak: linear warmup over 10% of steps, then cosine decay
    weight_decay: float = 0.01
    dropout: float = 0.0
    pool: bool = True  # question-conditioned (FiLM) sum over slot tokens added to CLS
    observe_stride: int = 4  # frames between observed slot tokens
    reader_input: str = "rollout"  # or "encoder": true slots at the same frames (ceiling)
    memory: str = "frames"  # or "objects": slot-track + slot-pair tokens (Reader doc)
    text: str = "words"  # or "bag": one question token (Reader doc)

    def __post_init__(self) -> None:
        for name in ("steps", "episodes_per_batch", "width", "depth", "heads", "observe_stride"):
            check_at_least(f"stages.vqa.{name}", getattr(self, name), 1)
        check_at_least("stages.vqa.video_depth", self.video_depth, 0)
        check_choice("stages.vqa.reader_input", self.reader_input, ("rollout", "encoder"))
        check_choice("stages.vqa.memory", self.memory, ("frames", "objects"))
        check_choice("stages.vqa.text", self.text, ("words", "bag"))


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def build_vocab(questions: list[dict]) -> dict[str, int]:
    """Word -> id over question and choice texts (specials first, then sorted words)."""
    seen = {w for q in questions for t in [q["question"], *_choice_texts(q)] for w in words(t)}
    return {w: i for i, w in enumerate([*SPECIAL, *sorted(seen)])}


def _choice_texts(q: dict) -> list[str]:
    return [c["text"] for c in q.get("choices", [])]


def make_items(
    questions: list[tuple[int, dict]], vocab: dict[str, int], answers: dict[str, int]
) -> Items:
    """Items from ``(episode index, question dict)`` pairs."""
    rows: list[tuple[int, list[int], int, bool, int]] = []
    for qi, (e, q) in enumerate(questions):
        head = [CLS, *(vocab.get(w, UNK) for w in words(q["question"]))]
        if q["type"] == "descriptive":
            rows.append((e, head, answers.get(q["answer"], -1), False, qi))
        for c in q.get("choices", []):
            tail = [SEP, *(vocab.get(w, UNK) for w in words(c["text"]))]
            rows.append((e, head + tail, int(c["correct"]), True, qi))
    if not rows:
        raise ValueError("no questions to read")
    width = max(len(r[1]) for r in rows)
    tokens = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r[1])] = torch.tensor(r[1])
    col = lambda j, dt: torch.tensor([r[j] for r in rows], dtype=dt)  # noqa: E731
    return Items(
        col(0, torch.long), tokens, col(2, torch.long), col(3, torch.bool), col(4, torch.long)
    )


def score_answers(questions: list[dict], predictions: list[Any]) -> dict[str, dict[str, float]]:
    """Accuracy per question type, CLEVRER's definitions.

    Args:
        questions: question dicts with answers (``answer`` or ``choices[i]["correct"]``).
        predictions: per question, an answer string (descriptive) or one bool per choice.

    Returns:
        ``{type: {"per_option", "per_question", "n_questions", "n_options"}}`` for each type
        present, plus ``"all"`` (every question counted once; descriptive questions count as
        one option). Descriptive: per_option == per_question == exact-match accuracy.
    """
    if len(questions) != len(predictions):
        raise ValueError(f"{len(questions)} questions but {len(predictions)} predictions")
    tally: dict[str, list[int]] = {}  # type -> [options right, options, questions right, n]
    for i, (q, p) in enumerate(zip(questions, predictions, strict=True)):
        if q["type"] == "descriptive":
            right = [p == q["answer"]]
        else:
            truth = [bool(c["correct"]) for c in q["choices"]]
            if not isinstance(p, list | tuple) or len(p) != len(truth):
                raise ValueError(f"predictions[{i}] must be {len(truth)} bools, got {p!r}")
            right = [bool(a) == t for a, t in zip(p, truth, strict=True)]
        for key in (q["type"], "all"):
            t = tally.setdefault(key, [0, 0, 0, 0])
            t[0], t[1], t[2], t[3] = (
                t[0] + sum(right),
                t[1] + len(right),
                t[2] + all(right),
                t[3] + 1,
            )
    return {
        k: {
            "per_option": t[0] / t[1],
            "per_question": t[2] / t[3],
            "n_questions": float(t[3]),
            "n_options": float(t[1]),
        }
        for k, t in tally.items()
    }


@torch.no_grad()
def reader_video(
    model: SlotPredictor | None, episodes: list[EvalEpisode], frameskip: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slot tokens for the reader (module doc, step 1).

    Returns:
        video (E, F, N, D), frames (F,) frame indices, rolled (F,) bool (True = predicted).
        With ``model`` None the rolled-out part is the encoder's true slots (the ceiling).
    """
    lengths = {ep.n_frames for ep in episodes}
    if len(lengths) != 1:
        raise ValueError(f"the VQA reader needs episodes of one length, got {sorted(lengths)}")
    t = lengths.pop()
    observe = observe_frames(t)
    steps = horizon_steps(observe, t, frameskip)
    seen = list(range(0, observe, stride))
    ahead = [observe - 1 + frameskip * j for j in range(1, steps + 1)]
    slots = torch.from_numpy(np.stack([ep.slots for ep in episodes]))  # (E, T, N, D)
    if model is None:
        future = slots[:, [min(f, t - 1) for f in ahead]]
    else:
        future = torch.cat(
            [
                rollout_after(model, slots[i : i + 256], observe - 1, steps, frameskip)
                for i in range(0, len(episodes), 256)
            ]
        ).cpu()
    video = torch.cat([slots[:, seen], future], dim=1)  # (E, F, N, D)
    frames = torch.tensor(seen + ahead)
    rolled = torch.tensor([False] * len(seen) + [True] * len(ahead))
    return video, frames, rolled


def vqa_stage(cfg: ExperimentConfig, state: dict[str, Any], ctx: StageContext) -> dict[str, float]:
    """Train the reader on train questions, score it on val questions (module doc).

    Writes ``vqa_answers.json`` (one row per val question) into ``ctx.out_dir``. Returns
    ``vqa/<type>/per_option``, ``vqa/<type>/per_question`` (type in TYPES or ``all``),
    ``vqa/majority/<type>/...``, ``vqa/n_questions``, ``vqa/reader_loss``, ``vqa/seconds``.
    """
    opts = parse_options("vqa", VQAOptions, ctx.options)
    require_collide(cfg, "vqa")
    t0 = time.perf_counter()
    split = _question_split(cfg, ctx.episode_dir)
    model = model_from_state(cfg, state, ctx.device) if opts.reader_input == "rollout" else None
    qs = {s: [(e, q) for e, ep in enumerate(eps) for q in ep.questions] for s, eps in split.items()}
    train_q = [q for _, q in qs["train"]]
    vocab = build_vocab(train_q)
    names = sorted({q["answer"] for q in train_q if q["type"] == "descriptive"})
    answers = {a: i for i, a in enumerate(names)}
    items = {s: make_items(qs[s], vocab, answers) for s in split}
    inputs = {
        s: reader_video(model, split[s], cfg.data.frameskip, opts.observe_stride) for s in split
    }
    reader = _reader(cfg, opts, inputs, items, len(vocab), len(names), ctx.seed)
    loss = train_reader(reader, inputs["train"], items["train"], asdict(opts), ctx.seed)
    val_q = [q for _, q in qs["val"]]
    preds = predict(reader, inputs["val"], items["val"], val_q, names)
    out: dict[str, float] = {"vqa/n_questions": float(len(val_q)), "vqa/reader_loss": loss}
    for kind, scores in score_answers(val_q, preds).items():
        out.update({f"vqa/{kind}/{m}": scores[m] for m in ("per_option", "per_question")})
    for kind, scores in majority_baseline(val_q).items():
        out.update({f"vqa/majority/{kind}/{m}": v for m, v in scores.items()})
    rows = [
        {
            "episode_id": split["val"][e].episode_id,
            "type": q["type"],
            "question": q["question"],
            "truth": q.get("answer", [c["correct"] for c in q.get("choices", [])]),
            "predicted": p,
        }
        for (e, q), p in zip(qs["val"], preds, strict=True)
    ]
    (ctx.out_dir / "vqa_answers.json").write_text(json.dumps(rows, indent=1))
    out["vqa/seconds"] = time.perf_counter() - t0
    return out


def _question_split(cfg: ExperimentConfig, episode_dir: str | None) -> dict[str, list]:
    """The train and val episodes, every one with its questions (else a ValueError)."""
    split = {s: load_split(cfg, episode_dir, s) for s in ("train", "val")}
    if any(ep.questions is None for eps in split.values() for ep in eps):
        raise ValueError(
            f"episodes in {episode_dir} have no questions; regenerate them with questions on "
            "(preset option world_data.collide.options.questions: true)"
        )
    return split


def _reader(
    cfg: ExperimentConfig,
    opts: VQAOptions,
    inputs: dict[str, tuple],
    items: dict[str, Any],
    n_words: int,
    n_answers: int,
    seed: int,
) -> Reader:
    """A fresh reader sized to the vocabulary, answers and observed frames, initialised from
    ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Reader(
            slot_dim=cfg.data.slot_dim,
            n_frames=1 + max(int(inputs[s][1].max()) for s in inputs),
            n_words=n_words,
            n_answers=n_answers,
            max_words=max(it.tokens.shape[1] for it in items.values()),
            width=opts.width,
            depth=opts.depth,
            video_depth=opts.video_depth,
            heads=opts.heads,
            dropout=opts.dropout,
            pool=opts.pool,
            memory=opts.memory,
            text=opts.text,
            n_video_frames=len(inputs["train"][1]),
        )


VQA_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual", "all")


def _accuracy(kind: str, unit: str) -> MetricInfo:
    return MetricInfo(
        "max",
        (
            Reference("majority answer", "floor", f"vqa/majority/{kind}/{unit}"),
            Reference("reader over copy-last", "floor", f"control/copy_last/vqa/{kind}/{unit}"),
            Reference("reader on true slots", "ceiling", f"control/true_slots/vqa/{kind}/{unit}"),
        ),
        f"VQA {kind} accuracy {unit.replace('_', ' ')}",
    )


VQA_METRICS = MetricFamily(
    "vqa",
    metrics={
        f"vqa/{k}/{u}": _accuracy(k, u) for k in VQA_TYPES for u in ("per_question", "per_option")
    },
    patterns=(("vqa/*/per_*", "max"), ("vqa/reader_loss", "min")),
    headline=(
        "vqa/descriptive/per_question",
        "vqa/explanatory/per_question",
        "vqa/predictive/per_question",
        "vqa/counterfactual/per_question",
        "vqa/majority/counterfactual/per_question",
    ),
    what="a question reader over the predictor's rollouts, by question type",
)
SPEC = StageSpec(vqa_stage, VQAOptions, (VQA_METRICS,))
