"""Binomial intervals for a proportion k / n: every efficiency, purity and acceptance cohep reports.

Two, because they answer different needs:

* :func:`wilson`: the Wilson score interval, close to nominal coverage on average, sane at 0/n and
  n/n and for a handful of trials (a member's few proposals, a sparse energy bin);
* :func:`clopper_pearson`: the exact (Beta quantile) interval, coverage at least nominal for every
  true proportion: the conservative choice a selection's efficiency is often quoted with.

Both take scalars or arrays (counts broadcast); ``n = 0`` gives NaN for the proportion and bounds.
"""
from __future__ import annotations

import math

import numpy as np

#: the two-sided 95 % normal quantile
Z95 = 1.959964
METHODS = ("wilson", "clopper-pearson")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """Proportion and Wilson score interval of one count: ``(p, lo, hi)``."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes, n, *, method: str = "wilson", confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proportions and interval bounds of arrays of counts: ``(p, lo, hi)``, NaN where ``n == 0``."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    k, n = np.broadcast_arrays(k, n)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must lie in [0, n]")
    empty = n <= 0
    safe_n = np.where(empty, 1.0, n)
    p = k / safe_n
    alpha = 1.0 - confidence
    if method == "wilson":
        from scipy.stats import norm

        z = float(norm.ppf(1 - alpha / 2))
        den = 1 + z * z / safe_n
        centre = (p + z * z / (2 * safe_n)) / den
        half = z * np.sqrt(p * (1 - p) / safe_n + z * z / (4 * safe_n * safe_n)) / den
        lo, hi = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    elif method == "clopper-pearson":
        from scipy.stats import beta

        with np.errstate(invalid="ignore"):
            lo = np.where(k > 0, beta.ppf(alpha / 2, np.maximum(k, 1e-300), n - k + 1), 0.0)
            hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    else:
        raise ValueError(f"interval method must be one of {', '.join(METHODS)}, got {method!r}")
    lo, hi = np.minimum(lo, p), np.maximum(hi, p)  # bounds at 0 or 1 meet p up to rounding
    nan = np.full(p.shape, np.nan)
    return np.where(empty, nan, p), np.where(empty, nan, lo), np.where(empty, nan, hi)
