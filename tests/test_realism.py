"""Simulator realism: each effect changes what it should and nothing else; presets; old bytes kept."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from cohep.datasets.events import EventFile
from cohep.core.errors import ConfigError
from cohep.lartpc import DETECTORS, DetectorConfig, Readout, SimulationConfig, default_config
from cohep.lartpc import cosmics
from cohep.lartpc import realism
from cohep.lartpc import simulate
from cohep.lartpc import constants as C
from cohep.lartpc.simulate import EventSimulator

#: sha256 of the images of events 0-5 (labels i % 3, seed 11): the presets of the paper keep their
#: bytes whatever realism fields exist.  First taken before the realism fields existed (commit
#: 0a9d0fc: 71217a53... and 0767166c...); re-taken for issue 28, whose DIS hadronisation draws the
#: charged multiplicity from AGKY (it was 10 % low on neutron targets; tests/test_generator_validation.py),
#: which changes the draws of every DIS event.
OLD_IMAGES = {
    "microboone": "dc0817705c0b0e6f773229936dd51750f2f38e1d604d3392a0d31d22c8b7a83a",
    "protodune": "c743004e69c39685b0cb3d8462892b86edc95607efc8426577f30ec3ffb9dea0",
}


def _images_digest(cfg: SimulationConfig) -> str:
    sim = EventSimulator(cfg, seed=11)
    h = hashlib.sha256()
    for i in range(6):
        h.update(sim.simulate(i, i % 3).image.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["microboone", "protodune"])
def test_existing_presets_keep_their_bytes(name):
    cfg = default_config(name)
    assert _images_digest(cfg) == OLD_IMAGES[name]
    # realism fields at their off values are not written into the file's config either
    stored = cfg.to_dict()
    assert "cosmic_flux_cm2_min" not in stored["detector"] and "window_centre" not in stored
    off = SimulationConfig.from_dict({"detector": {"preset": name, "cosmic_flux_cm2_min": 0.0, "adc_per_ke": 0.0},
                                      "vertex_row_shift": 0, "window_centre": "true"})
    assert off == cfg and off.to_dict() == stored


def _pair(detector: DetectorConfig, index: int = 4, label: int = 1, **sim):
    """The same event without and with an effect (the baseline through the same code path)."""
    a = EventSimulator(SimulationConfig(detector=detector, **sim), seed=21).simulate(index, label)
    return a


def test_dead_channels_are_empty_and_change_nothing_else():
    base = DetectorConfig.protodune(adc_per_ke=1.0)  # one wire per pixel row; realism path, unit gain
    dead = replace(base, dead_channel_fraction=(0.3, 0.3, 0.3), channel_map_seed=5)
    found = 0
    for i in range(4):
        ref = _pair(base, i, i % 3)
        ev = _pair(dead, i, i % 3)
        for p in range(3):
            rows = realism.dead_wires(dead, p, realism.row_wires(ev.window, p)).any(axis=1)
            assert not ev.image[p, rows].any()
            np.testing.assert_array_equal(ev.image[p, ~rows], ref.image[p, ~rows])
            found += rows.sum()
    assert 0.2 < found / (4 * 3 * 200) < 0.4  # the configured share of wires
    # the channel map is fixed: the same wire is dead in every event
    wires = np.arange(10_000)
    np.testing.assert_array_equal(realism.dead_wires(dead, 0, wires), realism.dead_wires(dead, 0, wires))
    assert abs(realism.dead_wires(dead, 0, wires).mean() - 0.3) < 0.02


def test_two_wire_pixels_keep_the_share_of_their_live_wires():
    base = DetectorConfig.microboone(adc_per_ke=1.0)
    dead = replace(base, dead_channel_fraction=(0.0, 0.0, 0.5), channel_map_seed=3)
    ref, ev = _pair(base), _pair(dead)
    live = 1.0 - realism.dead_wires(dead, 2, realism.row_wires(ev.window, 2)).mean(axis=1)
    np.testing.assert_allclose(ev.image[2].astype(np.float32),
                               np.rint(ref.image[2].astype(np.float32) * live[:, None]), atol=1.0)
    assert np.array_equal(ev.image[:2], ref.image[:2])


def test_noisy_channels_add_hits_only_on_their_rows():
    base = DetectorConfig.protodune(adc_per_ke=1.0)
    noisy = replace(base, noisy_channel_fraction=(0.1, 0.1, 0.1), noisy_channel_factor=3.0, channel_map_seed=4)
    ref, ev = _pair(base), _pair(noisy)
    for p in range(3):
        rows = realism.noisy_wires(noisy, p, realism.row_wires(ev.window, p)).any(axis=1)
        assert rows.sum() > 5
        np.testing.assert_array_equal(ev.image[p, ~rows], ref.image[p, ~rows])
        # noise of 3 sigma over a 3-sigma threshold: P(Z > 1) = 16 % of a noisy row's pixels fire
        occ_noisy = (ev.image[p, rows] != 0).mean()
        assert 0.10 < occ_noisy < 0.25, occ_noisy


def test_cosmic_rate_matches_the_configured_flux():
    det = DetectorConfig.microboone(cosmic_flux_cm2_min=5.0)
    ro = Readout.from_config(det)
    win = ro.window(det.sample_vertex(np.random.default_rng(0)), 200, 200)
    area, t_span = cosmics.window_area_time(ro, win)
    # drift length x z span of 200 pixels of 2 x 3 mm; 200 x 8 ticks of 0.5 us
    assert area == pytest.approx(256.35 * 120.0)
    assert t_span == pytest.approx(200 * det.ticks_per_pixel_effective * 0.5e-6)
    mean = 5.0 / 60.0 * area * t_span
    assert cosmics.expected_count(ro, win) == pytest.approx(mean)
    rng = np.random.default_rng(1)
    n = 400
    counts = np.array([cosmics.overlay(rng, ro, win)[1] for _ in range(n)])
    assert abs(counts.mean() - mean) < 4 * math.sqrt(mean / n)
    assert abs(counts.var() - mean) < 0.35 * mean  # Poisson: variance = mean


def test_cosmic_tracks_are_downward_mips_with_cos2_zenith():
    det = DetectorConfig.microboone(cosmic_flux_cm2_min=50.0)
    ro = Readout.from_config(det)
    win = ro.window((128.0, 0.0, 500.0), 200, 200)
    deps, n = cosmics.overlay(np.random.default_rng(2), ro, win)
    assert n > 8 and np.all(deps[:, 5] == cosmics.COSMIC_TRACK)
    np.testing.assert_allclose(deps[:, 3] / deps[:, 4], C.MIP_DEDX)
    # zenith: intensity ~ cos^2 through a horizontal plane -> cos(theta) = U^(1/4), E[cos] = 4/5
    cos_z = []
    for k in range(12):
        deps, _ = cosmics.overlay(np.random.default_rng(10 + k), ro, win)
        step = np.diff(deps[:, :3], axis=0)
        same = np.abs(np.linalg.norm(step, axis=1) - cosmics.STEP_CM) < 1e-6
        starts = np.flatnonzero(np.r_[True, ~same])  # first deposit of each muon
        ends = np.r_[starts[1:] - 1, len(deps) - 1]
        for s0, s1 in zip(starts, ends):
            if s1 > s0:
                u = (deps[s1, :3] - deps[s0, :3]) / np.linalg.norm(deps[s1, :3] - deps[s0, :3])
                assert u[1] < 0  # downward
                cos_z.append(-u[1])
    cos_z = np.asarray(cos_z)
    assert len(cos_z) > 200
    assert abs(cos_z.mean() - 0.8) < 4 * cos_z.std() / math.sqrt(len(cos_z))


def test_cosmics_only_add_charge():
    base = DetectorConfig.microboone(adc_per_ke=1.0)
    cos = replace(base, cosmic_flux_cm2_min=20.0)
    seen = 0
    for i in range(3):
        ref, ev = _pair(base, i, 0), _pair(cos, i, 0)
        assert ev.truth["n_cosmics"] >= 0
        assert np.all(ev.charge >= ref.charge - 1e-3 * np.abs(ref.charge).max())
        np.testing.assert_allclose(ev.transport.deposits, ref.transport.deposits)  # neutrino untouched
        seen += ev.truth["n_cosmics"]
    assert seen > 0


def test_vertex_shift_distribution_matches_the_config():
    cfg = SimulationConfig(vertex_row_shift=10, vertex_col_shift=4)
    sim = EventSimulator(cfg, seed=3)
    rng = np.random.default_rng(0)
    draws = np.array([sim._shift(rng) for _ in range(8400)])
    for k, r in enumerate((10, 4)):
        counts = np.bincount(draws[:, k] + r, minlength=2 * r + 1)
        assert len(counts) == 2 * r + 1 and counts.min() > 0
        expected = len(draws) / (2 * r + 1)
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 2 * r + 1 + 5 * math.sqrt(2 * (2 * r + 1))  # dof + 5 sigma
    for i in range(6):  # the true vertex sits at the configured pixel plus the event's shift
        ev = sim.simulate(i, i % 3)
        dr = ev.truth["vertex_row"] - 60
        dc = ev.truth["vertex_col"] - 100
        assert -10 <= dr <= 10 and -4 <= dc <= 4
    assert sum(1 for i in range(6) if sim.simulate(i, 0).truth["vertex_row"] != 60) >= 3


def test_reconstructed_window_centre_finds_the_vertex():
    sim = EventSimulator(SimulationConfig(window_centre="reconstructed"), seed=5)
    off = []
    for i in range(60):
        ev = sim.simulate(i, 1 + i % 2)  # CC events: a lepton from the vertex
        assert ev.image.shape == (3, 200, 200) and ev.charge.shape == (3, 200, 200)
        off.append(abs(ev.truth["vertex_row"] - 60) + abs(ev.truth["vertex_col"] - 100))
    # a simple estimate: half the events within a few pixels, a tail where something lies upstream.
    # (The test used 12 events and asked 2/3 within 15 pixels; over 60 events that was 48 % before
    # issue 28 and is 57 % after, so the 12-event version passed on its first 12 draws.)
    assert np.mean(np.asarray(off) <= 15) >= 0.5 and np.median(off) <= 15, off


def test_bipolar_induction_and_adc():
    q = np.zeros((3, 4, 6), np.float32)
    q[:, 1, 2] = 10.0
    b = realism.bipolar(q)
    assert b[0, 1, 1] == 10.0 and b[0, 1, 3] == -10.0 and b[0].sum() == 0.0
    np.testing.assert_array_equal(b[2], q[2])  # collection plane unchanged
    base = DetectorConfig.protodune(adc_per_ke=1.0)
    ref, ev = _pair(base), _pair(replace(base, bipolar_induction=True))
    assert (ev.image[:2] < 0).any() and not (ev.image[2] < 0).any()
    assert abs(float(ev.image[:2].astype(np.float32).sum())) < 0.2 * float(np.abs(ev.image[:2].astype(np.float32)).sum())
    adc = _pair(replace(base, adc_per_ke=5.0))
    np.testing.assert_allclose(adc.image.astype(np.float32), np.rint(ref.image.astype(np.float32) * 5.0),
                               rtol=2e-3, atol=3.0)


def test_new_presets_and_their_files(tmp_path):
    assert {"microboone_surface", "protodune_sp", "dune_fd"} <= set(DETECTORS)
    mb = DetectorConfig.preset("microboone_surface")
    assert mb.drift_field_kv_cm == 0.273 and mb.wire_pitch_mm == (3.0, 3.0, 3.0) and mb.tick_us == 0.5
    assert mb.cosmic_flux_cm2_min == 1.0 and mb.adc_per_ke == pytest.approx(4.59, abs=0.01)
    pd = DetectorConfig.preset("protodune_sp")
    assert pd.wire_pitch_mm == (4.669, 4.669, 4.792) and pd.drift_field_kv_cm == 0.5 and pd.cosmic_flux_cm2_min > 0
    fd = DetectorConfig.preset("dune_fd")
    assert fd.wire_pitch_mm == (4.669, 4.669, 4.790) and fd.cosmic_flux_cm2_min == 0 and fd.active_x_cm == (0.0, 350.0)
    cfg = default_config("microboone_surface")
    out = simulate(16, tmp_path / "mb.h5", seed=2, config=cfg, progress=False)
    with EventFile(out) as f:
        assert f.attrs["image_unit"] == "ADC" and f.attrs["detector"] == "microboone_surface"
        assert f.attrs["electrons_per_unit"] == pytest.approx(1000.0 / mb.adc_per_ke)
        assert "n_cosmics" in f.truth
        back = SimulationConfig.from_dict(json.loads(f.attrs["config"]))
        assert back == cfg
        first = f.images(np.arange(2))
    sim = EventSimulator(back, 2)
    with EventFile(out) as f:
        labels = f.labels[:2]
    for i in range(2):
        np.testing.assert_array_equal(sim.simulate(i, int(labels[i])).image.astype(np.float32), first[i])


@pytest.mark.parametrize("detector, field", [
    ({"dead_channel_fraction": [2.0, 0.0, 0.0]}, "detector.dead_channel_fraction"),
    ({"noisy_channel_fraction": [0.1, 0.1]}, "detector.noisy_channel_fraction"),
    ({"cosmic_flux_cm2_min": -1.0}, "detector.cosmic_flux_cm2_min"),
    ({"adc_per_ke": -2.0}, "detector.adc_per_ke"),
])
def test_bad_realism_fields_name_the_field(detector, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SimulationConfig.from_dict({"detector": detector})


def test_bad_window_settings_name_the_field():
    with pytest.raises(ConfigError, match="window_centre"):
        SimulationConfig.from_dict({"window_centre": "middle"})
    with pytest.raises(ConfigError, match="vertex_row_shift"):
        SimulationConfig.from_dict({"vertex_row_shift": -1})


#: sha256 of the dune_fd images of events 0-5 (labels i % 3, seed 11; the window on the true vertex,
#: then centred on the charge), taken with the array code before the compiled bipolar, channel-map
#: table and signed float16 kernels (issue 28 item 5): those kernels must not move a bit.
DUNE_FD_IMAGES = {
    "true": "60071a2dfdc8fc47d69a2ca3aacfe22d97ac3804f935bafbc28e07b139dd6b5b",
    "charge": "d40b07b8440375d5b4c9a68a561b6fb33799120b086b916a1612495afe597089",
}


@pytest.mark.parametrize("centre", ["true", "charge"])
def test_dune_fd_images_keep_their_bytes(centre):
    assert _images_digest(replace(default_config("dune_fd"), window_centre=centre)) == DUNE_FD_IMAGES[centre]


def test_compiled_bipolar_equals_the_array_form():
    rng = np.random.default_rng(5)
    q = (rng.random((3, 17, 23)) * 4e4).astype(np.float32)
    q[q < 2e4] = 0.0
    fast = realism.bipolar(q)
    slow = realism.bipolar(q.astype(np.float64)).astype(np.float32)  # float64 takes the array form
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast.view(np.uint32), slow.view(np.uint32))
    np.testing.assert_array_equal(realism.bipolar(q[:, :, :1]), np.concatenate([np.zeros((2, 17, 1), np.float32),
                                                                                 q[2:, :, :1]]))


def test_signed_float16_store_equals_clip_astype():
    """Bipolar images are stored as clip(+-65504).astype(float16) bit for bit: -0.0 (a dead row times a
    negative lobe), subnormals, ties and values past the float16 range included."""
    from cohep.lartpc.imaging import store

    rng = np.random.default_rng(2)
    x = (rng.standard_normal(60_000) * 10.0 ** rng.uniform(-9, 6, 60_000)).astype(np.float32)
    x[rng.random(60_000) < 0.5] = 0.0
    x[:8] = [-0.0, 1e9, -1e9, 65519.0, -65520.0, 2.0**-25, -(2.0**-25), 3 * 2.0**-25]
    x = x.reshape(3, 100, 200)
    want = np.clip(x, -65504.0, 65504.0).astype(np.float16)
    np.testing.assert_array_equal(store(x, "float16").view(np.uint16), want.view(np.uint16))


def test_channel_map_table_equals_the_hash_of_each_wire():
    """The per-process table of the channel map gives each wire the number its hash gives, wherever
    the windows asked for first (it grows both ways, negative wire numbers included)."""
    realism._WIRE_MAPS.clear()
    for first in (5000, 100, 9000, -300):
        wires = first + np.arange(40)[:, None] * 2 + np.arange(2)[None, :]
        np.testing.assert_array_equal(realism._wire_uniform(3, 1, wires, 1), realism._uniform(3, 1, wires, 1))
    assert len(realism._WIRE_MAPS) == 1
