"""Figures people expect: round curves with the vote grid, training curves, event displays."""
import matplotlib

matplotlib.use("Agg")


def save_png(fig, out_png, *, dpi: int = 120):
    """Write ``fig`` to ``out_png`` whole or not at all (a temporary name, then rename), and close it."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    from cohep.core.files import atomic_path

    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(out_png)
