import pytest
import torch

from cjepa.data.windows import WINDOW_PRESETS, SlotWindows


def episodes(lengths, n=3, d=2, a=2):
    slots = [
        torch.arange(length).float()[:, None, None].expand(length, n, d) + 1000 * e
        for e, length in enumerate(lengths)
    ]
    actions = [
        torch.arange(length).float()[:, None].expand(length, a) + 1000 * e
        for e, length in enumerate(lengths)
    ]
    return slots, actions


def test_frames_and_actions_at_frameskip():
    slots, actions = episodes([30])
    w = SlotWindows(slots, actions, history=3, n_future=1, frameskip=5)
    batch = w.get(torch.tensor([0, len(w) - 1]))
    assert batch["slots"][0, :, 0, 0].tolist() == [0, 5, 10, 15]
    # Step j carries the 5 raw actions between its frame and the next: frames 15..19 for j = 3.
    assert batch["actions"].shape == (2, 4, 10)
    assert batch["actions"][0, 3, ::2].tolist() == [15, 16, 17, 18, 19]
    last_start = batch["slots"][1, 0, 0, 0].item()
    assert last_start + 15 + 4 == 29  # the last window ends exactly at the last frame


def test_ragged_episodes_and_stride():
    slots, _ = episodes([10, 3, 7])
    w = SlotWindows(slots, history=2, n_future=2, frameskip=2, stride=2)  # span 7
    assert w.index.tolist() == [[0, 0], [0, 2], [2, 0]]  # episode 1 too short
    batch = w.get(torch.arange(len(w)))
    assert batch["slots"][:, :, 0, 0].tolist() == [
        [0, 2, 4, 6],
        [2, 4, 6, 8],
        [2000, 2002, 2004, 2006],
    ]


def test_windows_never_cross_episodes():
    slots, actions = episodes([12, 9, 15])
    w = SlotWindows(slots, actions, history=3, n_future=1, frameskip=2)
    batch = w.get(torch.arange(len(w)))
    episode_of = batch["slots"][..., 0, 0] // 1000
    assert (episode_of == episode_of[:, :1]).all()
    assert ((batch["actions"] // 1000) == episode_of[..., None]).all()


def test_paper_presets():
    assert WINDOW_PRESETS["pusht"] == {"history": 3, "n_future": 1, "frameskip": 5}
    assert WINDOW_PRESETS["clevrer"] == {"history": 6, "n_future": 10, "frameskip": 2}
    slots, _ = episodes([128])
    w = SlotWindows(slots, **WINDOW_PRESETS["clevrer"])
    assert len(w) == 128 - 30


def test_errors_name_the_problem():
    slots, actions = episodes([5])
    with pytest.raises(ValueError, match="need 9 frames"):
        SlotWindows(slots, history=3, n_future=2, frameskip=2)
    with pytest.raises(ValueError, match="actions episode lengths"):
        SlotWindows(slots, [actions[0][:4]], history=2, n_future=1)
    with pytest.raises(ValueError, match=r"\(E, L, N, D\)"):
        SlotWindows(torch.zeros(5, 3, 2), history=2, n_future=1)
