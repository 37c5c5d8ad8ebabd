"""``cohep import``: pixel maps, other HDF5 layouts, resampling, MIP calibration, the vertex window."""
from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from cohep.cli import main
from cohep.datasets.events import EventFile
from cohep.datasets.importer import (
    MIP_REFERENCE,
    VERTEX_ESTIMATE_COLUMN,
    VERTEX_ESTIMATE_ROWS,
    ImportSettings,
    estimate_vertex,
    import_events,
    mip_peak,
    rebin_matrix,
    track_like,
)
from cohep.core.errors import CohepError, ConfigError, DataError


def write_maps(folder: Path, maps: np.ndarray, labels, dtype="uint8", info_extra="2.5 1.1\n") -> Path:
    """CVN-style: ``<stem>.gz`` zlib-compressed little-endian maps, ``<stem>.info`` label on line 1."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (m, label) in enumerate(zip(maps, labels)):
        little_endian = np.ascontiguousarray(m, dtype=np.dtype(dtype).newbyteorder("<"))
        (folder / f"event{i:04d}.gz").write_bytes(zlib.compress(little_endian.tobytes()))
        (folder / f"event{i:04d}.info").write_text(f"{label}\n{info_extra}")
    return folder


def _target_events(n: int = 5, seed: int = 0) -> np.ndarray:
    """3 x 40 x 40 events in ke- at cohep's pitch, values 10 * m with m < 256 (exact in uint8 / 2.5 / 4)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 3, 40, 40), dtype=np.float32)
    for i in range(n):
        for v in range(3):
            slope = rng.uniform(-1, 1)
            for k in range(15):
                x[i, v, 12 + k, int(20 + slope * k)] = 10.0 * rng.integers(2, 25)
            x[i, v, rng.integers(0, 40, 4), rng.integers(0, 40, 4)] = 10.0
    return x


def test_pixel_maps_round_trip_through_a_finer_pitch_and_another_charge_unit(tmp_path):
    events = _target_events()
    # the source detector: 3 mm wires and 2 us pixels (half of cohep's 6 mm and 4 us in both axes),
    # charge in counts of 2.5 ke- per pixel: each cohep pixel is 2 x 2 source pixels of a quarter
    fine = np.repeat(np.repeat(events, 2, axis=2), 2, axis=3) / 4.0 / 2.5
    assert np.array_equal(fine, np.round(fine)) and fine.max() < 256
    labels = ["NC", "numu_CC", "nue_CC", "NC", "nue_CC"]
    folder = write_maps(tmp_path / "maps", fine.astype(np.uint8), labels)
    out = tmp_path / "imported.h5"
    summary = import_events(folder, out, ImportSettings(
        map_shape=(3, 80, 80), wire_pitch_mm=3.0, time_per_pixel_us=2.0, charge_factor=2.5,
        size=(40, 40), vertex="none"))
    with EventFile(out) as f:
        np.testing.assert_allclose(f.images(np.arange(5)), events, rtol=1e-5, atol=1e-4)
        assert [f.class_names[i] for i in f.labels] == labels
        assert f.attrs["image_unit"] == "ke-"
        np.testing.assert_allclose(f.attrs["pixel_pitch_mm"], [6.0, 4.0 * 1.5903])
    assert summary.scale_wire == pytest.approx(0.5) and summary.scale_time == pytest.approx(0.5)
    assert summary.class_counts == {"NC": 2, "numu_CC": 1, "nue_CC": 2}
    # the same maps stored time-major (planes x ticks x wires), gzip-framed, uint16: the options say so
    folder2 = tmp_path / "maps2"
    folder2.mkdir()
    for i, m in enumerate(np.swapaxes(fine, 2, 3).astype("<u2")):
        import gzip
        (folder2 / f"e{i}.cvn").write_bytes(gzip.compress(m.tobytes()))
        (folder2 / f"e{i}.txt").write_text(f"run 1\n{i % 3}\n")
    assert main(["import", str(folder2), "--out", str(tmp_path / "b.h5"), "--map-shape", "3,80,80",
                 "--axes", "VTW", "--map-dtype", "uint16", "--map-suffix", ".cvn", "--info-suffix", ".txt",
                 "--label-line", "1", "--wire-pitch-mm", "3", "--time-per-pixel-us", "2", "--charge-factor",
                 "2.5", "--size", "40,40", "--vertex", "none"]) == 0
    with EventFile(tmp_path / "b.h5") as f:
        np.testing.assert_allclose(f.images(np.arange(5)), events, rtol=1e-5, atol=1e-4)
        assert f.labels.tolist() == [0, 1, 2, 0, 1]


