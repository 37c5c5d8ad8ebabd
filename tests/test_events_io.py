"""The HDF5 event format: writer, validated reader, streaming torch Dataset, NPZ import."""
from __future__ import annotations

import numpy as np
import pytest

import cohep
from cohep.cli import main
from cohep.datasets.events import CLASS_NAMES, VIEW_NAMES, EventDataset, EventFile, EventWriter, import_npz
from cohep.core.errors import DataError


def _write(path, n=10, shape=(3, 16, 12), dtype="float16", labels=None, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 50, size=(n,) + shape).astype(np.float32)
    images[images < 40] = 0
    labels = np.arange(n) % 3 if labels is None else labels
    truth = {"nu_energy": rng.uniform(1000, 4000, n).astype(np.float32), "n_pi0": np.arange(n, dtype=np.int16)}
    with EventWriter(path, n_events=n, image_shape=shape, dtype=dtype, attrs={"seed": 5, "config": {"a": 1}},
                     truth_fields={"nu_energy": ("<f4", "MeV"), "n_pi0": "<i2"}) as w:
        w.write(images[:4], labels[:4], {k: v[:4] for k, v in truth.items()})
        w.write(images[4:], labels[4:], {k: v[4:] for k, v in truth.items()})
    return images, np.asarray(labels), truth


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    path = tmp_path / "ev.h5"
    images, labels, truth = _write(path)
    with EventFile(path) as f:
        assert f.n_events == 10 and f.image_shape == (3, 16, 12)
        assert f.class_names == CLASS_NAMES and f.view_names == VIEW_NAMES
        assert f.labels.dtype == np.int64 and np.array_equal(f.labels, labels)
        np.testing.assert_allclose(f.images(np.arange(10)), images.astype(np.float16), rtol=0)
        assert f.images(3).shape == (3, 16, 12)
        # any order, duplicates, slices
        idx = [7, 2, 2, 9, 0, 1]
        np.testing.assert_array_equal(f.images(idx), f.images(np.arange(10))[idx])
        np.testing.assert_array_equal(f.images(slice(2, 5)), f.images([2, 3, 4]))
        np.testing.assert_array_equal(f.truth["n_pi0"], truth["n_pi0"])
        assert f.truth_units()["nu_energy"] == "MeV"
        assert f.attrs["seed"] == 5 and f.attrs["config"] == '{"a": 1}'
        # defaults for what the writer's caller did not set
        assert f.attrs["generator"] == "cohep" and f.attrs["version"] == cohep.__version__
        assert f.attrs["created"] == "2023-11-14T22:13:20+00:00"
        assert np.isnan(f.attrs["pixel_pitch_mm"]) and np.isnan(f.attrs["tick_us"])


