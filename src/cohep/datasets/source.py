"""One view over any labelled data set a run can use: MNIST arrays or an HDF5 event file.

Learners receive torch Datasets for their index subsets. Small subsets are read into memory once
(fast tensor slicing while training); large ones stream from the HDF5 file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from cohep.core.errors import ConfigError
from cohep.core.settings import share_count

DATA_KINDS = ("mnist", "events")
#: Subsets up to this many bytes (float32) are held in memory; larger ones stream from disk.
IN_MEMORY_BYTES = 3 * 1024**3


@dataclass
class LabelledData:
    """Labels and class names of a pooled data set, and a way to materialise any subset."""

    kind: str
    source: str
    labels: np.ndarray
    class_names: list[str]
    input_shape: tuple[int, ...]
    _subset: Callable[[np.ndarray], Dataset] = field(repr=False)
    #: LArTPC wire-plane events (simulated, or imported as wire planes): the images ``[train.augment]``
    #: is made for; MNIST and other image sets are not (:func:`cohep.datasets.importer.wire_planes`)
    wire_planes: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Dataset:
        return self._subset(np.asarray(indices, dtype=np.int64))


def _from_arrays(kind: str, source: str, x: np.ndarray, y: np.ndarray, class_names) -> LabelledData:
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    def subset(idx: np.ndarray) -> Dataset:
        t = torch.from_numpy(idx)
        return TensorDataset(xt[t], yt[t])

    return LabelledData(kind, source, y, list(class_names), tuple(x.shape[1:]), subset)


def load_data(kind: str, path: str | None, *, limit: int | None = None) -> LabelledData:
    """Open a data set by kind ("mnist" or "events"); ``limit`` keeps the first N items."""
    if kind == "mnist":
        from cohep.datasets.mnist import load_mnist

        x, y = load_mnist(path)
        if limit:
            x, y = x[:limit], y[:limit]
        return _from_arrays(kind, str(path or "download"), x, y, [str(i) for i in range(10)])
    if kind == "events":
        if not path:
            raise ConfigError("data.path is required for events data (an HDF5 file from `cohep simulate` or `cohep import`)")
        from cohep.datasets.events import EventDataset, EventFile
        from cohep.datasets.importer import wire_planes

        with EventFile(path) as f:
            labels = np.asarray(f.labels, dtype=np.int64)
            class_names = list(f.class_names)
            shape = tuple(f.image_shape)
            planes = wire_planes(f.attrs)
        if limit:
            labels = labels[:limit]
        per_item = 4 * int(np.prod(shape))

        def subset(idx: np.ndarray) -> Dataset:
            if len(idx) * per_item <= IN_MEMORY_BYTES:
                with EventFile(path) as f:
                    images = f.images(idx)
                return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels[idx]))
            return EventDataset(path, indices=idx)

        return LabelledData(kind, str(Path(path)), labels, class_names, shape, subset, planes)
    raise ConfigError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {kind!r}")


def holdout_indices(n: int, holdout: float | int) -> np.ndarray:
    """The last items form the held-out test pool: a count, or a fraction (see ``settings.Share``)."""
    k = share_count(holdout, n, "data.holdout")
    if k >= n:
        raise ConfigError(f"data.holdout ({k}) leaves no samples for the learners (data set has {n})")
    return np.arange(n - k, n, dtype=np.int64)
