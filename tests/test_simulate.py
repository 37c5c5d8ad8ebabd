"""The simulation driver and its CLI: determinism, class balance, configuration, errors."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import cohep
from cohep.cli import main
from cohep.datasets.events import EventFile
from cohep.core.errors import CohepError, ConfigError
from cohep.lartpc import DetectorConfig, SimulationConfig, load_config
from cohep.lartpc import simulate
from cohep.lartpc.simulate import TRUTH_FIELDS, assign_labels


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same 40 events simulated with 1 and with 2 workers."""
    d = tmp_path_factory.mktemp("sim")
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        a = simulate(40, d / "w1.h5", seed=123, workers=1, progress=False)
        b = simulate(40, d / "w2.h5", seed=123, workers=2, progress=False)
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    return a, b


def test_identical_for_any_worker_count(pair):
    a, b = pair
    with EventFile(a) as fa, EventFile(b) as fb:
        assert np.array_equal(fa.labels, fb.labels)
        assert np.array_equal(fa.images(np.arange(40)), fb.images(np.arange(40)))
        for name in TRUTH_FIELDS:
            assert np.array_equal(fa.truth[name], fb.truth[name]), name
    # the files themselves are byte-identical (no timestamps, same write order)
    assert hashlib.sha256(Path(a).read_bytes()).digest() == hashlib.sha256(Path(b).read_bytes()).digest()


def test_file_content_and_attributes(pair):
    with EventFile(pair[0]) as f:
        assert f.n_events == 40
        assert f.image_shape == (3, 200, 200)
        assert f.class_names == ("NC", "numu_CC", "nue_CC")
        assert f.view_names == ("U", "V", "Y")
        assert f._file["images"].dtype == np.float16
        assert f._file["images"].chunks == (1, 3, 200, 200)
        assert f.attrs["generator"] == "cohep.lartpc" and f.attrs["version"] == cohep.__version__
        assert f.attrs["created"] == "2023-11-14T22:13:20+00:00"  # SOURCE_DATE_EPOCH=1700000000
        assert f.attrs["detector"] == "microboone" and f.attrs["image_unit"] == "ke-"
        assert f.attrs["wire_pitch_mm"] == [3.0, 3.0, 3.0]
        # a pixel is 2 wires (6 mm) by 8 ticks of 0.5 us at the drift velocity (about 1.6 mm/us)
        assert f.attrs["pixel_pitch_mm"][0] == 6.0
        assert f.attrs["pixel_pitch_mm"][1] == pytest.approx(8 * 0.5 * f.attrs["drift_velocity_mm_us"])
        assert f.attrs["seed"] == 123
        assert f.attrs["tick_us"] == 0.5
        assert '"flux"' in f.attrs["config"]
        assert set(TRUTH_FIELDS) <= set(f.truth)
        assert f.truth_units()["nu_energy"] == "MeV"
        imgs = f.images(np.arange(40))
        assert np.all(imgs >= 0)
        # zero suppressed: most pixels are empty, every event has activity near the vertex
        assert (imgs > 0).mean() < 0.2
        assert np.all(imgs.reshape(40, -1).max(axis=1) > 5.0)  # ke-: more than a MIP-pixel fraction
        vertex = imgs[:, :, 50:70, 90:110].sum(axis=(1, 2, 3))
        assert (vertex > 0).mean() > 0.9
        t = f.truth
        cc = t["is_cc"].astype(bool)
        assert np.array_equal(cc, f.labels != 0)
        assert np.all(t["lepton_pdg"][f.labels == 1] == 13) and np.all(t["lepton_pdg"][f.labels == 2] == 11)
        assert np.all(t["visible_energy"] >= 10.0)
        assert 1000.0 < t["nu_energy"].mean() < 4000.0


def test_class_balance():
    labels = assign_labels(40, (1 / 3, 1 / 3, 1 / 3), seed=1)
    assert sorted(np.bincount(labels).tolist()) == [13, 13, 14]
    assert not np.array_equal(labels, np.sort(labels))  # shuffled
    labels = assign_labels(1000, (0.5, 0.25, 0.25), seed=2)
    assert np.bincount(labels).tolist() == [500, 250, 250]


