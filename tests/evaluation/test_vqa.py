"""VQA: the CLEVRER scorer on hand-built answers, the reader on an easy question set, the stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cjepa.config import ExperimentConfig
from cjepa.evaluation.stage import StageContext
from cjepa.evaluation.vqa import (
    Reader,
    build_vocab,
    make_items,
    predict,
    score_answers,
    train_reader,
    vqa_stage,
)
from cjepa.train import build_predictor


def mc(kind: str, truth: list[bool]) -> dict:
    choices = [{"text": f"option {i}", "correct": t} for i, t in enumerate(truth)]
    return {"type": kind, "question": "which?", "choices": choices}


def desc(answer: str) -> dict:
    return {"type": "descriptive", "family": "count", "question": "how many?", "answer": answer}


def test_score_answers_known_figures():
    questions = [
        desc("2"),
        desc("red"),
        desc("3"),
        mc("counterfactual", [True, False, False]),
        mc("counterfactual", [True, True]),
        mc("predictive", [False]),
    ]
    predictions = ["2", "blue", "3", [True, False, True], [True, True], [False]]
    s = score_answers(questions, predictions)
    assert s["descriptive"] == pytest.approx(
        {"per_option": 2 / 3, "per_question": 2 / 3, "n_questions": 3, "n_options": 3}
    )
    # counterfactual: 4 of 5 options right; question 1 has a wrong option, question 2 is right
    assert s["counterfactual"]["per_option"] == pytest.approx(4 / 5)
    assert s["counterfactual"]["per_question"] == pytest.approx(1 / 2)
    assert s["predictive"]["per_question"] == 1.0
    assert "explanatory" not in s
    assert s["all"]["per_question"] == pytest.approx(4 / 6)
    assert s["all"]["per_option"] == pytest.approx((2 + 4 + 1) / 9)


def test_score_answers_rejects_misshapen_predictions():
    with pytest.raises(ValueError, match="2 bools"):
        score_answers([mc("explanatory", [True, False])], [[True]])
    with pytest.raises(ValueError, match="1 questions but 2"):
        score_answers([desc("1")], ["1", "2"])


def easy_set(n_episodes: int, seed: int):
    """Episodes whose slot 0 carries a sign; "is it positive?" (descriptive) and an option
    "the sign is positive" (multiple choice) must be read off the slots."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, (n_episodes,), generator=g)
    video = torch.randn(n_episodes, 3, 2, 8, generator=g) * 0.1
    video[:, :, 0, 0] += sign[:, None].float() * 2 - 1
    qs = []
    for e, s in enumerate(sign.tolist()):
        qs.append(
            (
                e,
                {
                    "type": "descriptive",
                    "question": "Is it positive?",
                    "answer": "yes" if s else "no",
                },
            )
        )
        qs.append((e, mc("predictive", [bool(s)]) | {"question": "Which holds?"}))
    return (video, torch.arange(3), torch.zeros(3, dtype=torch.bool)), qs


@pytest.mark.parametrize(
    ("memory", "text"), [("frames", "words"), ("objects", "words"), ("objects", "bag")]
)
def test_reader_learns_easy_questions(memory: str, text: str):
    opts = {"steps": 150, "episodes_per_batch": 16, "lr": 3e-3}
    train_in, train_q = easy_set(96, seed=0)
    val_in, val_q = easy_set(64, seed=1)
    vocab = build_vocab([q for _, q in train_q])
    names = ["no", "yes"]
    items = make_items(train_q, vocab, {a: i for i, a in enumerate(names)})
    val_items = make_items(val_q, vocab, {a: i for i, a in enumerate(names)})
    torch.manual_seed(0)
    reader = Reader(
        slot_dim=8,
        n_frames=3,
        n_words=len(vocab),
        n_answers=2,
        max_words=16,
        width=32,
        depth=1,
        video_depth=1,
        heads=2,
        memory=memory,
        n_video_frames=3,
        text=text,
    )
    train_reader(reader, train_in, items, opts, seed=0)
    questions = [q for _, q in val_q]
    scores = score_answers(questions, predict(reader, val_in, val_items, questions, names))
    # chance (and the majority answer) is about 0.5 for both
    assert scores["descriptive"]["per_question"] > 0.9
    assert scores["predictive"]["per_question"] > 0.9


def test_vqa_stage_end_to_end(tmp_path, collide_setup):
    cfg, data = collide_setup(tmp_path)
    state = {"model": build_predictor(cfg).state_dict(), "history": [], "step": 0}
    ctx = StageContext(tmp_path, options={"steps": 5}, encoder="oracle:collide", episode_dir=data)
    out = vqa_stage(cfg, state, ctx)
    for kind in ("descriptive", "explanatory", "predictive", "counterfactual", "all"):
        assert 0.0 <= out[f"vqa/{kind}/per_question"] <= out[f"vqa/{kind}/per_option"] <= 1.0
    assert "vqa/majority/counterfactual/per_question" in out
    assert (tmp_path / "vqa_answers.json").is_file()
    assert np.isfinite(out["vqa/reader_loss"])
    again = vqa_stage(cfg, state, ctx)  # seeded: the same figures again
    assert {k: v for k, v in again.items() if k != "vqa/seconds"} == {
        k: v for k, v in out.items() if k != "vqa/seconds"
    }


@pytest.mark.parametrize("memory", ["frames", "objects"])
def test_reader_memory_shape(memory: str):
    reader = Reader(slot_dim=8, n_frames=5, n_words=10, n_answers=3, max_words=6, width=16,
                    depth=1, video_depth=0, heads=2, memory=memory, n_video_frames=4)  # fmt: skip
    video = torch.randn(2, 4, 3, 8)  # (E, F, N, D)
    memory_tokens = reader.encode_video(video, torch.arange(4), torch.zeros(4, dtype=torch.bool))
    assert memory_tokens.shape == (2, 4 * 3 if memory == "frames" else 3 + 3 * 2, 16)
    a, c = reader.read(memory_tokens, torch.tensor([0, 1, 1]), torch.randint(4, 10, (3, 6)))
    assert a.shape == (3, 3) and c.shape == (3,)


def test_vqa_stage_errors(tmp_path, collide_setup):
    cfg, data = collide_setup(tmp_path, questions=False)
    state = {"model": build_predictor(cfg).state_dict()}
    with pytest.raises(ValueError, match=r"world_data\.collide\.options\.questions"):
        vqa_stage(cfg, state, StageContext(tmp_path, episode_dir=data))
    with pytest.raises(ValueError, match="unknown option"):
        vqa_stage(cfg, state, StageContext(tmp_path, options={"stepz": 1}, episode_dir=data))
    synthetic = ExperimentConfig()
    with pytest.raises(ValueError, match=r"data\.world=collide"):
        vqa_stage(synthetic, state, StageContext(tmp_path, episode_dir=data))
