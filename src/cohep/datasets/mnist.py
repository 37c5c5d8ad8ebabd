"""MNIST from the standard IDX files (gzipped or not) or Keras' ``mnist.npz``.

A path may be a folder holding ``*-images-idx3-ubyte[.gz]`` / ``*-labels-idx1-ubyte[.gz]`` pairs
(train and/or t10k; train first when both exist), a single ``.npz`` or an images IDX file. Without a
path the Keras copy is downloaded once into the user cache; offline, the error says how to pass one.
"""
from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from cohep.core.errors import DataError
from cohep.core.files import atomic_write_bytes

#: The copy Keras' ``keras.datasets.mnist`` downloads (same 70,000 images as LeCun & Cortes').
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file (magic 0x0000TTDD, big-endian dims, raw data); gzip detected by magic."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or oversized IDX data ({len(raw) - header} bytes, expected {expected})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _labels_for(images_path: Path) -> Path:
    name = images_path.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    candidates = [images_path.with_name(name)]
    if name.endswith(".gz"):
        candidates.append(images_path.with_name(name[:-3]))
    else:
        candidates.append(images_path.with_name(name + ".gz"))
    for c in candidates:
        if c.exists():
            return c
    raise DataError(f"{images_path}: no matching labels file (looked for {candidates[0].name})")


def _pair(images_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images_path)
    y = read_idx(_labels_for(images_path))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{images_path}: images {x.shape} and labels {y.shape} do not match")
    return x, y


def _from_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if {"x_train", "y_train", "x_test", "y_test"} <= keys:
                x = np.concatenate([z["x_train"], z["x_test"]])
                y = np.concatenate([z["y_train"], z["y_test"]])
            elif {"x", "y"} <= keys:
                x, y = z["x"], z["y"]
            else:
                raise DataError(f"{path}: expected arrays x_train/y_train/x_test/y_test (or x/y), found {sorted(keys)}")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if x.ndim != 3 or len(x) != len(y):
        raise DataError(f"{path}: images {x.shape} and labels {y.shape} do not match")
    return x, y


def _download(cache: Path) -> Path:
    target = cache / "mnist.npz"
    if target.exists():
        return target
    try:
        with urllib.request.urlopen(MNIST_URL, timeout=20) as resp:
            blob = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(
            f"cannot download MNIST from {MNIST_URL} ({exc}); offline? pass a local path "
            "(a folder of IDX files or mnist.npz) with --data"
        ) from None
    import hashlib

    if hashlib.sha256(blob).hexdigest() != MNIST_SHA256:
        raise DataError(f"downloaded MNIST from {MNIST_URL} has an unexpected sha256; not using it")
    atomic_write_bytes(target, blob)
    return target


def load_mnist(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 [N, 1, 28, 28] in [0, 1] and labels int64 [N]."""
    if path is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cohep"
        path = _download(cache)
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        images = sorted(p.glob("*images-idx3-ubyte*"), key=lambda q: ("t10k" in q.name, q.name))
        images = [q for q in images if not (q.suffix != ".gz" and q.with_name(q.name + ".gz") in images)]
        if not images:
            raise DataError(f"{p}: no MNIST IDX files (*-images-idx3-ubyte[.gz]) in this folder")
        pairs = [_pair(q) for q in images]
        x = np.concatenate([a for a, _ in pairs])
        y = np.concatenate([b for _, b in pairs])
    elif p.suffix == ".npz":
        x, y = _from_npz(p)
    else:
        x, y = _pair(p)
    if y.min() < 0 or y.max() > 9:
        raise DataError(f"{p}: labels outside 0-9")
    return (x.astype(np.float32) / 255.0)[:, None, :, :], y.astype(np.int64)
