"""Numba compilation with an on-disk cache where one can be kept.

A read-only install (no writable ``__pycache__``, no ``NUMBA_CACHE_DIR``, no user cache folder) makes
``@njit(cache=True)`` fail at import; there the functions are compiled afresh on each run instead.
The compiled code, and so every simulated event, is the same either way.
"""
from __future__ import annotations

from collections.abc import Callable

from numba import njit


def cached_njit(function: Callable) -> Callable:
    """``@njit(cache=True)`` where numba finds a cache folder it can write, plain ``@njit`` elsewhere."""
    try:
        return njit(cache=True)(function)
    except RuntimeError as exc:
        if "cannot cache" not in str(exc):
            raise
        return njit(function)
