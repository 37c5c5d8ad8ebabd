import gzip

import numpy as np
import pytest

from cohep.datasets.mnist import load_mnist, read_idx
from cohep.datasets.splits import assign
from cohep.errors import ConfigError, DataError


def test_mnist_t10k_from_shared(mnist_dir):
    x, y = load_mnist(mnist_dir)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first t10k labels


def test_mnist_plain_idx_and_npz(tmp_path, mnist_dir):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    x, y = load_mnist(tmp_path)
    assert len(x) == 10000
    npz = tmp_path / "mnist.npz"
    raw = (x[:, 0] * 255).round().astype(np.uint8)
    np.savez(npz, x_train=raw[:100], y_train=y[:100], x_test=raw[100:150], y_test=y[100:150])
    x2, y2 = load_mnist(npz)
    assert x2.shape == (150, 1, 28, 28) and (y2 == y[:150]).all()
    assert np.allclose(x2, x[:150])


def test_mnist_corrupt_and_missing(tmp_path, mnist_dir):
    with pytest.raises(DataError, match="no such file"):
        load_mnist(tmp_path / "absent")
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())[:5000])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="junk.gz"):
        read_idx(junk)


def test_iid_split_partitions_everything():
    labels = np.repeat(np.arange(10), 100)
    hold = np.arange(800, 1000)
    parts = assign(labels, 5, holdout=hold, seed=1)
    allidx = np.concatenate([np.concatenate([p.train, p.vote]) for p in parts])
    assert sorted(allidx.tolist()) == list(range(800))
    assert sorted(np.concatenate([p.test for p in parts]).tolist()) == list(range(800, 1000))
    assert all(abs(len(p.vote) - 32) <= 1 for p in parts)
    assert parts[0].train.tolist() == assign(labels, 5, holdout=hold, seed=1)[0].train.tolist()


def test_dirichlet_split_is_skewed():
    labels = np.repeat(np.arange(10), 200)
    parts = assign(labels, 4, holdout=np.arange(0), method="dirichlet", alpha=0.1, seed=0)
    fractions = [np.bincount(labels[np.concatenate([p.train, p.vote])], minlength=10).max()
                 / (len(p.train) + len(p.vote)) for p in parts]
    assert max(fractions) > 0.3  # IID would be about 0.1


def test_too_many_learners():
    with pytest.raises(ConfigError, match="too few samples"):
        assign(np.zeros(5, dtype=int), 4, holdout=np.arange(0))


def test_download_offline_gives_clear_error(tmp_path, monkeypatch):
    import cohep.datasets.mnist as mn

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(mn, "MNIST_URL", "http://127.0.0.1:9/mnist.npz")  # nothing listens there
    with pytest.raises(DataError, match="offline.*--data"):
        load_mnist(None)
    assert not (tmp_path / "cohep" / "mnist.npz").exists()
