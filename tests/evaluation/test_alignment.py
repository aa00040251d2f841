"""Slot-object alignment on synthetic masks: a known permutation is recovered exactly, a missing
object is reported (never silently matched), the IoU threshold, quality records, object order,
and the typed stage option."""

from __future__ import annotations

import numpy as np
import pytest

from cjepa.evaluation import stage as st
from cjepa.evaluation.aligned_slots import AlignmentOptions, aligned_window, check_alignment
from cjepa.evaluation.alignment import align, filled, iou_matrix, match_frame, object_slots


def scene(t: int = 5, size: int = 12, k: int = 3) -> np.ndarray:
    """(T, size, size) instance masks: object j is a 3x3 square moving right one pixel a frame."""
    masks = np.zeros((t, size, size), np.uint8)
    for f in range(t):
        for j in range(k):
            masks[f, 4 * j : 4 * j + 3, f : f + 3] = j + 1
    return masks


def slots_for(masks: np.ndarray, perm: np.ndarray, background: int) -> np.ndarray:
    """Slot labels that copy the instance masks under ``perm`` (object j -> slot perm[j])."""
    out = np.full(masks.shape, background, np.int64)
    for j, slot in enumerate(perm):
        out[masks == j + 1] = slot
    return out


def test_a_known_permutation_is_recovered_exactly_at_every_frame():
    masks = scene()
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(5)  # 5 slots: 3 objects, one background, one empty
        perm, bg = order[:3], order[3]
        a = align(slots_for(masks, perm, bg), masks, n_slots=5, n_objects=3, min_iou=0.5)
        np.testing.assert_array_equal(a.slot_of, np.tile(perm, (len(masks), 1)))
        assert a.mean_iou == 1.0 and a.complete == 1.0 and a.n_missing == 0
        assert a.n_visible == 3 * len(masks)


def test_iou_matrix_matches_a_direct_count():
    masks = scene(t=2)
    pred = np.random.default_rng(1).integers(0, 4, masks.shape)
    iou = iou_matrix(pred, masks, 4, 3)
    for t in range(2):
        for n in range(4):
            for k in range(3):
                a, b = pred[t] == n, masks[t] == k + 1
                assert iou[t, n, k] == pytest.approx((a & b).sum() / (a | b).sum())


def test_a_missing_object_is_reported_not_matched():
    masks = scene()
    labels = slots_for(masks, np.array([0, 1, 1]), background=3)  # slot 1 covers objects 1, 2
    a = align(labels, masks, n_slots=4, n_objects=3, min_iou=0.4)
    # slot 1 takes one of the two (IoU 1/2 each); the other has no slot, at every frame
    assert (a.slot_of[:, 0] == 0).all()
    assert ((a.slot_of[:, 1] == 1) ^ (a.slot_of[:, 2] == 1)).all()
    assert ((a.slot_of[:, 1:] == -1).sum(1) == 1).all()
    assert a.n_missing == len(masks) and a.complete == 0.0
    assert a.mean_iou == pytest.approx((1.0 + 0.5) / 2)
    assert a.record()["n_missing"] == len(masks)
    above = align(labels, masks, n_slots=4, n_objects=3, min_iou=0.6)  # 1/2 < 0.6: none
    assert (above.slot_of[:, 1:] == -1).all() and above.mean_iou == 1.0


def test_threshold_is_inclusive_and_an_absent_object_is_neither_matched_nor_missing():
    iou = np.array([[0.5, 0.0], [0.0, 0.49]])  # (N = 2 slots, K = 2 objects)
    np.testing.assert_array_equal(match_frame(iou, 0.5), [0, -1])
    np.testing.assert_array_equal(match_frame(iou, 0.49), [0, 1])
    with pytest.raises(ValueError, match="min_iou must be in"):
        match_frame(iou, 0.0)
    masks = scene(t=4)
    masks[2:][masks[2:] == 3] = 0  # object 2 gone from frame 2 on
    a = align(slots_for(scene(t=4), np.array([2, 0, 1]), 3), masks, 4, 3, min_iou=0.5)
    assert not a.visible[2:, 2].any() and (a.slot_of[2:, 2] == -1).all()
    assert a.n_missing == 0 and a.complete == 1.0  # not visible: not missing