def test_class_balance_in_file(pair):
    with EventFile(pair[0]) as f:
        assert sorted(np.bincount(f.labels, minlength=3).tolist()) == [13, 13, 14]


def test_protodune_and_config_file(tmp_path):
    cfg_file = tmp_path / "sim.toml"
    cfg_file.write_text(
        'class_fractions = [0.5, 0.5, 0.0]\nimage_height = 64\nimage_width = 48\n'
        '[flux]\nkind = "monochromatic"\nmean_gev = 1.5\n'
        '[detector]\npreset = "protodune"\nnoise_enc = [500, 500, 600]\n'
    )
    cfg = load_config(cfg_file)
    assert cfg.detector.name == "protodune"
    assert cfg.detector.wire_pitch_mm == (4.669, 4.669, 4.792)
    assert cfg.detector.noise_enc == (500.0, 500.0, 600.0)
    out = simulate(6, tmp_path / "pdsp.h5", seed=3, config=cfg, progress=False)
    with EventFile(out) as f:
        assert f.image_shape == (3, 64, 48)
        assert sorted(f.labels.tolist()) == [0, 0, 0, 1, 1, 1]
        assert np.allclose(f.truth["nu_energy"], 1500.0)
        assert f.attrs["detector"] == "protodune"


@pytest.mark.parametrize(
    "text, field",
    [
        ("[detector]\npitch = 3\n", "detector.pitch"),
        ("image_height = 'big'\n", "image_height"),
        ("[flux]\nkind = 'powerlaw'\n", "flux.kind"),
        ("class_fractions = [0.5, 0.6, 0.1]\n", "class_fractions"),
        ("[detector]\npreset = 'icarus'\n", "detector.preset"),
        ("colour = 1\n", "colour"),
        ("image_height = [\n", "invalid TOML"),
    ],
)
def test_config_errors_name_the_field(tmp_path, text, field):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(p)


def test_library_rejects_bad_arguments(tmp_path):
    with pytest.raises(CohepError):
        simulate(0, tmp_path / "x.h5")
    with pytest.raises(CohepError):
        simulate(5, tmp_path / "x.h5", seed=-1)
    with pytest.raises(ConfigError):
        DetectorConfig.preset("icarus")
    with pytest.raises(ConfigError):
        SimulationConfig(image_height=3)
    assert not (tmp_path / "x.h5").exists()


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err, "expected an error message"
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--events", "0"], "--events"),
        (["--events", "-3"], "--events"),
        (["--events", "5", "--detector", "icarus"], "icarus"),
        (["--events", "5", "--workers", "-1"], "--workers"),
        (["--events", "5", "--seed", "-2"], "--seed"),
    ],
)
def test_cli_bad_options(tmp_path, capsys, args, words):
    out = tmp_path / "ev.h5"
    assert main(["simulate", *args, "--out", str(out)]) == 2
    assert words in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" / "ev.h5"  # a directory cannot be made under a file
    assert main(["simulate", "--events", "3", "--out", str(out)]) == 2
    assert "cannot write" in _one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    # the output is an existing directory
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["simulate", "--events", "3", "--out", str(folder), "--workers", "2"]) == 2
    assert "directory" in _one_line_error(capsys)
    assert list(folder.iterdir()) == []


def test_cli_bad_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detector]\nwire_pitch_mm = 'wide'\n")
    out = tmp_path / "ev.h5"
    assert main(["simulate", "--events", "3", "--out", str(out), "--config", str(cfg)]) == 2
    assert "detector.wire_pitch_mm" in _one_line_error(capsys)
    assert not out.exists()


