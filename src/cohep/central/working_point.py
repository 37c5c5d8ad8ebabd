"""A working point between two classes: one offset on one class's logit, fitted to equalise efficiencies.

The arg-max of a classifier puts the boundary between two confusable classes (NC and numu CC, issue
28) wherever training left it, and it lands differently for every trained model. A physicist picks
the working point instead: here one additive offset ``o`` on class ``a``'s logit (a log-prior shift),
chosen on a fitting set (the model's own vote split, never its test set) so that class ``a``'s
efficiency equals class ``b``'s there, then held fixed on every other set.

Only the ``a``-versus-``b`` decision moves. An event that the arg-max gives to a third class (nue CC)
keeps it whatever the offset, and an event that the arg-max gives to ``a`` or ``b`` stays in that pair:
it goes to ``a`` when ``l_b - l_a <= o`` (``<`` when ``a`` is the higher index, so that ties go where
the arg-max sends them). So the third class's predictions, and its efficiency and purity, are exactly
the arg-max's, and ``o = 0`` is the arg-max exactly. (A plain shift of ``a``'s column followed by an
arg-max would also pull events across the ``a``/third-class boundary; that is not done.)

The fit: as ``o`` rises, ``eff_a - eff_b`` rises in steps, one at each event's ``l_b - l_a`` (events
of the two true classes that the arg-max gives to the pair); a bisection (``numpy.searchsorted``) on
that increasing step function finds where it crosses zero, and the side of the crossing with the
smaller ``|eff_a - eff_b|`` is kept. This is exact: no offset does better on the fitting set, and the
gap left is at most half of one step, ``1 / (2 min(n_a, n_b))`` when no two events share a value
(0.4 points on 120 events a class). The offset returned is 0 when the arg-max is already on the best
step, else the middle of the best step's interval of offsets (1 logit beyond the last event where
that interval is open).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cohep.core.errors import DataError


@dataclass(frozen=True)
class WorkingPoint:
    """A fitted offset on class ``a``'s logit and what it gave on the fitting set."""

    offset: float
    a: int
    b: int
    eff_a: float  #: class a's efficiency on the fitting set at ``offset``
    eff_b: float
    n_a: int  #: events of true class a in the fitting set
    n_b: int

    @property
    def gap(self) -> float:
        """``eff_a - eff_b`` on the fitting set (the residual of the fit)."""
        return self.eff_a - self.eff_b


def _check(logits, a: int, b: int) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or not (0 <= a < x.shape[1] and 0 <= b < x.shape[1]) or a == b:
        raise ValueError(f"logits of shape {x.shape} cannot hold two distinct classes {a} and {b}")
    if not np.isfinite(x).all():
        raise ValueError("logits must be finite (log-probabilities: clip the probabilities above 0 first)")
    return x


def logits_of(probs) -> np.ndarray:
    """Log-probabilities (the logits up to a per-event constant, which no decision sees), finite: a
    probability of 0 is read as float64's smallest normal number, below any float32 probability, so
    the arg-max and its ties are those of the probabilities."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), np.finfo(np.float64).tiny, None))


def decide(logits, offset: float, a: int = 0, b: int = 1) -> np.ndarray:
    """Predicted classes ``[N]``: the arg-max, except that ``a`` vs ``b`` is decided with ``offset`` on ``a``."""
    x = _check(logits, a, b)
    pred = x.argmax(1)
    pair = (pred == a) | (pred == b)
    d = x[:, b] - x[:, a]
    wins = d < offset if a > b else d <= offset
    return np.where(pair, np.where(wins, a, b), pred).astype(np.int64)


def efficiency(pred: np.ndarray, labels: np.ndarray, c: int) -> float:
    """N(true c, predicted c) / N(true c)."""
    sel = labels == c
    return float((pred[sel] == c).mean())


def fit(logits, labels, a: int = 0, b: int = 1) -> WorkingPoint:
    """The offset on ``a``'s logit that makes ``a``'s and ``b``'s efficiencies as equal as any can on this set."""
    x = _check(logits, a, b)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(x),):
        raise ValueError(f"{len(y)} labels for {len(x)} rows of logits")
    n_a, n_b = int((y == a).sum()), int((y == b).sum())
    if n_a == 0 or n_b == 0:
        raise DataError(f"the fitting set holds {n_a} events of class {a} and {n_b} of class {b}: "
                        "a working point between them needs both")
    pred = x.argmax(1)
    rows = ((pred == a) | (pred == b)) & ((y == a) | (y == b))
    d = x[rows, b] - x[rows, a]
    is_a = y[rows] == a
    # the steps: each distinct value of d, and what crossing it adds to eff_a - eff_b
    u, inverse = np.unique(d, return_inverse=True)
    step = np.bincount(inverse, weights=np.where(is_a, 1.0 / n_a, 1.0 / n_b), minlength=len(u))
    # gap on interval j (offsets between u[j-1] and u[j]: j of the values already crossed), j = 0..len(u)
    # no value crossed: a wins none of these rows and b all of its own (rows outside them never move)
    base = -float(np.count_nonzero(~is_a)) / n_b
    gaps = base + np.concatenate([[0.0], np.cumsum(step)])
    j = int(np.searchsorted(gaps, 0.0))  # bisection: the first interval with gap >= 0
    candidates = [k for k in (j - 1, j) if 0 <= k <= len(u)]
    lows = np.concatenate([[-np.inf], u])
    highs = np.concatenate([u, [np.inf]])
    best = min(candidates, key=lambda k: (abs(gaps[k]), _distance(lows[k], highs[k])))
    offset = _inside(float(lows[best]), float(highs[best]), a > b)
    p = decide(x, offset, a, b)
    return WorkingPoint(offset, a, b, efficiency(p, y, a), efficiency(p, y, b), n_a, n_b)


def _distance(lo: float, hi: float) -> float:
    """How far the interval of offsets (lo, hi) lies from 0 (0 when it holds it): ties go to the smaller change."""
    return 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))


def _inside(lo: float, hi: float, strict_low: bool) -> float:
    """An offset that crosses exactly the values up to ``lo`` and none from ``hi``.

    ``a`` wins an event with ``d <= o`` (``d < o`` when ``strict_low``), so with ``<=`` the interval is
    ``[lo, hi)`` and with ``<`` it is ``(lo, hi]``; 0 when it lies there, else the middle (kept off the
    excluded end when the two ends are adjacent floats), or 1 beyond the last value where it is open.
    """
    holds_zero = (lo < 0.0 <= hi) if strict_low else (lo <= 0.0 < hi)
    if holds_zero:
        return 0.0
    if np.isinf(lo):
        return hi - 1.0
    if np.isinf(hi):
        return lo + 1.0
    mid = 0.5 * (lo + hi)
    if strict_low:
        return mid if mid > lo else hi
    return mid if mid < hi else lo
