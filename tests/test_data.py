import gzip

import numpy as np
import pytest

from cohep.datasets.mnist import load_mnist, read_idx
from cohep.core.errors import DataError


def test_synthetic_idx_files_read_back(mnist_dir):
    """The fixture's files are real IDX: magic numbers, big-endian sizes, uint8 payload."""
    images_gz = mnist_dir / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images_gz.read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:16] == (1200).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(raw) == 16 + 1200 * 28 * 28
    images = read_idx(images_gz)
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (1200, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1200,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [120] * 10
    assert labels[:50].tolist() != sorted(labels[:50].tolist())  # shuffled, like the real t10k
    assert images.max() == 255 and images.min() == 0


def test_load_mnist_from_idx_folder(mnist_dir):
    x, y = load_mnist(mnist_dir)
    assert x.shape == (1200, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (1200,) and y.dtype == np.int64 and set(np.unique(y).tolist()) == set(range(10))
    raw = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(x[:, 0], raw.astype(np.float32) / 255.0)
    assert x.min() == 0.0 and x.max() == 1.0
    # the classes differ: each class's mean image is closer to its own images than to the others'
    means = np.stack([x[y == c, 0].mean(axis=0) for c in range(10)])
    dist = ((x[:, 0, None] - means[None]) ** 2).sum(axis=(2, 3))
    assert (dist.argmin(axis=1) == y).mean() > 0.8  # chance would be 0.1


def test_mnist_plain_idx_and_npz(tmp_path, mnist_dir):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    x, y = load_mnist(tmp_path)
    x_gz, y_gz = load_mnist(mnist_dir)
    assert np.array_equal(x, x_gz) and np.array_equal(y, y_gz)
    npz = tmp_path / "mnist.npz"
    raw = (x[:, 0] * 255).round().astype(np.uint8)
    np.savez(npz, x_train=raw[:100], y_train=y[:100], x_test=raw[100:150], y_test=y[100:150])
    x2, y2 = load_mnist(npz)
    assert x2.shape == (150, 1, 28, 28) and (y2 == y[:150]).all()
    assert np.allclose(x2, x[:150])


def _cut(src, dst, keep):
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


def test_mnist_truncated_files(tmp_path, mnist_dir):
    images = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    plain = tmp_path / "full-images-idx3-ubyte"
    plain.write_bytes(images)
    assert read_idx(plain).shape == (1200, 28, 28)
    # payload cut short: the message names the file and both sizes
    with pytest.raises(DataError,
                       match=r"cut-images-idx3-ubyte: truncated or oversized IDX data \(4984 bytes, expected 940800\)"):
        read_idx(_cut(plain, tmp_path / "cut-images-idx3-ubyte", 5000))
    # header cut short
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(_cut(plain, tmp_path / "short-images-idx3-ubyte", 10))
    # a gzip stream cut short
    with pytest.raises(DataError, match="cut.gz: corrupt gzip data"):
        read_idx(_cut(mnist_dir / "t10k-images-idx3-ubyte.gz", tmp_path / "cut.gz", 3000))
    # through the folder loader: a labels file with fewer items than the images
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(images)
    labels = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels[:4] + (1199).to_bytes(4, "big") + labels[8:-1])
    with pytest.raises(DataError, match=r"images \(1200, 28, 28\) and labels \(1199,\) do not match"):
        load_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels[:-1])  # one label byte missing
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: truncated"):
        load_mnist(folder)


def test_mnist_corrupt_and_missing(tmp_path, mnist_dir):
    with pytest.raises(DataError, match="no such file"):
        load_mnist(tmp_path / "absent")
    with pytest.raises(DataError, match="no MNIST IDX files"):
        load_mnist(tmp_path)
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="junk.gz"):
        read_idx(junk)
    notidx = tmp_path / "notidx"
    notidx.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01x")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(notidx)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="no matching labels file"):
        load_mnist(tmp_path)


def test_download_offline_gives_clear_error(tmp_path, monkeypatch):
    import cohep.datasets.mnist as mn

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(mn, "MNIST_URL", "http://127.0.0.1:9/mnist.npz")  # nothing listens there
    with pytest.raises(DataError, match="offline.*--data"):
        load_mnist(None)
    assert not (tmp_path / "cohep" / "mnist.npz").exists()
