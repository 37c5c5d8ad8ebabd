"""The competition's cross-evaluation heat map: every member's vote-set accuracy of every entry.

Rows are members, columns entries; a member's own entries are hatched (it scores them locally but
never records that score: the leaderboard counts only the other members' judgement).
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cohep.outputs.plots import save_figure


def cross_evaluation(matrix: np.ndarray, entries: Sequence[str], owners: Sequence[int], out_png: str | Path) -> Path:
    n_members, n_entries = matrix.shape
    fig, ax = plt.subplots(figsize=(2.5 + 1.2 * n_entries, 1.8 + 0.5 * n_members))
    shown = np.ma.masked_invalid(matrix)
    image = ax.imshow(shown, cmap="viridis", aspect="auto")
    for i in range(n_members):
        for k in range(n_entries):
            if np.isnan(matrix[i, k]):
                ax.text(k, i, "n/a", ha="center", va="center", fontsize=8, color="grey")
                continue
            own = owners[k] == i
            ax.text(k, i, f"{matrix[i, k]:.3f}" + (" (own)" if own else ""), ha="center", va="center",
                    fontsize=8, color="white" if matrix[i, k] < np.nanmean(matrix) else "black")
            if own:
                ax.add_patch(plt.Rectangle((k - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="white", lw=0))
    ax.set_xticks(range(n_entries), list(entries), rotation=20, ha="right")
    ax.set_yticks(range(n_members), [f"member {i}" for i in range(n_members)])
    ax.set_title("vote-set accuracy: member (row) x entry (column)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return save_figure(fig, out_png)