def test_rebinning_conserves_charge_for_any_pitch_ratio():
    for pitch_in, pitch_out in ((3.0, 6.0), (4.669, 6.0), (10.0, 6.0), (6.0, 6.0)):
        m = rebin_matrix(50, 200, pitch_in, pitch_out, 25.0, 100.0)
        np.testing.assert_allclose(m.sum(axis=0), 1.0, atol=1e-12)
        assert (m >= 0).all()
    np.testing.assert_array_equal(rebin_matrix(5, 5, 6.0, 6.0, 1.0, 3.0), np.eye(5, k=-2))  # a shift of 2


def test_other_hdf5_layouts_by_dataset_names_and_axes(tmp_path):
    events = _target_events(4)
    path = tmp_path / "theirs.h5"
    with h5py.File(path, "w") as f:
        f["data/pixels"] = np.transpose(events, (0, 2, 3, 1))  # N, wires, ticks, planes
        f["data/y"] = np.array([b"nue_CC", b"NC", b"NC", b"numu_CC"])
    out = tmp_path / "ours.h5"
    import_events(path, out, ImportSettings(images="data/pixels", labels="data/y", axes="NWTV"))
    with EventFile(out) as f:
        np.testing.assert_array_equal(f.images(np.arange(4)), events)
        assert f.labels.tolist() == [2, 0, 0, 1]
    # integer interaction codes through a label map; codes it does not name are errors
    with h5py.File(path, "a") as f:
        f["data/code"] = np.array([12, 0, 1, 13])
    import_events(path, out, ImportSettings(images="data/pixels", labels="data/code", axes="NWTV",
                                            label_map={"0": "numu_CC", "1": "numu_CC", "12": "nue_CC", "13": "NC"}))
    with EventFile(out) as f:
        assert f.labels.tolist() == [2, 1, 1, 0]
    with pytest.raises(DataError, match="label '13' is not in import.label_map"):
        import_events(path, tmp_path / "x.h5", ImportSettings(images="data/pixels", labels="data/code", axes="NWTV",
                                                               label_map={"0": "numu_CC", "1": "numu_CC", "12": "nue_CC"}))
    assert not (tmp_path / "x.h5").exists()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    from cohep.lartpc.simulate import simulate

    return simulate(160, tmp_path_factory.mktemp("sim") / "ev.h5", seed=5, workers=1, progress=False)


@pytest.mark.slow
def test_mip_calibration_recovers_a_known_factor(simulated, tmp_path):
    with EventFile(simulated) as f:
        ke = f.images(np.arange(f.n_events)).astype(np.float32)
        labels = f.labels
    # another unit: 4 counts per ke- (factor 0.25), at half the wire pitch (each pixel row split in two)
    counts = np.round(np.repeat(ke, 2, axis=2) / 2.0 * 4.0).astype(np.uint16)
    folder = write_maps(tmp_path / "maps", counts, labels, dtype="uint16")
    out = tmp_path / "calibrated.h5"
    summary = import_events(folder, out, ImportSettings(map_shape=(3, 400, 200), map_dtype="uint16",
                                                        wire_pitch_mm=3.0, calibrate="mip", vertex="none",
                                                        size=(200, 200)))
    # against cohep's reference peak: the sample's own peak differs a little from it
    assert summary.calibration_factor[0] == pytest.approx(0.25, rel=0.05)
    # against this sample's own peak (the method alone): the factor is recovered within 1 %
    own = [mip_peak(np.concatenate([track_like(e[p]) for e in ke])) for p in range(3)]
    expected = 0.25 * np.exp(np.mean(np.log(np.asarray(MIP_REFERENCE) / own)))
    assert summary.calibration_factor[0] == pytest.approx(expected, rel=0.01)
    with EventFile(out) as f:
        assert f.attrs["calibration"] == "mip"
        np.testing.assert_allclose(f.attrs["calibration_factor"], summary.calibration_factor)
        assert len(f.attrs["mip_peak_source"]) == 3
        back = f.images(np.arange(20))
    np.testing.assert_allclose(back.sum(), ke[:20].sum() * summary.calibration_factor[0] / 0.25, rtol=0.01)


