"""Plots logged with runs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def loss_curve_png(history: list[dict[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Train loss and validation future MSE (with the copy-last baseline) against steps."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["train/loss"] for r in history], label="train loss")
    val = [r for r in history if "val/future_visible" in r]
    if val:
        vs = [r["step"] for r in val]
        ax.plot(vs, [r["val/future_visible"] for r in val], "o-", label="val future MSE")
        ax.plot(vs, [r["val/copy_last"] for r in val], "k--", label="copy-last baseline")
        ax.plot(vs, [r["val/history"] for r in val], "s-", label="val hidden-history MSE")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
