"""The paper's Figure 4 (central training) and a confusion-matrix figure for ``cohep evaluate``.

Figure 4, one row per model: accuracy per epoch (train and validation), loss per epoch, and the
validation confusion matrix of the best epoch normalised per true class, with class names on the axes
and the fraction (and count) in every cell.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cohep.outputs.plots import save_figure


def _column(history: Sequence[Mapping], key: str) -> np.ndarray:
    return np.array([np.nan if h.get(key) is None else float(h[key]) for h in history], dtype=float)


def draw_confusion(ax, confusion, class_names: Sequence[str], *, title: str = "") -> None:
    """Row-normalised confusion matrix on ``ax``: fraction (bold) and count in each cell."""
    cm = np.asarray(confusion, dtype=float)
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(totals > 0, cm / np.where(totals > 0, totals, 1), np.nan)
    ax.imshow(np.nan_to_num(frac), cmap="Blues", vmin=0.0, vmax=1.0)
    n = len(class_names)
    for i in range(n):
        for j in range(n):
            value = frac[i, j]
            text = "n/a" if np.isnan(value) else f"{value:.2f}\n({int(cm[i, j])})"
            colour = "white" if (not np.isnan(value) and value > 0.55) else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(n), class_names, rotation=30, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)


def figure4(
    history: Sequence[Mapping],
    confusion,
    class_names: Sequence[str],
    out_png: str | Path,
    *,
    title: str = "",
    best_epoch: int | None = None,
) -> Path:
    """Accuracy and loss curves (train / validation per epoch) and the normalised confusion matrix."""
    epochs = _column(history, "epoch")
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.2), gridspec_kw={"width_ratios": [1.1, 1.1, 1.0]})
    for ax, metric, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "loss (cross-entropy)")):
        ax.plot(epochs, _column(history, f"train_{metric}"), "o-", color="tab:blue", label="train")
        running = _column(history, f"train_{metric}_running")
        if np.isfinite(running).any():
            ax.plot(epochs, running, ".:", color="tab:blue", alpha=0.5, label="train (running, during epoch)")
        ax.plot(epochs, _column(history, f"val_{metric}"), "s-", color="tab:orange", label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if len(epochs) and np.nanmax(epochs) <= 20:
            ax.set_xticks(epochs)
    axes[0].set_title("accuracy per epoch", fontsize=10)
    axes[1].set_title("loss per epoch", fontsize=10)
    cm_title = "validation confusion matrix" + (f" (epoch {best_epoch})" if best_epoch is not None else "")
    draw_confusion(axes[2], confusion, class_names, title=cm_title + "\nnormalised per true class")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_png)


def confusion_figure(confusion, class_names: Sequence[str], out_png: str | Path, *, title: str = "") -> Path:
    """A single normalised confusion matrix (``cohep evaluate --plot``)."""
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * n, 1.6 + 1.2 * n))
    draw_confusion(ax, confusion, class_names, title=title)
    fig.tight_layout()
    return save_figure(fig, out_png, formats=("png", "pdf", "svg"))