def test_the_threshold_does_not_let_a_weak_pair_steal_a_better_assignment():
    iou = np.array([[0.6, 0.55], [0.55, 0.1]])  # best total: (0,1) + (1,0) = 1.1 > 0.7
    np.testing.assert_array_equal(match_frame(iou, 0.5), [1, 0])
    np.testing.assert_array_equal(match_frame(iou, 0.58), [0, -1])  # 0.55s no longer count


def test_learned_slots_gather_into_object_order_with_gaps_filled():
    slot_of = np.array([[-1, 2], [1, -1], [-1, -1], [0, 2]])  # (T = 4, K = 2)
    np.testing.assert_array_equal(filled(slot_of), [[1, 2], [1, 2], [1, 2], [0, 2]])
    slots = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)  # (T, N = 3, D = 2)
    a = align(np.zeros((4, 2, 2), int), np.zeros((4, 2, 2), int), 3, 3, 0.5)  # nothing seen
    assert (a.slot_of == -1).all() and np.isnan(a.mean_iou) and a.complete == 1.0
    a.slot_of = np.concatenate([slot_of, np.full((4, 1), -1)], axis=1)
    out = object_slots(slots, a)  # (T, K = 3, D)
    np.testing.assert_array_equal(out[:, 0], slots[[0, 1, 2, 3], [1, 1, 1, 0]])
    np.testing.assert_array_equal(out[:, 1], slots[:, 2])
    assert (out[:, 2] == 0).all()  # never matched


def test_bad_masks_name_the_shape_or_label_range():
    with pytest.raises(ValueError, match="must be the same"):
        iou_matrix(np.zeros((2, 4, 4), int), np.zeros((2, 4, 5), int), 3, 2)
    with pytest.raises(ValueError, match=r"instance mask labels must lie in \[0, 2\]"):
        iou_matrix(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 3), 3, 2)
    with pytest.raises(ValueError, match=r"slot labels must lie in \[0, 3\)"):
        iou_matrix(np.full((1, 2, 2), 3), np.zeros((1, 2, 2), int), 3, 2)


class _Counted:
    """The counters ``aligned_window`` touches, on a fixed (T, K) alignment."""

    def __init__(self, slot_of):
        self.dropped = {"queries": 0, "pairs": 0}
        self._slot_of = np.asarray(slot_of)

    def slot_of(self, _id):
        return self._slot_of

    def drop(self, what, n=1):
        self.dropped[what] += n


def test_a_causal_window_reads_objects_through_their_slots_and_counts_drops():
    sa = _Counted([[4, -1, 0, 2, -1], [4, 3, 1, 2, 0]])  # (T = 2, K = 5): object -> slot
    w = {"start": 0, "k": 0, "cand": [1, 2, 3, 4], "labels": [True, False, True, False],
         "proximity": [-0.1, -0.2, -0.3, -0.4], "frames": [0]}  # fmt: skip
    got = aligned_window(sa, w, "e", [0, 1])
    # each object at its first frame with a slot: 1 -> 3 (frame 1), 2 -> 0, 3 -> 2; object 4's
    # slot 0 at frame 1 is object 2's already: dropped
    assert got["slot"] == 4 and got["cand"] == [1, 2, 3] and got["cand_slots"] == [3, 0, 2]
    assert got["labels"] == [True, False, True] and got["proximity"] == [-0.1, -0.2, -0.3]
    assert sa.dropped == {"queries": 0, "pairs": 1}
    got = aligned_window(sa, w, "e", [0])  # frame 0 only: 1 and 4 have no slot
    assert got["cand"] == [2, 3] and sa.dropped == {"queries": 0, "pairs": 3}
    sa._slot_of[:, 0] = -1
    assert aligned_window(sa, w, "e", [0, 1]) is None  # the hidden object has no slot
    assert sa.dropped == {"queries": 1, "pairs": 7}


