"""``[degrade]``: give one learner worse private data, to test whether quality measures find it.

Three ways, combinable: flip a fraction of its labels to other classes (careless labelling), keep
only a fraction of its items (a small group), or hand it its own data file (events simulated with a
mis-configured detector, another flux). Only the learner's private train and vote sets change; its
test set stays its share of the common held-out set, so every test accuracy remains comparable.
"""
from __future__ import annotations

from dataclasses import replace

from typing import TYPE_CHECKING

import numpy as np

from cohep.core.errors import ConfigError
from cohep.config.research import DegradeSection

if TYPE_CHECKING:  # config.py imports this module: keep torch out of its import
    from cohep.datasets.source import LabelledData
    from cohep.datasets.splits import LearnerIndices


def apply(section: DegradeSection, data: "LabelledData", parts: "list[LearnerIndices]", *, seed: int,
          kind: str, vote_fraction: float) -> "tuple[LabelledData, list[LearnerIndices]]":
    """The pooled data and learner indices with ``section.learner``'s share degraded (seeded)."""
    from cohep.datasets.splits import LearnerIndices

    if not section.active:
        return data, parts
    i = section.learner
    if i >= len(parts):
        raise ConfigError(f"degrade.learner ({i}) must be below experiment.learners ({len(parts)})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE9, i]))
    parts = list(parts)
    mine = parts[i]
    if section.path is not None:
        data, mine = _own_file(data, section.path, kind, mine, vote_fraction, rng)
    if section.keep < 1:
        mine = LearnerIndices(_keep(mine.train, section.keep, rng), _keep(mine.vote, section.keep, rng), mine.test)
    if section.label_flip > 0:
        data = flip_labels(data, np.concatenate([mine.train, mine.vote]), section.label_flip, rng)
    parts[i] = mine
    return data, parts


def _keep(idx: np.ndarray, share: float, rng) -> np.ndarray:
    k = max(1, int(round(share * len(idx))))
    return np.sort(rng.choice(idx, size=k, replace=False))


def flip_labels(data: "LabelledData", indices: np.ndarray, share: float, rng) -> "LabelledData":
    """A view of ``data`` whose labels at a ``share`` of ``indices`` are moved to another class.

    Each flipped item gets a class drawn uniformly from the others, so the learner's labels carry
    only ``1 - share`` of the truth (``share = 1``: no item keeps its class). The learners' index
    sets are disjoint, so only the degraded learner sees the change.
    """
    import torch

    k = len(data.class_names)
    if k < 2:
        raise ConfigError("degrade.label_flip needs at least two classes")
    chosen = rng.choice(indices, size=int(round(share * len(indices))), replace=False)
    labels = data.labels.copy()
    labels[chosen] = (labels[chosen] + rng.integers(1, k, size=len(chosen))) % k
    flipped = torch.from_numpy(labels.astype(np.int64))
    inner = data._subset
    changed = np.zeros(len(labels), dtype=bool)
    changed[chosen] = True

    def subset(idx: np.ndarray):
        ds = inner(idx)
        if not changed[idx].any():
            return ds
        x, _ = ds.tensors if hasattr(ds, "tensors") else _materialise(ds)
        return torch.utils.data.TensorDataset(x, flipped[torch.from_numpy(idx)].to(torch.long))

    return replace(data, labels=labels, _subset=subset)


def _materialise(ds):
    import torch

    xs, ys = zip(*(ds[j] for j in range(len(ds))))
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys)


def _own_file(data: "LabelledData", path: str, kind: str, mine: "LearnerIndices", vote_fraction: float, rng):
    """Append the learner's own file to the pool; its train and vote sets come from that file only."""
    from torch.utils.data import ConcatDataset

    from cohep.datasets.source import load_data
    from cohep.datasets.splits import LearnerIndices

    other = load_data(kind, path)
    if tuple(other.input_shape) != tuple(data.input_shape) or list(other.class_names) != list(data.class_names):
        raise ConfigError(f"degrade.path {path}: shape {other.input_shape} and classes {other.class_names} must match "
                          f"the pooled data's {data.input_shape} and {data.class_names}")
    if len(other) < 2:
        raise ConfigError(f"degrade.path {path}: needs at least 2 items (one to train, one to vote)")
    n = len(data)
    order = rng.permutation(len(other))
    n_vote = min(len(other) - 1, max(1, int(round(vote_fraction * len(other)))))
    own = LearnerIndices(np.sort(order[n_vote:] + n), np.sort(order[:n_vote] + n), mine.test)
    first, second = data._subset, other._subset

    def subset(idx: np.ndarray):
        a, b = idx[idx < n], idx[idx >= n] - n
        if not len(b):
            return first(idx)
        if not len(a):
            return second(b)
        return ConcatDataset([first(a), second(b)])

    labels = np.concatenate([data.labels, other.labels.astype(data.labels.dtype)])
    source = f"{data.source} + {other.source} (degrade.path)"
    return replace(data, labels=labels, source=source, _subset=subset), own
