"""A classifier as a physicist's selection: ROC curves, cut scans and efficiencies binned in truth.

Each class ``c`` is selected one-vs-rest by its own score: events with ``score_c >= cut``. From the
per-event scores (:mod:`cohep.central.scores`) this module computes

* the ROC curve and its AUC (:func:`sklearn.metrics.roc_curve`, :func:`~sklearn.metrics.roc_auc_score`:
  the field's reference implementation, ties handled as the Mann-Whitney statistic);
* the efficiency-purity curve as the cut moves (:func:`sklearn.metrics.precision_recall_curve`:
  purity is precision, efficiency is recall) and the cut that maximises efficiency x purity, with
  binomial intervals on both at that cut;
* efficiency and purity of the arg-max selection (the one in the confusion matrix) binned in any
  truth variable (neutrino energy by default), filled with scikit-hep ``hist``, each bin with a
  binomial interval (:mod:`cohep.core.intervals`).

Efficiency of class c: N(true c, selected) / N(true c); purity: N(true c, selected) / N(selected).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cohep.core.errors import DataError
from cohep.core.intervals import proportion

#: bins of a binned efficiency when none are given: quantiles, so every bin holds events
DEFAULT_BINS = 10
#: an integer truth variable spanning fewer values than this is binned one bin per value
MAX_CATEGORIES = 20


def _interval(k, n, method: str) -> tuple[float, float, float]:
    p, lo, hi = proportion(k, n, method=method)
    return float(p), float(lo), float(hi)


@dataclass
class ClassSelection:
    """One class selected one-vs-rest on its own score."""

    name: str
    n_signal: int
    n_background: int
    auc: float
    fpr: np.ndarray
    tpr: np.ndarray
    cuts: np.ndarray  #: increasing score cuts of the efficiency-purity curve
    efficiency: np.ndarray
    purity: np.ndarray
    best_cut: float
    best_efficiency: tuple[float, float, float]  #: (value, lo, hi) at the best cut
    best_purity: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"class": self.name, "auc": self.auc, "n_signal": self.n_signal, "n_background": self.n_background,
                "best_cut": self.best_cut, "best_efficiency": list(self.best_efficiency),
                "best_purity": list(self.best_purity)}


def select_class(scores: np.ndarray, labels: np.ndarray, c: int, name: str, *, method: str = "wilson") -> ClassSelection:
    """ROC, cut scan and best cut of class ``c`` (NaN AUC and no curve when a side is empty)."""
    from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

    truth = np.asarray(labels) == c
    score = np.asarray(scores, dtype=np.float64)[:, c]
    n_sig, n_bkg = int(truth.sum()), int((~truth).sum())
    empty = np.zeros(0)
    if n_sig == 0 or n_bkg == 0:
        nan3 = (math.nan, math.nan, math.nan)
        return ClassSelection(name, n_sig, n_bkg, math.nan, empty, empty, empty, empty, empty, math.nan, nan3, nan3)
    fpr, tpr, _ = roc_curve(truth, score)
    auc = float(roc_auc_score(truth, score))
    purity, efficiency, cuts = precision_recall_curve(truth, score)
    purity, efficiency = purity[:-1], efficiency[:-1]  # the last point (efficiency 0) has no cut
    best = int(np.argmax(efficiency * purity))
    cut = float(cuts[best])
    selected = score >= cut
    k = int((selected & truth).sum())
    return ClassSelection(name, n_sig, n_bkg, auc, fpr, tpr, cuts, efficiency, purity, cut,
                          _interval(k, n_sig, method), _interval(k, int(selected.sum()), method))


def select_all(scores: np.ndarray, labels: np.ndarray, class_names, *, method: str = "wilson") -> list[ClassSelection]:
    return [select_class(scores, labels, c, name, method=method) for c, name in enumerate(class_names)]


@dataclass
class Binned:
    """Efficiency and purity of each class's arg-max selection in bins of one truth variable."""

    variable: str
    unit: str
    edges: np.ndarray
    class_names: list[str]
    method: str
    #: per class: [bins] counts and (value, lo, hi) arrays
    n_true: list[np.ndarray]
    n_selected: list[np.ndarray]
    n_both: list[np.ndarray]

    def efficiency(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return proportion(self.n_both[c], self.n_true[c], method=self.method)

    def purity(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return proportion(self.n_both[c], self.n_selected[c], method=self.method)

    def to_dict(self) -> dict:
        out = {"variable": self.variable, "unit": self.unit, "edges": self.edges.tolist(), "method": self.method,
               "classes": {}}
        for c, name in enumerate(self.class_names):
            eff, pur = self.efficiency(c), self.purity(c)
            out["classes"][name] = {
                "n_true": self.n_true[c].tolist(), "n_selected": self.n_selected[c].tolist(),
                "efficiency": [_none(v) for v in eff[0]], "efficiency_lo": [_none(v) for v in eff[1]],
                "efficiency_hi": [_none(v) for v in eff[2]], "purity": [_none(v) for v in pur[0]],
                "purity_lo": [_none(v) for v in pur[1]], "purity_hi": [_none(v) for v in pur[2]],
            }
        return out


def _none(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def bin_edges(values: np.ndarray, bins: int | list[float] | None = None) -> np.ndarray:
    """Edges: the ones given, one bin per value of a few-valued integer variable, else quantiles."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if isinstance(bins, (list, tuple, np.ndarray)):
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise DataError(f"bin edges must increase, got {list(bins)}")
        return edges
    if len(finite) == 0:
        raise DataError("no finite values to bin")
    distinct = np.unique(finite)
    if np.all(distinct == np.round(distinct)) and distinct[-1] - distinct[0] < MAX_CATEGORIES:
        return np.arange(distinct[0] - 0.5, distinct[-1] + 1.0)
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, int(bins or DEFAULT_BINS) + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    edges[-1] = np.nextafter(edges[-1], np.inf)  # the largest value falls inside the last bin
    return edges


def binned(values: np.ndarray, labels: np.ndarray, predicted: np.ndarray, class_names, *, variable: str,
           unit: str = "", bins: int | list[float] | None = None, method: str = "wilson") -> Binned:
    """Per-bin counts of true, selected and both for each class, filled into ``hist`` histograms."""
    import hist

    values = np.asarray(values, dtype=np.float64)
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    edges = bin_edges(values, bins)
    n_true, n_selected, n_both = [], [], []

    def count(mask: np.ndarray) -> np.ndarray:
        h = hist.Hist(hist.axis.Variable(edges, name=variable, underflow=False, overflow=False))
        h.fill(values[mask])
        return h.values().astype(np.int64)

    for c in range(len(class_names)):
        n_true.append(count(labels == c))
        n_selected.append(count(predicted == c))
        n_both.append(count((labels == c) & (predicted == c)))
    return Binned(variable, unit, edges, list(class_names), method, n_true, n_selected, n_both)
