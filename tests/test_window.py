"""Large events: the window centred on the charge, the truncation recorded, the import placing it alike."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cohep.core.errors import ConfigError
from cohep.datasets.importer import ImportSettings, _Transform, charge_centre
from cohep.lartpc.generator import FluxConfig
from cohep.lartpc.simulate import SimulationConfig, EventSimulator, default_config, simulate


def _events(cfg: SimulationConfig, n: int, seed: int = 3, label=None):
    sim = EventSimulator(cfg, seed=seed)
    return [sim.simulate(i, i % 3 if label is None else label) for i in range(n)]


def test_charge_window_puts_the_charge_centre_at_the_image_centre():
    cfg = replace(default_config("dune_fd"), window_centre="charge")
    h, w = cfg.image_height, cfg.image_width
    contained, off = 0, []
    for ev in _events(cfg, 12):
        rows, col = charge_centre(np.clip(ev.image.astype(np.float32), 0, None))
        dev = abs(rows[-1] - h / 2) + abs(col - w / 2)
        off.append(dev)
        assert 0.0 <= ev.truth["window_truncation"] <= 1.0
        if ev.truth["window_truncation"] < 0.1:  # all of it in the window: its centre is the canvas's
            contained += 1
            assert dev <= 4, dev
    # a cut event's centre moves (the part left out is not in the median), and a crop clipped at the
    # canvas's edge (twice the window) moves it further
    assert contained >= 3 and np.median(off) <= 12, off


def test_truncation_is_small_for_small_events_and_grows_with_energy():
    base = replace(default_config("microboone"), window_centre="charge")
    low = _events(replace(base, flux=FluxConfig(kind="monochromatic", mean_gev=0.4, min_gev=0.2)), 12, label=0)
    high = _events(replace(base, flux=FluxConfig(kind="monochromatic", mean_gev=15.0, min_gev=0.2, max_gev=20.0)),
                   12, label=1)
    t_low = np.median([ev.truth["window_truncation"] for ev in low])
    t_high = np.median([ev.truth["window_truncation"] for ev in high])
    assert t_low < 0.05 and t_high > 0.2 and t_high > t_low + 0.15


def test_a_coarser_pitch_cuts_less_of_large_events():
    """The other way to fit a large event: two wires per pixel (9.4-9.6 mm, near-square pixels
    keep the ticks in step) cuts a smaller share of DUNE-flux events than one wire per pixel."""
    cfg = replace(default_config("dune_fd"), window_centre="charge")
    coarse = replace(cfg, detector=replace(cfg.detector, wires_per_pixel=2))
    assert coarse.detector.pixel_size_mm[0] == pytest.approx(2 * cfg.detector.pixel_size_mm[0])
    fine = np.median([ev.truth["window_truncation"] for ev in _events(cfg, 40, seed=8)])
    wide = np.median([ev.truth["window_truncation"] for ev in _events(coarse, 40, seed=8)])
    assert wide < fine - 0.08  # measured: 0.31 -> 0.15


def test_file_records_the_truncation_and_the_vertex_pixel(tmp_path):
    from cohep.datasets.events import EventFile

    cfg = replace(default_config("dune_fd"), window_centre="charge")
    out = simulate(6, tmp_path / "w.h5", seed=2, workers=1, config=cfg, progress=False)
    with EventFile(out) as f:
        t = f.truth
    assert {"window_truncation", "vertex_row", "vertex_col"} <= set(t)
    assert np.all((t["window_truncation"] >= 0) & (t["window_truncation"] <= 1))
    assert "window_truncation" not in default_config("dune_fd").truth_fields
    with pytest.raises(ConfigError, match="window_centre"):
        SimulationConfig.from_dict({"window_centre": "centroid"})


def test_import_centroid_places_the_charge_centre_at_the_window_centre():
    img = np.zeros((3, 120, 150), np.float32)
    img[:, 20:40, 95:125] = 5.0  # a blob off centre: centre at row 30, column 110
    out = _Transform(ImportSettings(size=(64, 64), vertex="centroid"), img.shape)(img, "test")
    rows, col = charge_centre(out)
    assert out.sum() == pytest.approx(img.sum(), rel=1e-5)  # the blob fits: charge conserved
    assert all(abs(r - 32) <= 1 for r in rows) and abs(col - 32) <= 1


def test_import_centroid_matches_the_simulators_charge_window():
    """A charge-centred cohep event brought through the import's centroid window of the same size
    keeps its charge centre near where it was and all its charge, when it is contained: the two place
    the same point at the same pixel, up to the simulator's whole-pixel crop and the import's
    sub-pixel resampling (which spreads charge and so moves the significant-pixel median a few pixels)."""
    cfg = replace(default_config("microboone"), window_centre="charge", flux=FluxConfig(kind="bnb"))
    h, w = cfg.image_height, cfg.image_width
    transform = _Transform(ImportSettings(size=(h, w), vertex="centroid"), cfg.image_shape)
    checked = 0
    for ev in _events(cfg, 10, seed=5):
        if ev.truth["window_truncation"] > 0.1:
            continue
        img = np.clip(ev.image.astype(np.float32), 0, None)
        r0, c0 = charge_centre(img)
        if abs(r0[-1] - h / 2) > 4.0 or abs(c0 - w / 2) > 4.0:
            continue  # the simulator's crop was clipped at its canvas's edge (an event far upstream)
        again = transform(img, "event")
        r1, c1 = charge_centre(again)
        assert abs(r1[-1] - h / 2) <= 4.0 and abs(c1 - w / 2) <= 4.0
        assert again.sum() == pytest.approx(img.sum(), rel=0.05)
        checked += 1
    assert checked >= 3