def test_cli_simulate_and_show(tmp_path, capsys):
    out = tmp_path / "ev.h5"
    assert main(["simulate", "--events", "5", "--out", str(out), "--seed", "9", "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 5 events to {out}"
    with EventFile(out) as f:
        assert f.n_events == 5 and f.attrs["seed"] == 9 and f.image_shape == (3, 200, 200)
    png = tmp_path / "ev.png"
    assert main(["show", str(out), "--event", "2", "--out", str(png)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    # a bad event index is a one-line error and writes nothing
    capsys.readouterr()
    assert main(["show", str(out), "--event", "7", "--out", str(tmp_path / "no.png")]) == 2
    assert "out of range" in _one_line_error(capsys)
    assert not (tmp_path / "no.png").exists()


def test_stored_config_reproduces_the_events(pair, tmp_path):
    """The JSON config in the file attributes rebuilds the same configuration and events."""
    import json

    with EventFile(pair[0]) as f:
        cfg = SimulationConfig.from_dict(json.loads(f.attrs["config"]))
        seed = f.attrs["seed"]
        first = f.images(np.arange(3))
        labels = f.labels[:3]
    assert cfg == SimulationConfig()
    from cohep.lartpc.simulate import EventSimulator

    sim = EventSimulator(cfg, seed)
    for i in range(3):
        ev = sim.simulate(i, int(labels[i]))
        np.testing.assert_array_equal(ev.image.astype(np.float32), first[i])


def test_plane_gain_and_dead_planes_change_only_what_they_should():
    """A 30 % low gain scales every stored charge by 0.7 (float16 rounding aside); a dead plane is
    empty and the other planes keep their exact bytes; defaults leave the image untouched."""
    from cohep.lartpc.simulate import EventSimulator

    base = SimulationConfig()
    ref = EventSimulator(base, 11).simulate(3, 2).image
    low = EventSimulator(SimulationConfig.from_dict({"detector": {"plane_gain": [0.7, 0.7, 0.7]}}), 11).simulate(3, 2).image
    dead = EventSimulator(SimulationConfig.from_dict({"detector": {"dead_planes": [1]}}), 11).simulate(3, 2).image
    assert ref.astype(np.float32).sum() > 0
    assert np.allclose(low.astype(np.float32), 0.7 * ref.astype(np.float32), rtol=2e-3, atol=1e-2)
    assert (low > 0).sum() == (ref > 0).sum()  # same pixels above threshold: the gain is after zero suppression
    assert not dead[1].any() and np.array_equal(dead[0], ref[0]) and np.array_equal(dead[2], ref[2])
    assert base.detector.read_out(ref) is ref


def test_quality_flux_and_noise_simulations_change_what_they_name():
    """experiments/quality_flux_sim.toml keeps the detector and lowers the neutrino energies (0.8 GeV
    beam); quality_noise_sim.toml keeps the physics of each event, triples the pixel noise, and the
    3-sigma zero suppression then keeps fewer pixels."""
    from cohep.lartpc.simulate import EventSimulator

    exp = Path(__file__).resolve().parents[1] / "experiments"
    base = SimulationConfig()
    flux, noise = load_config(exp / "quality_flux_sim.toml"), load_config(exp / "quality_noise_sim.toml")
    assert flux.detector == base.detector and flux.class_fractions == base.class_fractions
    assert np.allclose(noise.detector.pixel_noise(), 3 * base.detector.pixel_noise()) and noise.flux == base.flux

    def events(cfg):
        sim = EventSimulator(cfg, 5)
        return [sim.simulate(i, i % 3) for i in range(6)]

    ref, low, noisy = events(base), events(flux), events(noise)
    e_ref, e_low = (np.mean([ev.truth["nu_energy"] for ev in evs]) for evs in (ref, low))
    assert e_ref > 2000 and e_low < 1400  # MeV: 2.5 +- 0.5 and 0.8 +- 0.3 GeV
    for a, b in zip(ref, noisy):
        assert a.truth["nu_energy"] == b.truth["nu_energy"] and a.truth["visible_energy"] == b.truth["visible_energy"]
    assert sum((b.image > 0).sum() for b in noisy) < sum((a.image > 0).sum() for a in ref)


@pytest.mark.parametrize("detector, field", [
    ({"plane_gain": [1.0, 0.0, 1.0]}, "detector.plane_gain"),
    ({"plane_gain": [1.0, 1.0]}, "detector.plane_gain"),
    ({"dead_planes": [3]}, "detector.dead_planes"),
    ({"dead_planes": [1, 1]}, "detector.dead_planes"),
])
def test_bad_gain_or_dead_planes_name_the_field(detector, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SimulationConfig.from_dict({"detector": detector})
