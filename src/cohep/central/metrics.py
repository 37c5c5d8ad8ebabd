"""Classification metrics of one set of predictions: accuracy, loss, per-class efficiency and purity.

Definitions (rows of the confusion matrix are true classes, columns predicted classes):
efficiency of class c = N(true c, predicted c) / N(true c) (recall); purity of class c =
N(true c, predicted c) / N(predicted c) (precision). An empty denominator gives null in JSON. Each
comes with its Wilson 95 % interval (:mod:`cohep.core.intervals`), ``[lo, hi]`` per class.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from collections.abc import Sequence

import numpy as np

from cohep.core.errors import DataError
from cohep.core.files import json_safe
from cohep.core.intervals import proportion


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` (int64, n_classes x n_classes)."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    return cm


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n) / float(d) if d > 0 else None for n, d in zip(num, den)]


def _intervals(num: np.ndarray, den: np.ndarray) -> list[list[float] | None]:
    _, lo, hi = proportion(num, den)
    return [[float(a), float(b)] if d > 0 else None for a, b, d in zip(lo, hi, den)]


def normalise_rows(cm: np.ndarray) -> list[list[float | None]]:
    """Row-normalised confusion matrix (each true class sums to 1); an empty row is all null."""
    cm = np.asarray(cm)
    out = []
    for row in cm:
        total = row.sum()
        out.append([float(v) / float(total) if total > 0 else None for v in row])
    return out


@dataclass
class ClassificationMetrics:
    """Accuracy, loss and the per-class view of one set of predictions."""

    class_names: list[str]
    n_events: int
    accuracy: float
    loss: float
    efficiency: list[float | None]
    purity: list[float | None]
    confusion: list[list[int]]
    confusion_normalised: list[list[float | None]]
    events_per_class: list[int]
    efficiency_interval: list[list[float] | None] | None = None  #: Wilson 95 % [lo, hi] per class
    purity_interval: list[list[float] | None] | None = None

    @classmethod
    def from_predictions(
        cls, labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
        predicted: np.ndarray | None = None,
    ) -> "ClassificationMetrics":
        """From class probabilities; ``predicted``: the decided classes where they are not the arg-max
        (a working point, :mod:`cohep.central.working_point`); the loss is the probabilities' either way."""
        labels = np.asarray(labels, dtype=np.int64)
        n = len(class_names)
        if len(labels) == 0:
            empty = np.zeros((n, n), dtype=np.int64)
            return cls(list(class_names), 0, math.nan, math.nan, [None] * n, [None] * n,
                       empty.tolist(), normalise_rows(empty), [0] * n)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != n:
            raise DataError(f"model gives {probs.shape[-1]} class scores but the data has {n} classes")
        predicted = probs.argmax(1) if predicted is None else np.asarray(predicted, dtype=np.int64)
        cm = confusion_matrix(labels, predicted, n)
        p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
        diag = np.diag(cm)
        return cls(
            class_names=list(class_names),
            n_events=int(len(labels)),
            accuracy=float((predicted == labels).mean()),
            loss=float(-np.log(p_true).mean()),
            efficiency=_ratio(diag, cm.sum(1)),
            purity=_ratio(diag, cm.sum(0)),
            confusion=cm.tolist(),
            confusion_normalised=normalise_rows(cm),
            events_per_class=cm.sum(1).tolist(),
            efficiency_interval=_intervals(diag, cm.sum(1)),
            purity_interval=_intervals(diag, cm.sum(0)),
        )

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    def table(self) -> str:
        """The per-class table and the confusion matrix as fixed-width text."""
        names = self.class_names
        w = max(8, *(len(c) for c in names))
        fmt = lambda v: "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"  # noqa: E731
        def ci(intervals, i: int) -> str:
            iv = intervals[i] if intervals else None
            return f"[{iv[0]:.3f}, {iv[1]:.3f}]" if iv else ""

        lines = [f"{'class':<{w}}  {'events':>7}  {'efficiency':>10} {'(95 % Wilson)':>16}  {'purity':>7} {'(95 % Wilson)':>16}"]
        for i, c in enumerate(names):
            lines.append(f"{c:<{w}}  {self.events_per_class[i]:>7d}  {fmt(self.efficiency[i]):>10} "
                         f"{ci(self.efficiency_interval, i):>16}  {fmt(self.purity[i]):>7} {ci(self.purity_interval, i):>16}")
        lines.append("")
        lines.append("confusion matrix (rows: true class, columns: predicted), counts and row fractions")
        lines.append(" " * w + "  " + "  ".join(f"{c:>{w}}" for c in names))
        for i, c in enumerate(names):
            counts = "  ".join(f"{v:>{w}d}" for v in self.confusion[i])
            fracs = "  ".join(fmt(v).strip().rjust(6) for v in self.confusion_normalised[i])
            lines.append(f"{c:<{w}}  {counts}   | {fracs}")
        return "\n".join(lines)