def test_mip_plane_calibration_gives_each_plane_its_factor(tmp_path):
    events = _target_events(30)
    events[:, 1] = events[:, 2] = events[:, 0]  # the same tracks in every plane, at gains 1, 2, 4
    gains = np.array([1.0, 2.0, 4.0], dtype=np.float32)[None, :, None, None]
    path = tmp_path / "gains.npz"
    np.savez(path, images=events * gains, labels=np.zeros(30, int))
    one = import_events(path, tmp_path / "one.h5", ImportSettings(calibrate="mip"))
    per = import_events(path, tmp_path / "per.h5", ImportSettings(calibrate="mip-plane"))
    assert len(set(one.calibration_factor)) == 1
    ratios = np.asarray(per.calibration_factor) * np.asarray(per.mip_peak_source) / np.asarray(MIP_REFERENCE)
    np.testing.assert_allclose(ratios, 1.0, rtol=1e-6)  # each plane lands on its reference
    peaks = np.asarray(per.mip_peak_source)
    np.testing.assert_allclose(peaks / peaks[0], [1.0, 2.0, 4.0], rtol=1e-5)


def test_the_window_is_centred_on_the_vertex_estimate(simulated, tmp_path):
    with EventFile(simulated) as f:
        ke = f.images(np.arange(12)).astype(np.float32)
        labels = f.labels[:12]
    # another pipeline's window: the vertex 25 rows further down and 30 columns earlier, 260 x 260
    moved = np.zeros((12, 3, 260, 260), dtype=np.float32)
    moved[:, :, 25:225, 0:200] = ke
    path = tmp_path / "moved.npz"
    np.savez(path, images=moved, labels=labels)
    out = tmp_path / "centred.h5"
    import_events(path, out, ImportSettings(size=(200, 200), vertex="charge"))
    direct = tmp_path / "direct.h5"
    import_events(simulated, direct, ImportSettings(size=(200, 200), vertex="charge", limit=12))
    with EventFile(out) as a, EventFile(direct) as b:
        got, want = a.images(np.arange(12)), b.images(np.arange(12))
    np.testing.assert_allclose(got, want, atol=1e-3)  # wherever it was, the event lands in the same place
    # the estimates sit where cohep's do (an event's estimate moves when the window cuts charge off)
    estimates = [estimate_vertex(event) for event in got]
    assert np.median([e[0] for e in estimates], axis=0) == pytest.approx([f * 200 for f in VERTEX_ESTIMATE_ROWS], abs=3)
    assert np.median([e[1] for e in estimates]) == pytest.approx(VERTEX_ESTIMATE_COLUMN * 200, abs=3)
    # on cohep's own events the estimate stays near the true vertex (row 60, column 100)
    original = [estimate_vertex(e) for e in ke]
    assert abs(np.median([r[0][2] for r in original]) - 60) < 12
    assert abs(np.median([r[1] for r in original]) - 100) < 12


