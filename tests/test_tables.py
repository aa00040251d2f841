"""The printed summary lines and tables of a sweep (cjepa.tables)."""

import math

from cjepa.tables import control_table, learning_bar


def row(future, copy=0.01, linear=0.012, **extra):
    return {
        "final/future_present": future,
        "final/copy_last_present": copy,
        "final/linear_present": linear,
        **extra,
    }


def test_learning_bar_counts_trials_meeting_both_conditions():
    rows = [row(0.004), row(0.0051), row(0.005, linear=0.004), row(0.001, error="boom")]
    line = learning_bar(rows)
    # 0.004 meets it; 0.0051 is above half of copy-last; 0.005 is not below constant velocity;
    # the failed trial is not counted
    assert "1/3 trials meet it" in line
    assert "0.400-0.510" in line


def test_learning_bar_is_empty_without_dynamics_metrics():
    assert learning_bar([{"final/future_visible": 0.1}]) == ""


def test_control_table_leaves_out_references_without_a_value():
    values = {
        "vqa/majority/counterfactual/per_question": 0.25,
        "control/true_slots/vqa/counterfactual/per_question": 0.5,
        "control/copy_last/vqa/counterfactual/per_question": math.nan,
    }
    text = control_table(["vqa/counterfactual/per_question"], values, digits=3)
    assert "majority answer 0.250" in text and "reader on true slots 0.500" in text
    assert "copy-last" not in text
