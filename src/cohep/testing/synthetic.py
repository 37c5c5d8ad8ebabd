"""Seeded synthetic data for tests and benchmarks: MNIST-like digits (as IDX files too) and sparse events.

Why here: the tests' fixtures and the scripts under bench/ need the same data with nothing
downloaded; one seeded generator keeps their figures comparable. Every builder is deterministic in
its ``seed``: the same call gives the same bytes.
"""
from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np

#: Each class is a few strokes (polylines in a unit box, y pointing down), loosely shaped like the
#: digit so the classes differ the way digits do: in where the ink is and how it bends.
_ARC = np.linspace(0.0, 2.0 * np.pi, 17)
DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [[(0.5 + 0.38 * np.sin(t), 0.5 - 0.48 * np.cos(t)) for t in _ARC]],
    1: [[(0.35, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.1, 0.25), (0.3, 0.02), (0.7, 0.02), (0.88, 0.28), (0.1, 1.0), (0.92, 1.0)]],
    3: [[(0.1, 0.05), (0.85, 0.1), (0.45, 0.48), (0.9, 0.72), (0.6, 1.0), (0.1, 0.92)]],
    4: [[(0.7, 1.0), (0.7, 0.0), (0.05, 0.68), (0.95, 0.68)]],
    5: [[(0.88, 0.02), (0.15, 0.02), (0.1, 0.45), (0.75, 0.45), (0.9, 0.75), (0.6, 1.0), (0.08, 0.92)]],
    6: [[(0.8, 0.02), (0.2, 0.5), (0.15, 0.85), (0.5, 1.0), (0.85, 0.8), (0.6, 0.55), (0.18, 0.65)]],
    7: [[(0.05, 0.05), (0.95, 0.05), (0.35, 1.0)], [(0.35, 0.5), (0.8, 0.5)]],
    8: [[(0.5 + 0.3 * np.sin(t), 0.26 - 0.24 * np.cos(t)) for t in _ARC],
        [(0.5 + 0.38 * np.sin(t), 0.74 - 0.26 * np.cos(t)) for t in _ARC]],
    9: [[(0.5 + 0.35 * np.sin(t), 0.3 - 0.28 * np.cos(t)) for t in _ARC], [(0.85, 0.3), (0.6, 1.0)]],
}

#: How many digits the synthetic MNIST folder holds by default (the tests' ``mnist_dir``, bench/quality.py).
SYNTHETIC_MNIST_SIZE = 1200


def _segments(label: int) -> np.ndarray:
    """[S, 2, 2] segment end points (x, y) of one class's strokes, in the unit box."""
    segs = [(a, b) for line in DIGIT_STROKES[label] for a, b in itertools.pairwise(line)]
    return np.asarray(segs, dtype=np.float64)


def synthetic_digits(n: int = 1200, seed: int = 0, *, noise: float = 0.08, max_shift: int = 1,
                     slant: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28 x 28 uint8 images of 10 stroke templates (balanced, shuffled labels uint8).

    Every image draws its class's strokes with its own size, slant, stroke width, brightness and a
    shift of up to ``max_shift`` pixels, then adds Gaussian pixel noise. With the defaults the small
    CNN learns it about as fast as real MNIST from a few hundred images (larger shifts make a
    3-round run on 600 images barely leave chance level).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    px_, py_ = xx.ravel()[None, None, :], yy.ravel()[None, None, :]  # [1, 1, 784]
    images = np.zeros((n, 28 * 28), dtype=np.float32)
    for label in range(10):
        idx = np.flatnonzero(labels == label)
        m = len(idx)
        segs = _segments(label)  # [S, 2, 2]
        # per image: box size, slant, shift; the digit box is about 13 x 19 pixels, centred
        sx = rng.uniform(11.0, 15.0, (m, 1))
        sy = rng.uniform(17.0, 21.0, (m, 1))
        slant_ = rng.uniform(-slant, slant, (m, 1))
        cx = 14.0 + rng.integers(-max_shift, max_shift + 1, (m, 1))
        cy = 14.0 + rng.integers(-max_shift, max_shift + 1, (m, 1))
        u, v = segs[None, :, :, 0] - 0.5, segs[None, :, :, 1] - 0.5  # [1, S, 2]: start, end
        x = (cx[:, :, None] + sx[:, :, None] * u + (slant_ * sy)[:, :, None] * v).astype(np.float32)
        y = (cy[:, :, None] + sy[:, :, None] * v).astype(np.float32)  # [m, S, 2]
        ax, ay = x[:, :, :1], y[:, :, :1]  # [m, S, 1]
        bx, by = x[:, :, 1:] - ax, y[:, :, 1:] - ay
        qx, qy = px_ - ax, py_ - ay  # [m, S, 784]
        t = np.clip((qx * bx + qy * by) / np.maximum(bx * bx + by * by, 1e-6), 0.0, 1.0)
        qx -= t * bx
        qy -= t * by
        dist = np.sqrt((qx * qx + qy * qy).min(axis=1))  # [m, 784]: distance to the nearest stroke
        width = rng.uniform(0.8, 1.6, (m, 1))
        images[idx] = np.clip(width + 0.5 - dist, 0.0, 1.0) * rng.uniform(0.7, 1.0, (m, 1))
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
    images = np.clip(images, 0.0, 1.0)
    return np.round(images * 255).astype(np.uint8).reshape(n, 28, 28), labels


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array as an (uncompressed) IDX file: magic 0x0000_08_<ndim>, big-endian dims, data."""
    if array.dtype != np.uint8:
        raise ValueError(f"an IDX file of unsigned bytes needs uint8 data, got {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_mnist_idx(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str = "t10k") -> Path:
    """Write ``<prefix>-images-idx3-ubyte.gz`` / ``<prefix>-labels-idx1-ubyte.gz`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images), mtime=0))
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    return folder


def synthetic_mnist(folder: Path, n: int = SYNTHETIC_MNIST_SIZE, seed: int = 0) -> Path:
    """A folder that reads as MNIST t10k: ``n`` synthetic digits of ``seed`` as gzipped IDX files."""
    images, labels = synthetic_digits(n, seed=seed)
    return write_mnist_idx(folder, images, labels)


def sparse_events(n: int, shape: tuple[int, ...] = (3, 200, 200), seed: int = 0, *, classes: int = 3,
                  occupancy: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 event images of ``shape``, about ``occupancy`` of the pixels charged (log-normal
    around 17 ke-, like ``cohep simulate`` output), and int64 labels in ``range(classes)``: random,
    so good for timing a model, not for learning one."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, *shape), dtype=np.float32)
    mask = rng.random(x.shape) < occupancy
    x[mask] = rng.lognormal(np.log(17.0), 1.2, size=int(mask.sum()))  # ke-, like simulated files
    return x, rng.integers(0, classes, n)