@pytest.mark.parametrize("args, message", [
    (["--calibrate", "mip", "--charge-factor", "2"], "import.charge_factor and import.calibrate"),
    (["--wire-pitch-mm", "-3"], "import.wire_pitch_mm must be > 0"),
    (["--size", "200,x"], "import.size must be comma-separated integers"),
    (["--size", "200"], "import.size must have 2 values"),
    (["--axes", "NVQT"], "import.axes must hold W and T"),
    (["--calibrate", "maybe"], "import.calibrate must be one of none, mip, mip-plane"),
    (["--label-map", "0=NC,1"], "import.label_map must be SOURCE=CLASS pairs"),
    (["--flip", "X"], "import.flip may hold only W and T"),
    ([], "pixel maps need import.map_shape"),
    (["--map-shape", "3,4,5"], "bytes, a uint8 map of shape [3, 4, 5] is 60"),
    (["--map-shape", "3,8,8", "--label-map", "0=NC"], "label '1' is not in import.label_map"),
])
def test_bad_options_and_bad_maps_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    folder = write_maps(tmp_path / "maps", np.ones((2, 3, 8, 8), np.uint8), [0, 1])
    out = tmp_path / "out.h5"
    assert main(["import", str(folder), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists() and not list(tmp_path.glob(".out.h5*"))


def test_bad_sources_name_the_file(tmp_path):
    folder = write_maps(tmp_path / "maps", np.ones((2, 3, 8, 8), np.uint8), [0, 1])
    (folder / "event0001.info").unlink()
    with pytest.raises(DataError, match=r"event0001.info: missing label file"):
        import_events(folder, tmp_path / "o.h5", ImportSettings(map_shape=(3, 8, 8)))
    (folder / "event0001.info").write_text("2\n")
    (folder / "event0000.gz").write_bytes(b"not zlib")
    with pytest.raises(DataError, match=r"event0000.gz: not a zlib-compressed pixel map"):
        import_events(folder, tmp_path / "o.h5", ImportSettings(map_shape=(3, 8, 8)))
    with pytest.raises(DataError, match="no such file"):
        import_events(tmp_path / "nothing.h5", tmp_path / "o.h5")
    weak = write_maps(tmp_path / "weak", np.zeros((2, 3, 8, 8), np.uint8), [0, 1])
    with pytest.raises(DataError, match="too few to calibrate"):
        import_events(weak, tmp_path / "o.h5", ImportSettings(map_shape=(3, 8, 8), calibrate="mip"))
    assert not (tmp_path / "o.h5").exists()
    with pytest.raises(ConfigError, match="unknown field import.pitch"):
        ImportSettings.from_mapping({"pitch": 3})
    assert issubclass(DataError, CohepError)


# -- class names against the labels (issue 26) ----------------------------------------------------


def test_class_names_follow_the_labels(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src = tmp_path / "two.npz"
    np.savez(src, images=rng.random((10, 3, 6, 6)).astype(np.float32), labels=np.arange(10) % 2)
    assert main(["import", str(src), "--out", str(tmp_path / "a.h5")]) == 0
    with EventFile(tmp_path / "a.h5") as f:  # two classes are not two flavours and an empty third
        assert f.class_names == ("class_0", "class_1") and f.attrs["wire_planes"] == 0
    assert main(["import", str(src), "--out", str(tmp_path / "b.h5"), "--class-names", "a,b,c"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "3 class names (a, b, c) for 2 classes in the labels" in err
    assert not (tmp_path / "b.h5").exists()
    assert main(["import", str(src), "--out", str(tmp_path / "c.h5"), "--class-names", "cat,dog"]) == 0
    with EventFile(tmp_path / "c.h5") as f:
        assert f.class_names == ("cat", "dog")
    three = tmp_path / "three.npz"  # three integer classes: cohep's flavours, wire planes
    np.savez(three, images=rng.random((9, 3, 6, 6)).astype(np.float32), labels=np.arange(9) % 3)
    assert main(["import", str(three), "--out", str(tmp_path / "d.h5")]) == 0
    with EventFile(tmp_path / "d.h5") as f:
        assert f.class_names == ("NC", "numu_CC", "nue_CC") and f.attrs["wire_planes"] == 1
    five = tmp_path / "five.npz"  # more classes than cohep's flavours need no names either
    np.savez(five, images=rng.random((10, 6, 6)).astype(np.float32), labels=np.arange(10) % 5)
    assert main(["import", str(five), "--out", str(tmp_path / "e.h5")]) == 0
    with EventFile(tmp_path / "e.h5") as f:
        assert f.class_names == tuple(f"class_{i}" for i in range(5))
