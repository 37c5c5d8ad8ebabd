"""The figures a classifier paper shows: ROC curves, score distributions, cut scans, binned efficiencies.

Drawn from what :mod:`cohep.central.selection` computed (passed in as its objects: this floor does
not import it) or from per-event arrays. Score distributions are ``hist`` histograms drawn with
``mplhep.histplot``; the binned efficiencies and purities are drawn as points at the bin centres
with their binomial intervals as asymmetric error bars and the bin widths as horizontal bars.
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cohep.outputs.plots import save_figure  # noqa: E402

FORMATS = ("png", "pdf", "svg")
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:grey")


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def roc_figure(selections: Sequence, out: str | Path, *, title: str = "") -> Path:
    """One-vs-rest ROC curve of every class (``.fpr``, ``.tpr``, ``.auc``, ``.name``) with its AUC."""
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    for i, s in enumerate(selections):
        if len(s.fpr):
            ax.plot(s.fpr, s.tpr, color=_colour(i), label=f"{s.name} vs rest (AUC {s.auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="random")
    ax.set_xlabel("background efficiency (false-positive rate)")
    ax.set_ylabel("signal efficiency (true-positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "one-vs-rest ROC", fontsize=10)
    return _finish(fig, out)


def score_figure(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], out: str | Path, *,
                 log: bool = False, bins: int = 40, title: str = "") -> Path:
    """One panel per class score: its distribution for each true class, normalised to unit area."""
    import hist
    import mplhep

    n = len(class_names)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for c, ax in enumerate(axes[0]):
        for t, name in enumerate(class_names):
            h = hist.Hist(hist.axis.Regular(bins, 0.0, 1.0 + 1e-9, name="score"))
            h.fill(np.asarray(scores)[np.asarray(labels) == t, c])
            if h.sum() > 0:
                mplhep.histplot(h, ax=ax, density=True, color=_colour(t), label=f"true {name} ({int(h.sum())})")
        ax.set_xlabel(f"{class_names[c]} score")
        ax.set_ylabel("events (normalised)")
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _finish(fig, out, title)


def efficiency_purity_figure(selections: Sequence, out: str | Path, *, title: str = "") -> Path:
    """Per class: efficiency, purity and their product against the score cut, the best cut marked."""
    n = len(selections)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for s, ax in zip(selections, axes[0]):
        if len(s.cuts):
            ax.plot(s.cuts, s.efficiency, color="tab:blue", label="efficiency")
            ax.plot(s.cuts, s.purity, color="tab:orange", label="purity")
            ax.plot(s.cuts, s.efficiency * s.purity, color="black", ls="--", label="efficiency x purity")
            e, p = s.best_efficiency, s.best_purity
            ax.axvline(s.best_cut, color="grey", lw=1)
            ax.errorbar([s.best_cut], [e[0]], yerr=[[e[0] - e[1]], [e[2] - e[0]]], fmt="o", color="tab:blue", ms=4)
            ax.errorbar([s.best_cut], [p[0]], yerr=[[p[0] - p[1]], [p[2] - p[0]]], fmt="s", color="tab:orange", ms=4)
            ax.text(s.best_cut, 0.03, f" cut {s.best_cut:.3f}\n eff {e[0]:.3f}, pur {p[0]:.3f}", fontsize=7)
        ax.set_xlabel(f"{s.name} score cut")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left")
        ax.set_title(f"{s.name} selection", fontsize=10)
    return _finish(fig, out, title)


def binned_figure(b, out: str | Path, *, title: str = "") -> Path:
    """Efficiency and purity of each class against one truth variable (a ``Binned``), with intervals."""
    edges = np.asarray(b.edges, dtype=float)
    centres, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    for ax, what in zip(axes, ("efficiency", "purity")):
        for c, name in enumerate(b.class_names):
            p, lo, hi = getattr(b, what)(c)
            ok = np.isfinite(p)
            if ok.any():
                ax.errorbar(centres[ok], p[ok], xerr=half[ok], yerr=[p[ok] - lo[ok], hi[ok] - p[ok]], fmt="o",
                            ms=3, capsize=2, color=_colour(c), label=name)
        ax.set_xlabel(b.variable + (f" [{b.unit}]" if b.unit else ""))
        ax.set_ylabel(f"{what} ({b.method} 95 % interval)")
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, out, title)


def _finish(fig, out, title: str | None = None) -> Path:
    """Title, layout and the atomic save every figure of this module ends with."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, formats=FORMATS)
