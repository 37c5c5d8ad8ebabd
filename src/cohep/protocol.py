"""The vote rule every learner applies, and constants mirroring the contract.

A learner approves a proposal iff its score on the learner's own private vote set beats the score of
the learner's current weights by more than ``margin`` (higher accuracy, or lower loss).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError
from .learner import Score

#: The contract counts in basis points; 5000 = half of the other members must approve.
DEFAULT_THRESHOLD_BPS = 5000
BPS = 10_000
#: Scores travel on chain as integers in parts per million.
PPM = 1_000_000
METRICS = ("accuracy", "loss")


def threshold_to_bps(threshold: float) -> int:
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"threshold must be within [0, 1], got {threshold!r}")
    return int(round(threshold * BPS))


def required_approvals(n_members: int, threshold_bps: int) -> int:
    """ceil(threshold x (n - 1)): what the contract requires (used for display and tests only)."""
    return -(-threshold_bps * (n_members - 1) // BPS)


def to_ppm(value: float) -> int:
    """Score as an on-chain integer (parts per million), clamped to a sane range."""
    if not math.isfinite(value):
        value = 1e9
    return int(round(max(-1e9, min(1e9, value)) * PPM))


@dataclass(frozen=True)
class VoteRule:
    """Approve iff the proposal beats the current weights on the learner's vote set."""

    metric: str = "accuracy"
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"vote metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"vote margin must be >= 0, got {self.margin!r}")

    def approve(self, proposal: Score, current: Score) -> bool:
        new, old = proposal.metric(self.metric), current.metric(self.metric)
        if self.metric == "loss":
            return new < old - self.margin
        return new > old + self.margin

    def score(self, s: Score) -> float:
        return s.metric(self.metric)
