"""The paper's Figure 2: per-learner scores per round above the grid of votes.

Top: each learner's test score after the round (blue, dotted) and its vote-set score of the round's
proposal (red, dotted), with the means over learners as solid lines. Bottom: one row per learner,
green for approve, red for reject, the proposer marked P; the last row is the contract's outcome.
The baselines (individual, centralised) have no proposers or votes: their records name every
learner its own proposer, so :func:`round_figure` draws just each learner's own test curve.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from cohep.protocol.records import RoundRecord
from cohep.outputs.plots import save_figure

_GRID_COLOURS = ListedColormap(["#ffffff", "#2ca02c", "#d62728", "#c7c7c7"])  # none, approve, reject, proposer


def judged_by_others(records: list[RoundRecord]) -> bool:
    """Some learner voted on another's proposal (colearn); a baseline's learners only judge themselves."""
    return any(r.round > 0 and not r.is_proposer for r in records)


def round_figure(records: list[RoundRecord], out_png: str | Path, *, title: str = "", metric: str = "accuracy") -> Path:
    if not judged_by_others(records):
        return learner_curves(records, out_png, title=title)
    rounds = sorted({r.round for r in records})
    learners = sorted({r.learner for r in records})
    n_r, n_l = len(rounds), len(learners)
    test = np.full((n_l, n_r), np.nan)
    vote = np.full((n_l, n_r), np.nan)
    grid = np.zeros((n_l + 1, n_r), dtype=int)
    proposer_at: dict[int, int] = {}
    for rec in records:
        j = rounds.index(rec.round)
        i = learners.index(rec.learner)
        test[i, j] = rec.test_accuracy
        vote[i, j] = rec.vote_score
        if rec.round == 0:
            continue
        grid[i, j] = 3 if rec.is_proposer else (1 if rec.vote == "approve" else 2 if rec.vote == "reject" else 0)
        grid[n_l, j] = 1 if rec.accepted else (3 if rec.void else 2)
        if rec.is_proposer:
            proposer_at[j] = i

    fig, (ax, axg) = plt.subplots(
        2, 1, figsize=(max(6.0, 0.45 * n_r + 3), 6.5), sharex=True,
        gridspec_kw={"height_ratios": [2.2, 0.35 * (n_l + 1) + 0.3]},
    )
    x = np.array(rounds)
    for i in range(n_l):
        ax.plot(x, test[i], ":", color="tab:blue", alpha=0.6, lw=1)
        ax.plot(x, vote[i], ":", color="tab:red", alpha=0.6, lw=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ax.plot(x, np.nanmean(test, 0), "-", color="tab:blue", lw=2, label="test accuracy (mean)")
        if np.isfinite(vote).any():
            ax.plot(x, np.nanmean(np.where(np.isfinite(vote), vote, np.nan), 0), "-", color="tab:red", lw=2,
                    label=f"vote score of proposal, {metric} (mean)")
    ax.plot([], [], ":", color="grey", label="individual learners")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)

    axg.imshow(grid, aspect="auto", cmap=_GRID_COLOURS, vmin=0, vmax=3, interpolation="nearest",
               extent=(x[0] - 0.5, x[-1] + 0.5, n_l + 0.5, -0.5))
    for j, i in proposer_at.items():
        axg.text(x[j], i, "P", ha="center", va="center", fontsize=7, fontweight="bold")
    axg.set_yticks(list(range(n_l)) + [n_l])
    axg.set_yticklabels([f"learner {lrn}" for lrn in learners] + ["outcome"], fontsize=8)
    axg.axhline(n_l - 0.5, color="black", lw=1)
    axg.set_xlabel("round")
    axg.set_xticks(x)
    axg.tick_params(axis="x", labelsize=7)
    axg.legend(handles=[Patch(color="#2ca02c", label="approve / accepted"), Patch(color="#d62728", label="reject / rejected"),
                        Patch(color="#c7c7c7", label="proposer (P) / void")],
               loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, out_png)


def learner_curves(records: list[RoundRecord], out_png: str | Path, *, title: str = "") -> Path:
    """A baseline's figure: each learner's own test accuracy per round, and their mean."""
    rounds = sorted({r.round for r in records})
    learners = sorted({r.learner for r in records})
    test = np.full((len(learners), len(rounds)), np.nan)
    for rec in records:
        test[learners.index(rec.learner), rounds.index(rec.round)] = rec.test_accuracy
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rounds) + 3), 4.5))
    x = np.array(rounds)
    colours = plt.get_cmap("tab10")
    for i, lrn in enumerate(learners):
        label = ("pooled data" if len(learners) == 1 else f"learner {lrn} (alone)") if i < 10 else None
        ax.plot(x, test[i], "o-", color=colours(i % 10), ms=3, lw=1.2, label=label)
    if len(learners) > 1:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(x, np.nanmean(test, 0), "-", color="black", lw=2, label="mean")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(x)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, out_png)
