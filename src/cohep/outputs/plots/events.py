"""Event display: the three wire-plane views of one event side by side (the paper's Figure 3)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cohep.core.errors import CohepError, DataError
from cohep.datasets.events import _make_readable
from cohep.core.files import atomic_path

_MODE_NAMES = ("QE", "MEC", "RES", "DIS", "COH")


def _truth_title(index: int, label_name: str, truth: dict, units: dict) -> str:
    parts = [f"event {index}: {label_name.replace('_', ' ')}"]
    mode = truth.get("mode")
    if mode is not None and 0 <= int(mode) < len(_MODE_NAMES):
        parts[0] += f" ({_MODE_NAMES[int(mode)]})"
    line2 = []
    if "nu_energy" in truth:
        scale = 1e-3 if units.get("nu_energy", "MeV") == "MeV" else 1.0
        line2.append(f"E$_\\nu$ = {float(truth['nu_energy']) * scale:.2f} GeV")
    if "lepton_energy" in truth and int(truth.get("is_cc", 1)):
        scale = 1e-3 if units.get("lepton_energy", "MeV") == "MeV" else 1.0
        line2.append(f"E$_\\ell$ = {float(truth['lepton_energy']) * scale:.2f} GeV")
    counts = []
    for key, name in (("n_protons", "p"), ("n_pions", "$\\pi^\\pm$"), ("n_pi0", "$\\pi^0$"), ("n_neutrons", "n")):
        if key in truth:
            counts.append(f"{int(truth[key])} {name}")
    if counts:
        line2.append(", ".join(counts))
    if "visible_energy" in truth:
        line2.append(f"visible {float(truth['visible_energy']):.0f} MeV")
    return parts[0] + ("\n" + "   ".join(line2) if line2 else "")


def event_display(path: str | os.PathLike, index: int, out_png: str | os.PathLike, *, title: str | None = None) -> Path:
    """Draw event ``index`` of an event file as three views (wire vs drift time) with the truth in
    the title; written atomically to ``out_png``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    from cohep.datasets.events import EventFile

    with EventFile(path) as f:
        n = f.n_events
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise DataError(f"{path}: event {index!r} out of range (file holds {n} events, 0..{n - 1})")
        image = f.images(int(index))
        label = int(f.labels[index])
        names = f.class_names
        views = f.view_names
        truth = {k: v[index] for k, v in f.truth.items()}
        units = f.truth_units()
        unit = str(f.attrs.get("image_unit", "ke-"))
        pitch = f.attrs.get("pixel_pitch_mm")
    label_name = names[label] if label < len(names) else str(label)
    if title is None:
        title = _truth_title(int(index), label_name, truth, units)

    c = image.shape[0]
    positive = image[image > 0]
    vmax = float(np.percentile(positive, 99.0)) if positive.size else 1.0
    vmax = max(vmax, 1e-6)
    fig, axes = plt.subplots(1, c, figsize=(4.6 * c + 0.8, 5.4), squeeze=False, constrained_layout=True)
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    im = None
    for k in range(c):
        ax = axes[0, k]
        # rows = wires, columns = drift time: show wire on x, time on y
        im = ax.imshow(image[k].T, origin="lower", cmap="magma", norm=norm, interpolation="nearest", aspect="equal")
        ax.set_title(f"view {views[k] if k < len(views) else k}")
        ax.set_xlabel("wire (pixel)")
        if k == 0:
            ax.set_ylabel("drift time (pixel)")
    unit_label = {"ke-": "charge [ke$^-$]"}.get(unit, f"pixel value [{unit}]")
    cbar = fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.85, pad=0.01)
    cbar.set_label(unit_label)
    suffix = ""
    if pitch is not None and np.size(pitch) >= 1 and np.all(np.isfinite(np.atleast_1d(pitch))):
        p = np.atleast_1d(pitch)
        suffix = f"  [pixel {p[0]:.1f} x {p[-1]:.1f} mm]"
    fig.suptitle(title + suffix, fontsize=11)
    out = Path(out_png)
    if out.is_dir():
        plt.close(fig)
        raise CohepError(f"cannot write {out}: it is a directory")
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
            _make_readable(tmp)
    except OSError as exc:
        raise CohepError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out