@pytest.mark.parametrize("stage", ["counterfactual", "causal"])
@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("min_iou", 0.0, "min_iou must be in (0, 1], got 0.0"),
        ("min_complete", 1.5, "min_complete must be in [0, 1], got 1.5"),
        ("min_mean_iou", -0.1, "min_mean_iou must be in [0, 1], got -0.1"),
        ("masks", "pixels", "masks must be one of ['attention', 'decoder'], got 'pixels'"),
        ("pixels", "some", "pixels must be one of ['foreground', 'all'], got 'some'"),
        ("min_iou", "high", "min_iou must be a number"),
    ],
)
def test_a_bad_alignment_option_names_the_stage_field(stage, field, value, says):
    with pytest.raises(ValueError) as err:
        st.check_stages({stage: {"alignment": {field: value}}})
    assert str(err.value).startswith(f"stages.{stage}.alignment.{says}"), str(err.value)


def test_an_unknown_alignment_key_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['iou'\] in stages\.causal\.align"):
        st.check_stages({"causal": {"alignment": {"iou": 0.5}}})
    check_alignment("stages.x.alignment", AlignmentOptions(min_iou=1.0, masks="decoder"))


def test_a_nested_stage_option_is_set_with_a_dotted_name():
    given = {"causal": {"stride": 2, "alignment": {"masks": "decoder"}}}
    got = st.set_options(given, ["causal.alignment.min_iou=0.3", "causal.stride=3"])
    assert got == {"causal": {"stride": 3, "alignment": {"masks": "decoder", "min_iou": 0.3}}}
    assert given["causal"]["alignment"] == {"masks": "decoder"}  # the caller's is untouched
    opts = st.check_stages(got)["causal"]
    assert opts.alignment == AlignmentOptions(min_iou=0.3, masks="decoder")
    with pytest.raises(ValueError, match="stride is 2, not a mapping"):
        st.set_options(given, ["causal.stride.x=1"])


def test_slot_labels_come_from_the_encoders_masks_and_need_a_video_slot_encoder(tmp_path):
    import torch

    from cjepa.encoders import EncoderConfig, OracleEncoder, load_encoder
    from cjepa.encoders.base import save_encoder
    from cjepa.encoders.metrics import upsample_masks
    from cjepa.encoders.train import build_video_model
    from cjepa.evaluation.alignment import slot_labels
    from cjepa.worlds.collide import make_episode

    cfg = EncoderConfig(image_size=32, n_slots=4, slot_dim=16, cnn_channels=8, cnn_downsample=2,
                        decoder_channels=8)  # fmt: skip
    save_encoder(tmp_path / "e.pt", build_video_model(cfg, seed=0), cfg)
    enc = load_encoder(str(tmp_path / "e.pt"))
    frames = make_episode(0, seed=0, frames=5, size=32, questions=False).frames
    _, attn = enc.encode_video(frames[None], masks=True)
    want = upsample_masks(torch.from_numpy(attn[0]), (16, 16), (32, 32)).numpy()
    np.testing.assert_array_equal(slot_labels(enc, frames, "attention"), want)
    dec = slot_labels(enc, frames, "decoder", time_chunk=2)
    assert dec.shape == (5, 32, 32) and dec.min() >= 0 and dec.max() < 4
    with pytest.raises(ValueError, match="needs a video slot encoder with slot masks"):
        slot_labels(OracleEncoder("collide"), frames, "attention")


def test_foreground_iou_ignores_the_share_of_background_a_slot_holds():
    masks = scene(t=1)  # 3 objects of 9 px in a 12 x 12 frame
    labels = np.zeros(masks.shape, np.int64)  # slot 0: object 0 plus all the background
    labels[masks == 2], labels[masks == 3] = 1, 2
    plain = align(labels, masks, 3, 3, 0.5, foreground=False)
    assert plain.slot_of.tolist() == [[-1, 1, 2]]  # 9 / (144 - 18) < 0.5: no match
    fg = align(labels, masks, 3, 3, 0.5)
    assert fg.slot_of.tolist() == [[0, 1, 2]] and fg.mean_iou == 1.0
    assert iou_matrix(labels, masks, 3, 3)[0, 0, 0] == pytest.approx(9 / 126)
