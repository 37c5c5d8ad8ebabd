"""Figures people expect: round curves with the vote grid, training curves, event displays."""
import matplotlib

matplotlib.use("Agg")


def save_figure(fig, path, *, dpi: int = 120, formats: tuple[str, ...] | None = ("png",)):
    """Write ``fig`` to ``path`` whole or not at all (a temporary name, then rename), then close it.

    The format is the suffix's when ``formats`` lists it (None: any suffix matplotlib knows), else PNG.
    """
    from pathlib import Path

    import matplotlib.pyplot as plt

    from cohep.core.files import atomic_path

    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    fmt = suffix if suffix and (formats is None or suffix in formats) else "png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        plt.close(fig)
    return path