def test_writer_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "ev.h5"
    with pytest.raises(RuntimeError):
        with EventWriter(path, n_events=3, image_shape=(3, 4, 4), truth_fields={}) as w:
            w.write(np.zeros((1, 3, 4, 4)), [0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # too few events written: an error, and no file
    with pytest.raises(DataError, match="wrote 1 of 3"):
        with EventWriter(path, n_events=3, image_shape=(3, 4, 4), truth_fields={}) as w:
            w.write(np.zeros((1, 3, 4, 4)), [0])
    assert list(tmp_path.iterdir()) == []
    # bad batches are refused
    with pytest.raises(DataError):
        with EventWriter(path, n_events=1, image_shape=(3, 4, 4), truth_fields={}) as w:
            w.write(np.zeros((1, 3, 4, 4)), [7])
    assert list(tmp_path.iterdir()) == []


def test_truncated_file(tmp_path):
    path = tmp_path / "ev.h5"
    _write(path, n=30, shape=(3, 64, 64), dtype="float32")
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.h5"):
        EventFile(cut)
    with pytest.raises(DataError, match="cut.h5"):
        EventDataset(cut)


def test_cli_truncated_file(tmp_path, capsys):
    path = tmp_path / "ev.h5"
    _write(path, n=30, shape=(3, 64, 64), dtype="float32")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:-5000])
    png = tmp_path / "ev.png"
    assert main(["show", str(cut), "--event", "1", "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cut.h5" in err and "truncated" in err
    assert not png.exists()


@pytest.mark.parametrize("problem", ["missing", "not_hdf5", "no_labels", "labels_range", "shape"])
def test_invalid_files(tmp_path, problem):
    import h5py

    path = tmp_path / "bad.h5"
    if problem == "not_hdf5":
        path.write_text("hello")
    elif problem != "missing":
        with h5py.File(path, "w") as f:
            f["images"] = np.zeros((4, 3, 8, 8), np.float32)
            if problem == "labels_range":
                f["labels"] = np.array([0, 1, 2, 3])
            elif problem == "shape":
                f["labels"] = np.array([0, 1, 2])
    with pytest.raises(DataError) as err:
        EventFile(path)
    assert "bad.h5" in str(err.value)


def test_torch_dataset_streams(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    path = tmp_path / "ev.h5"
    images, labels, _ = _write(path, n=12)
    ds = EventDataset(path, indices=[3, 5, 7, 11])
    assert len(ds) == 4
    assert ds.class_names == CLASS_NAMES
    np.testing.assert_array_equal(ds.labels, labels[[3, 5, 7, 11]])
    x, y = ds[1]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, 16, 12)
    assert y == int(labels[5])
    np.testing.assert_allclose(x.numpy(), images[5].astype(np.float16))
    loader = DataLoader(EventDataset(path), batch_size=4, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    assert torch.cat(ys).tolist() == labels.tolist()
    assert torch.cat(xs).shape == (12, 3, 16, 12)


@pytest.mark.parametrize("layout", ["first", "last", "single"])
def test_import_npz_round_trip(tmp_path, layout):
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 100, size=(7, 3, 10, 9)).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0, 1])
    stored = {"first": images, "last": np.moveaxis(images, 1, -1), "single": images[:, 2]}[layout]
    npz = tmp_path / "mine.npz"
    np.savez(npz, images=stored, labels=labels)
    out = import_npz(npz, tmp_path / "mine.h5")
    with EventFile(out) as f:
        assert np.array_equal(f.labels, labels)
        got = f.images(np.arange(7))
        want = images if layout != "single" else images[:, 2:3]
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert f.attrs["generator"] == "cohep import"


def test_import_npz_names_and_string_labels(tmp_path):
    npz = tmp_path / "mine.npz"
    np.savez(npz, images=np.ones((4, 3, 5, 5), np.uint8), labels=np.array(["sig", "bkg", "sig", "bkg"]),
             class_names=np.array(["bkg", "sig"]))
    out = import_npz(npz, tmp_path / "mine.h5")
    with EventFile(out) as f:
        assert f.class_names == ("bkg", "sig")
        assert f.labels.tolist() == [1, 0, 1, 0]
        assert f._file["images"].dtype == np.float16


@pytest.mark.parametrize(
    "arrays, field",
    [
        ({"labels": np.zeros(3, int)}, "images"),
        ({"images": np.zeros((3, 3, 4, 4))}, "labels"),
        ({"images": np.zeros((3, 5, 4, 4)), "labels": np.zeros(3, int)}, "images"),
        ({"images": np.zeros((3, 3, 4, 4)), "labels": np.zeros(4, int)}, "labels"),
        ({"images": np.zeros((3, 3, 4, 4)), "labels": np.array([0, 1, 5])}, "labels"),
        ({"images": np.full((3, 3, 4, 4), np.nan), "labels": np.zeros(3, int)}, "images"),
    ],
)
def test_import_npz_errors_name_the_field(tmp_path, arrays, field):
    npz = tmp_path / "bad.npz"
    np.savez(npz, **arrays)
    with pytest.raises(DataError) as err:
        import_npz(npz, tmp_path / "out.h5")
    assert "bad.npz" in str(err.value) and field in str(err.value)
    assert not (tmp_path / "out.h5").exists()


def test_cli_import(tmp_path, capsys):
    npz = tmp_path / "mine.npz"
    np.savez(npz, images=np.ones((5, 3, 6, 6), np.float32), labels=np.array([0, 1, 2, 0, 1]))
    out = tmp_path / "mine.h5"
    assert main(["import", str(npz), "--out", str(out)]) == 0
    with EventFile(out) as f:
        assert f.n_events == 5
    bad = tmp_path / "bad.npz"
    np.savez(bad, pictures=np.ones((2, 3, 4, 4)))
    capsys.readouterr()
    assert main(["import", str(bad), "--out", str(tmp_path / "bad.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "images" in err
    assert not (tmp_path / "bad.h5").exists()
    # an unreadable file in place of an event file: one line, exit 2
    (tmp_path / "junk.h5").write_text("not hdf5")
    assert main(["show", str(tmp_path / "junk.h5"), "--out", str(tmp_path / "x.png")]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
